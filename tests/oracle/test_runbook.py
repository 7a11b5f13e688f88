"""docs/runbook.md, followed literally against the real etcd 3.4.23, 3.5.1,
3.6.16 and 3.7.3.

A real data dir (the version's db, :mod:`support.etcddbs`, restored, etcd
run once on it) has its
``member/snap/db`` damaged the way the runbook's scenario says: a ``key``
bucket branch element points far past the end of the file, so etcd panics
when it reads those revisions.  Then the runbook's own shell commands, taken
from its fenced code blocks (and the inline ``boltfix ...`` commands its
text promises results for), are run as written, with only these changes:

* ``DATA`` -> the broken node's data dir; ``WORK`` -> a work dir beside it;
  ``NEW`` -> a new data dir (the runbook's placeholders, :data:`PLACEHOLDERS`);
* ``boltfix`` -> ``python3 -m boltfix`` (this checkout).

Each boltfix command's exit code must be the one the runbook states.  The
put-back step (``cp WORK/fixed.db DATA/member/snap/db``) is run in a COPY of
the broken data dir: the broken original and ``WORK/data.orig`` keep their
bytes.  The real etcd then starts on the result, serves every key the
repaired db holds (its newest revision, as test_etcd_repair.served_by
computes) and takes a write.  The other put-back route (snapshot restore
into ``NEW``) is run as written too, and etcd serves the same keys from it.

etcd runs on 127.0.0.1 only.  Skipped locally without etcd, failed with CI=true.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from support import REPO, damage, etcddbs, oracle
from support.etcdtools import EtcdServer, EtcdStartError, clean_env, require_etcd, restore_snapshot

RUNBOOK = REPO / "docs" / "runbook.md"
ROOT = "root:boltfix-root"
VERSIONS = ["3.4", "3.5", "3.6", "3.7"]
#: the runbook's placeholder paths -> the test's directories (keys of the
#: dict passed to :func:`localize`)
PLACEHOLDERS = ("DATA", "WORK", "NEW")

_FENCE = re.compile(r"^```sh\n(.*?)^```", re.M | re.S)
_INLINE = re.compile(r"`(boltfix [^`]+)`")


def runbook_commands() -> list[str]:
    """Every shell command in the runbook's ``sh`` blocks (comments dropped),
    in order."""
    cmds = []
    for block in _FENCE.findall(RUNBOOK.read_text()):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line:
                cmds.append(line)
    return cmds


def runbook_inline_boltfix() -> list[str]:
    """The ``boltfix ...`` commands the runbook's prose names in code spans."""
    text = _FENCE.sub("", RUNBOOK.read_text())
    return [c for c in _INLINE.findall(text) if "WORK" in c or "DATA" in c]


def one(cmds: list[str], prefix: str) -> str:
    """The single runbook command that starts with ``prefix``."""
    found = [c for c in cmds if c.startswith(prefix)]
    assert len(found) == 1, (prefix, found)
    return found[0]


def localize(cmd: str, paths: dict) -> list[str]:
    """The runbook command ``cmd`` as argv: placeholders replaced by
    ``paths`` (a word DATA, WORK or NEW, also as a path's first component)
    and ``boltfix`` by this Python's ``-m boltfix``."""
    argv = []
    for word in shlex.split(cmd):
        head, sep, rest = word.partition("/")
        if head in PLACEHOLDERS:
            word = str(paths[head]) + sep + rest
        argv.append(word)
    if argv[0] == "boltfix":
        argv = [sys.executable, "-m", "boltfix", *argv[1:]]
    return argv


def run(cmd: str, paths: dict, env=None) -> subprocess.CompletedProcess:
    env = dict(env or os.environ)
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(localize(cmd, paths), capture_output=True, text=True,
                          env=env, timeout=120, stdin=subprocess.DEVNULL)


def served_by(db_path) -> dict:
    """What etcd must serve from this db: key -> (value, mod_revision)."""
    return {k: (kv["value"].decode(), kv["mod_revision"])
            for k, kv in oracle.etcd_served_by(db_path).items()}


def read_all(srv: EtcdServer) -> dict:
    return {kv["key"]: (kv["value"], kv["mod_revision"])
            for kv in srv.get_kvs("", "--from-key", user=ROOT)}


def serves_and_writes(srv: EtcdServer, want: dict) -> None:
    assert read_all(srv) == want
    srv.ctl("put", "/boltfix/after-runbook", "ok", user=ROOT)
    assert srv.get("/boltfix/after-runbook", user=ROOT) == "ok"


