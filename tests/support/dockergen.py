"""Docker's own volume store and libnetwork store for the test-suite.

Wraps ``fixtures/dockergen`` (a Go program linked against
github.com/docker/docker v28.5.2+incompatible, its go.mod and go.sum
committed; main.go says exactly which code paths are Docker's) so tests
compare boltfix's reading of ``volumes/metadata.db`` and
``network/files/local-kv.db`` with what Docker's packages wrote and read::

    from support import dockergen
    wrote = dockergen.volumes(root)      # root/volumes/metadata.db
    wrote = dockergen.network(d)         # d/local-kv.db ("--damage network" too)
    seen = dockergen.read_volumes(path)  # what VolumeStore restores from a copy
    seen = dockergen.read_network(path)  # what libnetwork's datastore lists

Built once per content of main.go, go.mod and go.sum (support/gobuild.py);
skipped locally, failed on CI, when Go or the modules are missing.  A cold
build (empty module and build caches, downloads included) took 100 s on the
2-CPU test machine, 182 s while four other sessions were building.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Union

import pytest

from support import FIXTURES, gobuild, raftgen

GEN_DIR = FIXTURES / "dockergen"
SOURCES = ("main.go", "go.mod", "go.sum")
#: the volume drivers dockergen's volumes use (read_volumes stands in for them)
DRIVERS = ("local", "vieux/sshfs")


def _unavailable(reason: str) -> None:
    """Skip locally, fail on CI."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"docker oracle unavailable on CI: {reason}", pytrace=False)
    pytest.skip(f"docker oracle unavailable: {reason}")


@functools.lru_cache(maxsize=None)
def _build() -> Union[Path, str]:
    """Build dockergen; its path, or a string saying why it cannot be built."""
    go = raftgen._go()
    if go is None:
        return "the 'go' command is not on PATH (install Go >= 1.26)"
    return gobuild.build(go, "dockergen", GEN_DIR,
                         gobuild.digest(GEN_DIR / f for f in SOURCES), raftgen._go_env())


def _run(args, timeout: float = 120):
    """dockergen's JSON answer to ``args``."""
    result = _build()
    if isinstance(result, str):
        _unavailable(result)
    return gobuild.run_json(result, args, timeout)


def volumes(root) -> dict:
    """``root/volumes/metadata.db`` written by VolumeStore.Create: five
    volumes (four of the local driver, two with mount options, one with a
    ``password=`` item; one of the plugin ``vieux/sshfs`` with a
    ``password`` option and a ``token`` label).  ``{"path", "volumes":
    {name: {"driver", "labels", "options"}}}``."""
    return _run(["volumes", root])


def network(directory, *args: str) -> dict:
    """``directory/local-kv.db`` written by libnetwork's datastore: four
    networks (bridge, appnet, host, vpn with credential-like driver
    options) and five endpoints; ``--damage network`` then deletes appnet's
    record with bbolt, ``--damage short`` cuts it to 3 bytes (below libkv's
    8-byte index: libnetwork's List panics on it).  ``{"path", "networks": {id: {"name", "type",
    "scope", "endpoints": {id: name}}}, "damaged"}``."""
    return _run(["network", directory, *args])


def read_volumes(path) -> dict:
    """What Docker's VolumeStore restores from a copy of ``path``."""
    return _run(["read-volumes", path, *DRIVERS])


def read_network(path) -> dict:
    """What libnetwork's datastore lists from a copy of ``path``."""
    return _run(["read-network", path])
