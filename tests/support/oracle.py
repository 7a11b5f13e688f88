"""Real-bbolt oracle for the test-suite.

Wraps ``fixtures/boltgen`` (a Go program linked against the real
go.etcd.io/bbolt) so tests can compare boltfix against bbolt itself, at each
version of ``BBOLT_VERSIONS``: Debian's 1.3.6 source (GOPATH mode, the
default everywhere) and 1.4.3 and 1.5.0 from the Go module proxy (one
source, ``fixtures/boltgen/modules/VERSION/go.mod`` chooses the version).
Every helper takes ``version=``; ``bbolt_cli_path()`` is bbolt 1.5.0's own
command line (``go.etcd.io/bbolt/cmd/bbolt``, the ``tool`` of the 1.5.0
module file).

    from support import oracle
    entries = oracle.oracle_dump(path)          # list of dicts, bytes decoded
    result = oracle.oracle_check(path)          # OracleCheck(status=..., ...)
    oracle.make_shape("nested", out)            # write a fixture shape
    oracle.make_shape("big", out, "--keys", "1000", "--value-size", "100")
    oracle.compact(src, dst)
    oracle.delete_keys(file, [b"bucket", b"sub"], [b"key1", b"key2"])
    oracle.put(file, [b"bucket"], b"key", b"value")
    oracle.info(path)                           # dict, see boltgen info

The binary is built once per version and content of main.go (and the
module files) into ``<tempdir>/boltfix-boltgen-<version>-<sha256[:16]>/boltgen``,
outside the repo. When Go
or the bbolt source is missing, tests are skipped locally but fail when the
environment variable CI is "true" (CI must never silently skip).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Optional, Sequence, Union

import pytest

from boltfix.etcd import decode_key_value
from boltfix.etcdkeys import decode_revision
from support import gobuild

REPO = Path(__file__).resolve().parents[2]
BOLTGEN_DIR = REPO / "fixtures" / "boltgen"
BOLTGEN_SRC = BOLTGEN_DIR / "main.go"
FIXTURES = REPO / "fixtures" / "bbolt"
GOPATH = "/usr/share/gocode"
BBOLT_SRC = Path(GOPATH) / "src" / "go.etcd.io" / "bbolt"

#: the bbolt versions the oracle is built against: Debian's source, then
#: the newest 1.4 and 1.5.0 from their Go modules
BBOLT_VERSIONS = ("1.3.6", "1.4.3", "1.5.0")
#: the version every helper uses unless told (the committed fixtures' writer)
DEFAULT_VERSION = "1.3.6"
#: the version whose command line (``bbolt check``, ``bbolt surgery``) is built
CLI_VERSION = "1.5.0"
MODULES = BOLTGEN_DIR / "modules"

#: Shapes committed under fixtures/bbolt/<shape>.db
SHAPES = ("nested", "overflow", "deep", "freed", "nofreelist", "page16k")

PathLike = Union[str, os.PathLike]


def _unavailable(reason: str) -> None:
    """Skip locally, fail on CI: the oracle must never be silently skipped there."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"real-bbolt oracle unavailable on CI: {reason}", pytrace=False)
    pytest.skip(f"real-bbolt oracle unavailable: {reason}")


def _go_env() -> dict:
    env = dict(os.environ)
    env["GO111MODULE"] = "off"
    env["GOPATH"] = GOPATH
    env.pop("GOFLAGS", None)
    # go needs a writable build cache; HOME may be unset or read-only.
    if "GOCACHE" not in env:
        env["GOCACHE"] = os.path.join(tempfile.gettempdir(), "boltfix-gocache")
    return env


