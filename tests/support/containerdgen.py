"""The real containerd metadata store for the test-suite.

Wraps ``fixtures/containerdgen`` (a Go program linked against
github.com/containerd/containerd/v2 v2.4.2, its go.mod and go.sum
committed) so tests compare boltfix's reading of a ``meta.db`` with what
containerd's own ``core/metadata`` package wrote::

    from support import containerdgen
    wrote = containerdgen.make(path)                     # dict: namespaces -> objects
    wrote = containerdgen.make(path, "--damage", "blob")  # then bbolt removes a blob
    seen = containerdgen.read(path)   # containerd's own lists, of a copy of path

``containerdgen gen OUT --capture-dir DIR`` also copies the file after each
operation it asks of containerd (``DIR/0000.db`` ...), for crash cases mixed
from real commits (tests/oracle/test_containerd_crash.py).

Built once per content of main.go, go.mod and go.sum, as
support/raftgen.py builds raftgen (support/gobuild.py); skipped locally,
failed on CI, when Go or the modules are missing.  A cold build (empty
module and build caches) took 141 s on the 2-CPU test machine.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Union

import pytest

from support import FIXTURES, gobuild, raftgen

GEN_DIR = FIXTURES / "containerdgen"
SOURCES = ("main.go", "go.mod", "go.sum")


def _unavailable(reason: str) -> None:
    """Skip locally, fail on CI."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"containerd oracle unavailable on CI: {reason}", pytrace=False)
    pytest.skip(f"containerd oracle unavailable: {reason}")


@functools.lru_cache(maxsize=None)
def _build() -> Union[Path, str]:
    """Build containerdgen; its path, or a string saying why it cannot be built."""
    go = raftgen._go()
    if go is None:
        return "the 'go' command is not on PATH (install Go >= 1.26)"
    return gobuild.build(go, "containerdgen", GEN_DIR,
                         gobuild.digest(GEN_DIR / f for f in SOURCES), raftgen._go_env())


def gen_path() -> Path:
    """Path of the built containerdgen binary (skip / fail if it cannot be built)."""
    result = _build()
    if isinstance(result, str):
        _unavailable(result)
    return result  # type: ignore[return-value]


def _run(args, timeout: float) -> dict:
    return gobuild.run_json(gen_path(), args, timeout)


def make(out, *args: str, timeout: float = 120) -> dict:
    """A new meta.db at ``out``, written by containerd's metadata package:
    namespaces ``default`` (3 images) and ``k8s.io`` (2), each image with
    3 blobs, a committed snapshot and a container on an active snapshot;
    a lease and a sandbox per namespace.  ``args``: ``--damage blob``
    (app0's target blob removed), ``--damage snapshot`` (ctr-default-1's
    snapshot), ``--damage parent`` (ctr-default-2's parent snapshot),
    ``--snapshotter-db PATH`` (the native snapshotter's own metadata.db).
    Returns ``{"namespaces": {ns: {"images": {name: digest}, "containers":
    {id: image}, "snapshots": {key: parent}, "blobs": [{"digest", "size"}],
    "leases", "sandboxes", "labels"}}, "damaged"}``."""
    return _run(["gen", out, *args], timeout)


def read(path, timeout: float = 120) -> dict:
    """What containerd itself lists from ``path`` (opened with
    metadata.NewDB on a copy): ``{"namespaces": {ns: {"images": {name:
    digest}, "containers": {id: image}, "leases", "sandboxes"}}}``; raises
    RuntimeError when containerd cannot open or list it."""
    with tempfile.TemporaryDirectory(prefix="boltfix-containerdread-") as d:
        copy = os.path.join(d, "meta.db")
        shutil.copyfile(path, copy)
        return _run(["read", copy], timeout)
