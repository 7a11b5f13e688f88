"""Fixtures more than one test file uses."""

from __future__ import annotations

import pytest

from support import oracle
from support.etcdfiles import key_bucket_file, secret_kv
from support.files import write_values
from support.protobuf import BCRYPT


@pytest.fixture(params=["c", "pure"])
def mode(request, monkeypatch):
    """Run the test with the C core, then with BOLTFIX_PURE_PYTHON=1 (for
    the CLI run in a child process, which inherits the environment)."""
    if request.param == "pure":
        monkeypatch.setenv("BOLTFIX_PURE_PYTHON", "1")
    return request.param


@pytest.fixture(scope="session")
def big_value_db(tmp_path_factory):
    """A 200 MB value among small records (test_hostile_big.write_values):
    its leaf is page 17 (overflow 51200), the pages around it are copied."""
    path = tmp_path_factory.mktemp("big") / "big.db"
    write_values(path, [bytes(range(256)) * (200 << 12)], pad=2000)
    return path


@pytest.fixture
def secret_file(tmp_path):
    """Small records, bcrypt hashes and Kubernetes Secrets at many offsets
    (values of every length from 40 on: every alignment to a piece edge),
    one Secret with an overflow run."""
    values = []
    for i in range(24):
        values.append(b"x" * (40 + i) + BCRYPT + b"y" * i)
        values.append(secret_kv(f"s{i}", pad=i))
    values.append(secret_kv("big", pad=9000))  # an overflow run
    return key_bucket_file(tmp_path / "secrets.db", values)


@pytest.fixture(scope="module")
def oracle_dumps():
    """What the real bbolt dumps of each committed fixture."""
    return {shape: oracle.oracle_dump(oracle.fixture(shape)) for shape in oracle.SHAPES}