def _module_env() -> dict:
    """The environment of a module-mode build: the module proxy, the local
    toolchain, a writable module cache."""
    env = dict(os.environ)
    env["GO111MODULE"] = "on"
    env["GOTOOLCHAIN"] = "local"
    env.pop("GOFLAGS", None)
    if "GOCACHE" not in env:
        env["GOCACHE"] = os.path.join(tempfile.gettempdir(), "boltfix-gocache")
    if "GOPATH" not in env and "GOMODCACHE" not in env and not env.get("HOME"):
        env["GOPATH"] = os.path.join(tempfile.gettempdir(), "boltfix-gopath")
    return env


def _module_build(name: str, version: str, target: str) -> Union[Path, str]:
    """``target`` built in a copy of boltgen beside ``modules/VERSION``'s
    go.mod and go.sum, cached per version and content."""
    mod = MODULES / version
    files = [BOLTGEN_SRC, mod / "go.mod", mod / "go.sum"]
    if not all(f.is_file() for f in files):
        return f"{mod}/go.mod, go.sum or {BOLTGEN_SRC} is missing"
    key = f"{version}-{gobuild.digest(files)}"
    with tempfile.TemporaryDirectory(prefix="boltfix-boltgen-src-") as stage:
        for f in files:
            shutil.copyfile(f, Path(stage) / f.name)
        return gobuild.build(shutil.which("go") or "go", name, Path(stage), key,
                             _module_env(), target=target)


@functools.lru_cache(maxsize=None)
def _build(version: str = DEFAULT_VERSION) -> Union[Path, str]:
    """Build boltgen against bbolt ``version``; return its path, or a string
    explaining why it can't be built."""
    if version not in BBOLT_VERSIONS:
        raise ValueError(f"no bbolt {version} in {BBOLT_VERSIONS}")
    go = shutil.which("go")
    if go is None:
        return "the 'go' command is not on PATH (install Go >= 1.23)"
    if version != "1.3.6":
        return _module_build("boltgen", version, ".")
    if not (BBOLT_SRC / "db.go").is_file():
        return f"bbolt source not found at {BBOLT_SRC} (apt-get install golang-github-coreos-bbolt-dev)"
    if not BOLTGEN_SRC.is_file():
        return f"{BOLTGEN_SRC} is missing"
    return gobuild.build(go, "boltgen", BOLTGEN_DIR, f"1.3.6-{gobuild.digest([BOLTGEN_SRC])}",
                         _go_env())


def boltgen_path(version: str = DEFAULT_VERSION) -> Path:
    """Path of boltgen built against bbolt ``version`` (skip / fail if it
    cannot be built)."""
    result = _build(version)
    if isinstance(result, str):
        _unavailable(result)
    return result  # type: ignore[return-value]


@functools.lru_cache(maxsize=None)
def _build_cli() -> Union[Path, str]:
    """bbolt's own command line at ``CLI_VERSION``, or why not."""
    if shutil.which("go") is None:
        return "the 'go' command is not on PATH (install Go >= 1.23)"
    return _module_build("bbolt", CLI_VERSION, "go.etcd.io/bbolt/cmd/bbolt")


def bbolt_cli_path() -> Path:
    """Path of the real ``bbolt`` command (``CLI_VERSION``), skip / fail
    if it cannot be built."""
    result = _build_cli()
    if isinstance(result, str):
        _unavailable(result)
    return result  # type: ignore[return-value]