@pytest.fixture
def tmp_path(tmp_path):
    """pytest's tmp_path, emptied afterwards (four data dirs of 64 MB of WAL)."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.parametrize("version", VERSIONS)
def test_runbook_rescues_a_broken_node(version, tmp_path):
    """Follow docs/runbook.md's commands as written on a real etcd data dir
    whose db has a branch element past the end of the file: every boltfix
    step exits as the runbook says, the original stays as it was, and the
    real etcd starts on the put-back db (and on the restored one), serves
    every key the repaired db holds and takes a write."""
    bins = require_etcd(version)
    oracle.boltgen_path()
    cmds = runbook_commands()
    inline = runbook_inline_boltfix()

    # the broken node: a real data dir, run once, then its db damaged
    data = tmp_path / "node"
    peer = restore_snapshot(etcddbs.etcd_db(version), data, version)
    with EtcdServer(data, version, peer_port=peer, health_user=ROOT) as srv:
        before = read_all(srv)
    damage.branch_past_eof(data / "member" / "snap" / "db", (b"key",))
    broken = (data / "member" / "snap" / "db").read_bytes()
    # the scenario: etcd does not start on it
    tried = tmp_path / "tried"
    shutil.copytree(data, tried, symlinks=True)
    with pytest.raises(EtcdStartError, match="exited early with code 2") as failed:
        with EtcdServer(tried, version, peer_port=peer, health_user=ROOT,
                        start_timeout=20):
            pass
    # a Go panic (exit 2) in bbolt's start-up check: the runbook's
    # "freepages: failed to get all reachable pages"
    assert "freepages" in str(failed.value), failed.value
    shutil.rmtree(tried)
    work = tmp_path / "work"
    work.mkdir()
    paths = {"DATA": data, "WORK": work, "NEW": tmp_path / "new"}

    # 2. copy the data dir
    cp = run(one(cmds, "cp -a DATA WORK/data.orig"), paths)
    assert cp.returncode == 0, cp.stderr
    orig_db = work / "data.orig" / "member" / "snap" / "db"
    assert orig_db.read_bytes() == broken

    # 3. check: 1 = problems found; inspect reads it
    cp = run(one(cmds, "boltfix check --data-dir WORK/data.orig"), paths)
    assert cp.returncode == 1, cp.stdout + cp.stderr
    assert "page-out-of-bounds" in cp.stdout
    cp = run(one(cmds, "boltfix inspect --data-dir WORK/data.orig"), paths)
    assert cp.returncode == 0, cp.stdout + cp.stderr

    # 4. repair: the plan, then the file; 1 = some data could not be recovered
    dry = one(cmds, "boltfix repair WORK/data.orig/member/snap/db --out WORK/fixed.db --dry-run")
    cp = run(dry, paths)
    assert cp.returncode == 1, cp.stdout + cp.stderr
    assert not (work / "fixed.db").exists()
    cp = run(one(cmds, "boltfix repair WORK/data.orig/member/snap/db --out WORK/fixed.db "
                       "--lost-found"), paths)
    assert cp.returncode == 1, cp.stdout + cp.stderr
    assert (work / "lost+found.db").exists()
    fixed = work / "fixed.db"
    # "boltfix check WORK/fixed.db reports the new file clean"
    cp = run(one(inline, "boltfix check WORK/fixed.db"), paths)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert oracle.oracle_check(fixed).ok
    want = served_by(fixed)
    assert 0 < len(want) <= len(before)

    # 5. put the db back, in a copy of the broken data dir
    node = tmp_path / "node-copy"
    shutil.copytree(data, node, symlinks=True)
    back = dict(paths, DATA=node)
    cp = run(one(cmds, "cp WORK/fixed.db DATA/member/snap/db"), back)
    assert cp.returncode == 0, cp.stderr
    # 6. check the data dir etcd will start on: 0 = clean and etcd starts
    cp = run(one(inline, "boltfix check --data-dir DATA"), back)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "starts" in cp.stdout
    with EtcdServer(node, version, peer_port=peer, health_user=ROOT) as srv:
        serves_and_writes(srv, want)

    # 5, the other route: restore the repaired db as a snapshot into NEW
    restore = one(cmds, "ETCDCTL_API=3 etcdctl snapshot restore" if version == "3.4"
                  else "etcdutl snapshot restore")
    argv = localize(restore.removeprefix("ETCDCTL_API=3 "), paths)
    argv[0] = str(bins.etcdctl if version == "3.4" else bins.etcdutl)
    cp = subprocess.run(argv, capture_output=True, text=True, env=clean_env(),
                        timeout=120, stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    # restore's defaults: member "default" at http://localhost:2380; etcd
    # takes the member from the WAL, so any free peer port starts it
    with EtcdServer(paths["NEW"], version, name="default", health_user=ROOT) as srv:
        serves_and_writes(srv, want)

    # 4-5 in one: a new data dir, the db set back against the WAL (the WAL
    # starts at the restore, so the db's own losses stand: exit 1)
    cp = run(one(cmds, "boltfix repair --data-dir WORK/data.orig --out-data-dir WORK/data.new"),
             paths)
    assert cp.returncode == 1, cp.stdout + cp.stderr
    with EtcdServer(work / "data.new", version, peer_port=peer, health_user=ROOT) as srv:
        serves_and_writes(srv, want)

    # the broken original and its copy were never written
    assert (data / "member" / "snap" / "db").read_bytes() == broken
    assert orig_db.read_bytes() == broken
