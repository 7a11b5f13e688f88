"""boltfix.guard: an input that changes while it is read is noticed."""

from __future__ import annotations

import shutil

import pytest

from boltfix import ccore, guard
from boltfix.errors import FileChanged
from boltfix.reader import DB
from support import oracle


def test_available_is_the_c_guard():
    assert guard.available() is (ccore.sigbus is not None)


@pytest.fixture
def session():
    guard.start_session()
    yield
    guard.end_session()


def test_growth_and_writes_are_seen(tmp_path, session):
    path = tmp_path / "f.db"
    shutil.copyfile(oracle.fixture("nested"), path)
    with DB(path) as db:
        assert db.changed() is None
        guard.raise_if_changed()
        with open(path, "ab") as f:
            f.write(b"more")
        assert "size changed" in db.changed()
        with pytest.raises(FileChanged, match="changed while it was being read"):
            guard.raise_if_changed()
        assert guard.first_change()[0] == str(path)


def test_a_new_session_forgets(tmp_path, session):
    path = tmp_path / "f.db"
    shutil.copyfile(oracle.fixture("nested"), path)
    with DB(path) as db:
        with open(path, "ab") as f:
            f.write(b"x")
        assert db.changed()
    assert guard.first_change() is not None
    guard.start_session()
    assert guard.first_change() is None
    guard.batch_boundary(5)  # nothing changed since: no stop