def bbolt_cli(*args, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the real ``bbolt ARGS`` (text output, memory capped as
    ``oracle_check`` is); a hang raises ``subprocess.TimeoutExpired``."""
    return subprocess.run([str(bbolt_cli_path()), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, preexec_fn=_limit_memory)


def linked_version(version: str) -> str:
    """What boltgen built for ``version`` says it links ("" for Debian's
    source, built in GOPATH mode)."""
    return _run(["version"], version=version).stdout.decode().strip()


def _run(args: Sequence[str], timeout: Optional[float] = 600, check: bool = True,
         version: str = DEFAULT_VERSION) -> subprocess.CompletedProcess:
    """boltgen ``args`` at bbolt ``version``; a non-zero exit raises."""
    proc = subprocess.run(
        [str(boltgen_path(version)), *map(str, args)],
        capture_output=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"boltgen {' '.join(map(str, args))} exited {proc.returncode}: "
            f"{proc.stderr.decode(errors='replace').strip()}"
        )
    return proc


def _hexpath(bucket_path: Sequence[bytes]) -> str:
    return ",".join(bytes(b).hex() for b in bucket_path)


# ---------------------------------------------------------------------------
# dump
# ---------------------------------------------------------------------------


def parse_dump(text: Union[str, bytes]) -> list[dict]:
    """Parse boltgen dump output into dicts with bytes instead of hex."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        d = json.loads(line)
        entry = {
            "path": [bytes.fromhex(p) for p in d["path"]],
            "key": bytes.fromhex(d["key"]),
            "value": None if d["value"] is None else bytes.fromhex(d["value"]),
            "type": d["type"],
        }
        if d["type"] == "bucket":
            entry["sequence"] = d["sequence"]
        out.append(entry)
    return out


def oracle_dump(path: PathLike, timeout: float = 600,
                version: str = DEFAULT_VERSION) -> list[dict]:
    """Every entry of the database, depth-first in key order, per real bbolt.

    Each entry: ``{"path": [bytes,...], "key": bytes, "value": bytes|None,
    "type": "kv"|"bucket"}`` plus ``"sequence": int`` for buckets. A bucket's
    own entry precedes its contents; top-level buckets have ``path == []``.
    Raises RuntimeError if bbolt cannot open the file or crashes.
    """
    proc = _run(["dump", path], timeout=timeout, version=version)
    return parse_dump(proc.stdout)


# ---------------------------------------------------------------------------
# check
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class OracleCheck:
    #: "ok" | "errors" | "crash" | "hang" | "cannot-open"
    status: str
    #: tx.Check() errors, one per line (without the final OK / N errors found)
    messages: list[str]
    stdout: str
    stderr: str
    returncode: Optional[int]

    @property
    def ok(self) -> bool:
        return self.status == "ok"


_CRASH_MARKERS = ("panic:", "fatal error:", "unexpected fault address", "SIGBUS", "SIGSEGV")


# bbolt's check recurses forever on a page cycle; its stack grows until Go
# dies.  Cap the address space so that happens at 3 GiB, not at 24.
ORACLE_MEMORY_LIMIT = 3 << 30


def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (ORACLE_MEMORY_LIMIT, ORACLE_MEMORY_LIMIT))


