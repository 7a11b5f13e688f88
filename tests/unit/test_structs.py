"""boltfix.structs: the struct fast paths are the construct declarations."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from boltfix import structs as S

PAIRS = [(S.page, S.PAGE_HEADER), (S.bucket, S.BUCKET_HEADER), (S.meta, S.META),
         (S.branchPageElement, S.BRANCH_ELEMENT), (S.leafPageElement, S.LEAF_ELEMENT)]


@pytest.mark.parametrize("decl, fast", PAIRS)
@given(data=st.data())
def test_struct_reads_what_construct_reads(decl, fast, data):
    raw = data.draw(st.binary(min_size=fast.size, max_size=fast.size))
    parsed = decl.parse(raw)

    def flat(c):
        for k, v in c.items():
            if k.startswith("_"):
                continue
            if hasattr(v, "items"):
                yield from flat(v)
            else:
                yield v

    assert tuple(flat(parsed)) == fast.unpack(raw)
    assert decl.build(parsed) == raw


@pytest.mark.parametrize("data, want", [
    (b"", 0xCBF29CE484222325),  # the FNV-1a 64 test vectors
    (b"a", 0xAF63DC4C8601EC8C),
    (b"foobar", 0x85944171F73967E8),
])
def test_fnv64a(data, want):
    assert S.fnv64a(data) == want


def test_page_type_names_and_bucket_sequence():
    assert [S.page_type_name(f) for f in (1, 2, 4, 0x10)] == ["branch", "leaf", "meta", "freelist"]
    assert S.page_type_name(0x12) == "unknown<12>"
    assert S.bucket_sequence(S.BUCKET_HEADER.pack(7, 42)) == 42
    assert S.bucket_sequence(b"\x00" * 15) is None
