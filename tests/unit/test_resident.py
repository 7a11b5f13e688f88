"""boltfix.resident: a value in pieces, the map dropped after each."""

from __future__ import annotations

import mmap

import pytest

from boltfix import resident


def test_piece_is_whole_base64_groups():
    assert resident.PIECE % 3 == 0


@pytest.mark.parametrize("n, size", [(0, 7), (1, 7), (14, 7), (15, 7), (100, 1)])
def test_pieces_cover_the_view_exactly(n, size):
    data = bytes(range(256)) * (n // 256 + 1)
    view = memoryview(data[:n])
    parts = list(resident.pieces(view, size))
    assert b"".join(bytes(p) for p in parts) == data[:n]
    assert all(len(p) <= size for p in parts)


def test_drop_is_a_hint_that_never_fails(tmp_path):
    resident.drop(b"not a map")
    resident.release(memoryview(b"x"))
    path = tmp_path / "f"
    path.write_bytes(b"x" * 8192)
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        view = memoryview(mm)
        resident.release(view[10:20])
        assert bytes(view[8000:8002]) == b"xx"  # the bytes come back
        view.release()
        mm.close()
        resident.drop(mm)  # closed: nothing happens
