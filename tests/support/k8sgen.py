"""Kubernetes' storage bytes written by Kubernetes' own code, for the tests.

Wraps ``fixtures/k8sgen`` (a Go program linked against k8s.io/api,
k8s.io/apimachinery and k8s.io/apiserver v0.37.2, its go.mod and go.sum
committed): the protobuf serializer with the ``k8s\\x00`` envelope, the
JSON serializer, unstructured JSON for a custom resource, and the
apiserver's ``aescbc``/``aesgcm``/``secretbox`` storage transformers under
their ``k8s:enc:<provider>:v1:<key name>:`` prefixes::

    from support import k8sgen
    for rec in k8sgen.records():   # one dict per object, see main.go
        rec["key"], rec["value"], rec["object"], rec["kind"], ...

The binary is built once per content of main.go, go.mod and go.sum into
``<tempdir>/boltfix-k8sgen-<sha256[:16]>/k8sgen`` (:mod:`support.gobuild`),
outside the repo; the modules come from the Go module proxy the first
time.  When Go is missing or the modules cannot be fetched, tests are
skipped locally but fail when the environment variable CI is "true".
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Union

import pytest

from support import FIXTURES, gobuild, raftgen

K8SGEN_DIR = FIXTURES / "k8sgen"
SOURCES = ("main.go", "go.mod", "go.sum")
MIN_GO = (1, 26)  # what k8s.io/apimachinery v0.37's go.mod asks for


def _unavailable(reason: str) -> None:
    """Skip locally, fail on CI."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"Kubernetes serializers unavailable on CI: {reason}", pytrace=False)
    pytest.skip(f"Kubernetes serializers unavailable: {reason}")


def _go_env() -> dict:
    """Module mode, go.mod as committed (-mod=readonly: a stale go.sum is
    a failure, not a silent download), a build cache outside the repo."""
    env = dict(os.environ)
    env["GO111MODULE"] = "on"
    env["GOFLAGS"] = "-mod=readonly"
    env["GOTOOLCHAIN"] = "local"
    env.setdefault("GOCACHE", os.path.join(tempfile.gettempdir(), "boltfix-gocache"))
    return env


def _older(version: str, least: tuple) -> bool:
    """Whether ``go1.25.3``-style ``version`` is below ``least`` (or no Go
    version at all)."""
    m = re.match(r"go(\d+)\.(\d+)", version)
    return m is None or (int(m.group(1)), int(m.group(2))) < least


@functools.lru_cache(maxsize=None)
def _build() -> Union[Path, str]:
    """Build k8sgen; its path, or a string saying why it cannot be built."""
    go = raftgen._go()
    if go is None:
        return "the 'go' command is not on PATH (install Go >= 1.26)"
    version = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True,
                             env=_go_env(), timeout=60).stdout.strip()
    if _older(version, MIN_GO):
        return f"{go} is {version or 'of unknown version'}: the k8s.io modules need Go >= 1.26"
    return gobuild.build(go, "k8sgen", K8SGEN_DIR,
                         gobuild.digest(K8SGEN_DIR / f for f in SOURCES), _go_env())


def k8sgen_path() -> Path:
    """Path of the built k8sgen binary (skip / fail if it cannot be built)."""
    result = _build()
    if isinstance(result, str):
        _unavailable(result)
    return result  # type: ignore[return-value]


@functools.lru_cache(maxsize=None)
def _records() -> tuple:
    proc = subprocess.run([str(k8sgen_path())], capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"k8sgen exited {proc.returncode}: "
                           f"{proc.stderr.decode(errors='replace').strip()}")
    out = []
    for line in proc.stdout.splitlines():
        rec = json.loads(line)
        rec["value"] = base64.b64decode(rec.pop("value_b64"))
        rec["object"] = json.loads(rec["json"])
        if "plaintext_b64" in rec:
            rec["plaintext"] = base64.b64decode(rec.pop("plaintext_b64"))
        out.append(rec)
    return tuple(out)


def records() -> list[dict]:
    """What k8sgen wrote, one dict per object (one run per test session:
    the ciphertexts' nonces are random): ``key`` (the etcd key), ``value``
    (the stored bytes), ``encoding`` (protobuf, json, encrypted),
    ``apiVersion``, ``kind``, ``namespace`` (absent for a cluster-scoped
    object), ``name``, ``json`` (the JSON serializer's text) and
    ``object`` (it parsed); an encrypted one adds ``provider``,
    ``key_name`` and ``plaintext`` (the protobuf bytes it encrypts)."""
    return [dict(r) for r in _records()]
