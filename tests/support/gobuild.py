"""Build a test tool from Go source once per content of its source, into
``<tempdir>/boltfix-<name>-<sha256[:16]>/<name>``, outside the repo (the
real bbolt's boltgen at each version, bbolt's own CLI, raft-boltdb's
raftgen)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable, Union

import pytest

#: what ``go build`` prints when the module proxy cannot be reached: the
#: tool is missing (skipped locally), not broken
_OFFLINE = ("dial tcp", "proxy.golang.org", "no such host")


def digest(files: Iterable[Path]) -> str:
    """The first 16 hex digits of the sha256 of the files' bytes, in order."""
    return hashlib.sha256(b"".join(Path(f).read_bytes() for f in files)).hexdigest()[:16]


def build(go: str, name: str, src_dir: Path, key: str, env: dict,
          timeout: float = 900, target: str = ".") -> Union[Path, str]:
    """The binary ``name`` built from package ``target`` in ``src_dir``
    (cached under ``key``: put the version in it), or a string saying why it
    cannot be built.  A compile error fails the test run: it is a real
    failure, not a missing tool."""
    cache = Path(tempfile.gettempdir()) / f"boltfix-{name}-{key}"
    binary = cache / name
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    cache.mkdir(parents=True, exist_ok=True)
    # built to a unique name, then renamed: parallel sessions never see a
    # half-written binary
    tmp = cache / f"{name}.tmp.{os.getpid()}"
    proc = subprocess.run([go, "build", "-o", str(tmp), target], cwd=src_dir, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        out = proc.stdout + proc.stderr
        if any(s in out for s in _OFFLINE):
            return f"the Go modules could not be fetched:\n{out[-2000:]}"
        pytest.fail(f"building {name} failed:\n{out}", pytrace=False)
    os.replace(tmp, binary)
    return binary


def run_json(binary: Path, args, timeout: float):
    """Run a built test tool with ``args``; its stdout read as JSON.  A tool
    that fails raises RuntimeError with its stderr (the test fails: the real
    component refused what it was asked)."""
    proc = subprocess.run([str(binary), *map(str, args)], capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(binary).name} {' '.join(map(str, args))} exited "
                           f"{proc.returncode}: {proc.stderr.decode(errors='replace').strip()}")
    return json.loads(proc.stdout)
