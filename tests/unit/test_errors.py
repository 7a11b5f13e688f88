"""boltfix.errors: an error says where it happened; parse failures become one."""

from __future__ import annotations

import struct

import construct
import pytest

from boltfix.errors import BoltError, CannotOpen, FileChanged, OutputError, located


def test_message_names_the_place():
    assert str(BoltError("bad")) == "bad"
    assert str(BoltError("bad", page=7, offset=0x70, field="count")) == \
        "bad (page 7, offset 0x70, field count)"
    assert all(issubclass(c, BoltError) for c in (CannotOpen, FileChanged, OutputError))


@pytest.mark.parametrize("exc", [struct.error("short"), construct.ConstructError("c"),
                                 IndexError("i"), ValueError("v"), OverflowError("o")])
def test_parse_failures_become_located_bolt_errors(exc):
    with pytest.raises(BoltError) as info:
        with located("page header", page=3, offset=0x3000):
            raise exc
    assert info.value.page == 3 and info.value.offset == 0x3000
    assert str(info.value).startswith("cannot parse page header: ")
    assert info.value.__cause__ is exc


def test_other_errors_pass_through():
    mine = BoltError("mine", page=1)
    with pytest.raises(BoltError) as info:
        with located("x"):
            raise mine
    assert info.value is mine
    with pytest.raises(KeyError):  # not a parse failure: a bug, not hidden
        with located("x"):
            raise KeyError("k")
