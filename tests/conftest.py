"""Fixtures more than one test file uses."""

from __future__ import annotations

import pytest


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
    from test_hostile_big import write_values

    path = tmp_path_factory.mktemp("big") / "big.db"
    write_values(path, [bytes(range(256)) * (200 << 12)], pad=2000)
    return path
