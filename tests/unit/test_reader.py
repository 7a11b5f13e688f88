"""boltfix.reader: the one place that unpacks pages, held to construct's
parse of the same bytes and to the committed fixtures bbolt wrote."""

from __future__ import annotations

import pytest

from boltfix import findings as F
from boltfix import structs as S
from boltfix.errors import BoltError, CannotOpen
from boltfix.reader import (
    DB,
    decode_meta_page,
    leaf_elements,
    meta_in_use,
    page_size_sane,
    usable_count,
)
from support import damage, oracle


@pytest.mark.parametrize("shape", oracle.SHAPES)
def test_metas_are_what_construct_reads(shape):
    path = oracle.fixture(shape)
    raw = path.read_bytes()
    with DB(path) as db:
        assert page_size_sane(db.page_size) and db.page_size_source == "meta 0"
        for m in db.metas:
            c = S.meta.parse(raw[m.offset + S.PAGE_HEADER_SIZE:][:S.META_SIZE])
            assert (m.magic, m.version, m.page_size, m.root, m.sequence, m.freelist, m.pgid,
                    m.txid, m.checksum) == (c.magic, c.version, c.pageSize, c.root.root,
                                            c.root.sequence, c.freelist, c.pgid, c.txid,
                                            c.checksum)
            assert m.valid and m.checksum_ok
        assert db.meta is meta_in_use(db.metas)
        assert db.meta.txid == max(m.txid for m in db.metas)
        assert db.scan_page_size() == db.page_size  # the headers agree with the meta


@pytest.mark.parametrize("shape", oracle.SHAPES)
def test_pages_are_in_file_order_and_headers_are_constructs(shape):
    path = oracle.fixture(shape)
    raw = path.read_bytes()
    with DB(path) as db:
        ids = [p.pgid for p in db.pages()]
        assert ids == sorted(set(ids)) and ids[:2] == [0, 1]
        for p in list(db.pages())[:50]:
            h = S.page.parse(raw[p.offset:p.offset + S.PAGE_HEADER_SIZE])
            assert (p.self_id, p.flags, p.count, p.overflow) == (h.id, h.flags, h.count,
                                                                h.overflow)
        with pytest.raises(BoltError):
            db.page(db.pages_in_file)
        with pytest.raises(BoltError):
            db.page(-1)


def test_reread_forces_a_meta_and_a_page_size():
    with DB(oracle.fixture("nested")) as db:
        used = db.meta.index
        db.reread(meta=1 - used)
        assert db.meta.index == 1 - used and db.meta_source == f"forced meta {1 - used}"
        db.reread()
        assert db.meta.index == used
        with pytest.raises(BoltError):
            db.reread(page_size=1000)
        with pytest.raises(BoltError):
            db.reread(meta=2)


def test_a_zeroed_meta_says_what_is_wrong():
    m = decode_meta_page(bytes(4096), 0, 0)
    assert F.META_BAD_MAGIC in m.problems and F.META_BAD_VERSION in m.problems and not m.valid
    assert decode_meta_page(bytes(10), 0, 0).problems == [F.META_TRUNCATED]


def test_a_meta_with_a_bad_checksum_loses_the_page_size_to_the_other(tmp_path):
    path = damage.copy_fixture("nested", tmp_path)
    damage.meta0_bad_page_size(path)
    with DB(path) as db:
        assert db.page_size == damage.page_size_of(oracle.fixture("nested"))
        assert db.page_size_source != "meta 0"


def test_elements_out_of_bounds_and_damaged_counts():
    ps = 4096
    page = bytearray(ps)
    S.PAGE_HEADER.pack_into(page, 0, 2, S.LEAF_PAGE_FLAG, 2, 0)
    S.LEAF_ELEMENT.pack_into(page, 16, 0, 32, 1, 1)  # data at 16 + 32 = 48: fits
    S.LEAF_ELEMENT.pack_into(page, 32, 0, ps, 1, 1)  # past the page
    page[48:50] = b"kv"
    els = list(leaf_elements(page, 0, 2, ps))
    assert els[0][2:3] == (b"k",) and bytes(els[0][3]) == b"v" and els[0][4] is None
    assert els[1][4] == F.ELEMENT_OUT_OF_BOUNDS
    # a count the run cannot hold: element 0's pos (count * 16) gives it back
    assert usable_count(page, 16, 2, ps, 16, 4) == (2, None)
    assert usable_count(page, 16, 1000, ps, 16, 4) == (2, F.ELEMENT_COUNT_CORRUPT)
    S.LEAF_ELEMENT.pack_into(page, 16, 0, 33, 1, 1)  # no count gives that pos: read what fits
    assert usable_count(page, 16, 1000, 16 + 16 * 5, 16, 4) == (5, F.ELEMENT_COUNT_OVERFLOW)


def test_what_cannot_be_opened(tmp_path):
    with pytest.raises(CannotOpen):
        DB(tmp_path / "missing.db")
    (tmp_path / "empty.db").write_bytes(b"")
    with pytest.raises(CannotOpen):
        DB(tmp_path / "empty.db")
    with pytest.raises(CannotOpen):
        DB(tmp_path)
