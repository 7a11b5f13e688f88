"""The etcd db of each version the etcd-specific tests read.

3.4 and 3.5: the committed fixtures (``fixtures/etcd/etcd-3.4.db`` and
``etcd-3.5.db``, written by the real etcd 3.4.23 and 3.5.1 with
``fixtures/etcd/make_etcd_db.py``).  3.6 and 3.7: no shipped bytes; the
same script runs the real etcd 3.6.16 / 3.7.3 (``scripts/build_etcd.sh``)
once per test session and the db it writes is reused (with its
expectations, ``etcd-<version>.expected.json`` beside it).  A version whose
etcd is missing skips locally and fails under ``CI=true``
(:func:`support.etcdtools.require_etcd`).
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import shutil
import tempfile
from pathlib import Path

from support import REPO
from support.etcdtools import VERSIONS_MAJOR, require_etcd

ETCD_DIR = REPO / "fixtures" / "etcd"
#: every etcd version an etcd-specific test runs on
VERSIONS = VERSIONS_MAJOR
#: the versions whose db the real etcd writes during the test run
GENERATED = ("3.6", "3.7")
_MADE: dict = {}
_WORK: list = []


def _make_etcd_db():
    """``fixtures/etcd/make_etcd_db.py`` as a module."""
    spec = importlib.util.spec_from_file_location("make_etcd_db", ETCD_DIR / "make_etcd_db.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def etcd_db(version: str) -> Path:
    """The version's etcd db (read it, never write it: copy it first)."""
    if version not in GENERATED:
        return ETCD_DIR / f"etcd-{version}.db"
    if version not in _MADE:
        require_etcd(version)
        if not _WORK:
            _WORK.append(Path(tempfile.mkdtemp(prefix="boltfix-etcddbs-")))
            atexit.register(shutil.rmtree, _WORK[0], True)
        out = _WORK[0] / f"etcd-{version}.db"
        assert _make_etcd_db().main(["--version", version, "--out", str(out), "-q"]) == 0
        _MADE[version] = out
    return _MADE[version]


def expected(version: str) -> dict:
    """What the version's db holds (keys, history, deletes, compaction)."""
    db = etcd_db(version)
    return json.loads(db.with_name(f"etcd-{version}.expected.json").read_text())