def oracle_check(path: PathLike, timeout: float = 60,
                 version: str = DEFAULT_VERSION) -> OracleCheck:
    """Run real bbolt's ``tx.Check()`` on ``path`` and classify the outcome.

    Go panics, runtime fatal errors (e.g. SIGBUS past end of file, stack
    overflow on a page cycle) and signal deaths are "crash"; a run longer than
    ``timeout`` seconds is killed and reported as "hang".
    """
    proc = subprocess.Popen(
        [str(boltgen_path(version)), "check", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=_limit_memory,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        return OracleCheck(
            "hang", [], out.decode(errors="replace"), err.decode(errors="replace"), None
        )
    stdout = out.decode(errors="replace")
    stderr = err.decode(errors="replace")
    rc = proc.returncode
    lines = [l for l in stdout.splitlines() if l.strip()]
    if rc < 0 or any(m in stderr for m in _CRASH_MARKERS):
        status = "crash"
    elif rc == 0 and lines and lines[-1] == "OK":
        status = "ok"
        lines = lines[:-1]
    elif rc == 1 and lines and lines[-1].endswith("errors found"):
        status = "errors"
        lines = lines[:-1]
    elif rc == 2 and stderr.startswith("cannot open"):
        status = "cannot-open"
    else:
        status = "crash"
    return OracleCheck(status, lines, stdout, stderr, rc)


# ---------------------------------------------------------------------------
# make / compact / edits / info
# ---------------------------------------------------------------------------


def make_shape(shape: str, out: PathLike, *args: str, timeout: float = 3600,
               version: str = DEFAULT_VERSION) -> Path:
    """Write a new bbolt file of a known shape (see fixtures/README.md).

    ``out`` must not exist. Extra ``args`` are passed through, e.g.
    ``make_shape("big", out, "--keys", "100000", "--value-size", "1024", "--nofreelist")``.
    """
    _run(["make", shape, out, *args], timeout=timeout, version=version)
    return Path(out)


def compact(src: PathLike, dst: PathLike, timeout: float = 3600,
            version: str = DEFAULT_VERSION) -> Path:
    """``bbolt.Compact(dst, src, 65536)`` into the new file ``dst``."""
    _run(["compact", src, dst], timeout=timeout, version=version)
    return Path(dst)


def delete_keys(file: PathLike, bucket_path: Sequence[bytes], keys: Sequence[bytes],
                version: str = DEFAULT_VERSION) -> None:
    """Delete ``keys`` from the bucket at ``bucket_path`` in one transaction.

    A key that names a sub-bucket deletes that bucket; ``bucket_path == []``
    deletes top-level buckets. A missing key raises RuntimeError and nothing
    is committed. The file's freelist mode (synced or NoFreelistSync) is kept.
    """
    _run(["delete", file, _hexpath(bucket_path), *(bytes(k).hex() for k in keys)],
         version=version)


def put(file: PathLike, bucket_path: Sequence[bytes], key: bytes, value: bytes,
        version: str = DEFAULT_VERSION) -> None:
    """Put one key/value (creating the buckets on ``bucket_path`` if needed)."""
    _run(["put", file, _hexpath(bucket_path), bytes(key).hex(), bytes(value).hex()],
         version=version)


def move_bucket(file: PathLike, src: Sequence[bytes], dst: Sequence[bytes], child: bytes,
                put: Optional[tuple] = None, version: str = "1.4.3") -> None:
    """bbolt 1.4+'s ``tx.MoveBucket``: bucket ``child`` from the bucket at
    ``src`` to the one at ``dst`` (``[]``: the root) in one transaction,
    with ``put`` (key, value) put into the moved bucket in the same one."""
    extra = [bytes(x).hex() for x in put] if put else []
    _run(["move", file, _hexpath(src), _hexpath(dst), bytes(child).hex(), *extra],
         version=version)


def info(path: PathLike, version: str = DEFAULT_VERSION) -> dict:
    """``{"page_size", "txid", "size", "buckets": {name_bytes: {"sequence", "stats"}}}``.

    ``stats`` is bbolt's BucketStats with Go field names (KeyN, Depth,
    BranchPageN, LeafPageN, BranchOverflowN, LeafOverflowN, InlineBucketN,
    BucketN, ...), aggregated over the bucket's sub-buckets.
    """
    proc = _run(["info", path], timeout=600, version=version)
    d = json.loads(proc.stdout)
    d["buckets"] = {bytes.fromhex(k): v for k, v in d["buckets"].items()}
    return d


def fixture(shape: str) -> Path:
    """Path of a committed fixture, fixtures/bbolt/<shape>.db."""
    return FIXTURES / f"{shape}.db"


def etcd_served_by(db_path: PathLike) -> dict:
    """What etcd must serve from an etcd db, read by the real bbolt: user
    key -> its newest revision's KeyValue, leaving out keys whose newest
    revision is a tombstone."""
    newest = {}
    for e in oracle_dump(db_path):
        if e["path"] != [b"key"] or e["type"] != "kv":
            continue
        rev = decode_revision(e["key"])
        kv = decode_key_value(e["value"])
        assert rev is not None and "error" not in kv, e
        name = kv["key"].decode()
        r = (rev["main"], rev["sub"])
        if name not in newest or r > newest[name][0]:
            newest[name] = (r, None if rev["tombstone"] else kv)
    return {k: kv for k, (_, kv) in newest.items() if kv is not None}
