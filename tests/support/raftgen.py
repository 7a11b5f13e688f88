"""The real HashiCorp raft-boltdb for the test-suite.

Wraps ``fixtures/raftgen`` (a Go program linked against
github.com/hashicorp/raft-boltdb/v2 v2.3.1 and github.com/hashicorp/raft
v1.7.2, its go.mod and go.sum committed) so tests compare boltfix's reading
of a ``raft.db`` with what raft-boltdb itself wrote::

    from support import raftgen
    wrote = raftgen.make(path, 30, "--gap", "10:12")   # dict: logs, deleted, conf
    raftgen.append(path, 31, 20)                        # one more commit: logs 31..50
    seen = raftgen.read(path)   # raft-boltdb's own reads, of a copy of path

The binary is built once per content of main.go, go.mod and go.sum into
``<tempdir>/boltfix-raftgen-<sha256[:16]>/raftgen``, outside the repo (the
modules come from the Go module proxy the first time).  When Go is missing
or the modules cannot be fetched, tests are skipped locally but fail when
the environment variable CI is "true" (CI must never silently skip).
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Union

import pytest

from support import FIXTURES, gobuild

RAFTGEN_DIR = FIXTURES / "raftgen"
SOURCES = ("main.go", "go.mod", "go.sum")
GO_CANDIDATES = ("/usr/local/go/bin/go",)


def _unavailable(reason: str) -> None:
    """Skip locally, fail on CI."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"raft-boltdb oracle unavailable on CI: {reason}", pytrace=False)
    pytest.skip(f"raft-boltdb oracle unavailable: {reason}")


def _go() -> Union[str, None]:
    found = shutil.which("go")
    if found:
        return found
    return next((g for g in GO_CANDIDATES if os.access(g, os.X_OK)), None)


def _go_env() -> dict:
    env = dict(os.environ)
    env["GO111MODULE"] = "on"
    env["GOFLAGS"] = "-mod=mod"
    env.setdefault("GOCACHE", os.path.join(tempfile.gettempdir(), "boltfix-gocache"))
    return env


@functools.lru_cache(maxsize=None)
def _build() -> Union[Path, str]:
    """Build raftgen; its path, or a string saying why it cannot be built."""
    go = _go()
    if go is None:
        return "the 'go' command is not on PATH (install Go >= 1.23)"
    return gobuild.build(go, "raftgen", RAFTGEN_DIR,
                         gobuild.digest(RAFTGEN_DIR / f for f in SOURCES), _go_env())


def raftgen_path() -> Path:
    """Path of the built raftgen binary (skip / fail if it cannot be built)."""
    result = _build()
    if isinstance(result, str):
        _unavailable(result)
    return result  # type: ignore[return-value]


def make(out, n: int, *args: str, timeout: float = 120) -> dict:
    """A new raft-boltdb store at ``out`` with logs 1..``n`` (see
    fixtures/raftgen/main.go for ``args``: ``--gap FROM:TO``, ``--drop-at
    I``, ``--data-size S``): what raftgen wrote, ``{"logs": [{"index",
    "term", "type", "type_name", "data_hex"}], "deleted": [FROM, TO] |
    None, "conf": {"CurrentTerm", "LastVoteTerm", "LastVoteCand"}}``."""
    return _run([out, n, *args], timeout)


def _run(args, timeout: float) -> dict:
    return gobuild.run_json(raftgen_path(), args, timeout)


def append(path, first: int, n: int, *args: str, timeout: float = 120) -> dict:
    """Store logs ``first..first+n-1`` in the existing store ``path`` with
    one StoreLogs (one bbolt commit): ``{"logs": [...]}`` as :func:`make`."""
    return _run(["append", path, first, n, *args], timeout)


def read(path, timeout: float = 120) -> dict:
    """What raft-boltdb itself reads from ``path``, opened (as the
    application opens it, read-write) on a copy: ``path`` is never
    modified.  ``{"first_index", "last_index", "logs": [{"index", "term",
    "type", "type_name", "data_hex"} or {"index", "error"}, for every index
    first..last by GetLog], "conf": {"CurrentTerm", "LastVoteTerm",
    "LastVoteCand"} (or "<key>_error")}``; ``{"open_error": ...}`` when
    raftboltdb.New fails."""
    with tempfile.TemporaryDirectory(prefix="boltfix-raftread-") as d:
        copy = os.path.join(d, "raft.db")
        shutil.copyfile(path, copy)
        return _run(["read", copy], timeout)
