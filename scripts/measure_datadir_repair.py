"""Measure ``boltfix repair --data-dir``: keys the real etcd serves right
before and after, on crashed data dirs built from real etcd captures.

    PYTHONPATH=. python3 scripts/measure_datadir_repair.py [3.5|3.4] [WORKDIR] [REPAIR OPTION...]

(``--older-snapshot`` as a REPAIR OPTION measures that mode.)

The captures are those of ``tests/oracle/test_etcd_datadir_repair.py``
(cap1..cap3, a raft snapshot between cap2 and cap3).  Each crashed data
dir is the newer capture's WAL and snapshots with a db that is: the older
capture's (``older-db``); the newer one without its newest revisions
(``lost-revisions``, deleted by the real bbolt, then bbolt.Compact); or a crash
mix of the two captures' db pages as ``test_crash_commits.crash`` makes
them (``lost``, ``partial-even``, ``partial-odd``, ``torn``, ``zeroed``).
For each: etcd started on a copy of the crashed dir (before) and on the
repaired one (after); "right" counts the keys of the newer capture served
with its value, mod_revision, create_revision and version, "wrong" the
keys served otherwise or missing or extra, "named" the keys the report
names at risk.  One line per case, then the totals.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "oracle"))

from boltfix.etcdkeys import decode_revision  # noqa: E402
from support import oracle  # noqa: E402
from support.etcdtools import EtcdServer, EtcdStartError  # noqa: E402


def _load(name: str):
    """A test module by file name (tests/oracle is no package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "tests" / "oracle" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


T = _load("test_etcd_datadir_repair")
CC = _load("test_crash_commits")
MIXES = ("lost", "partial-even", "partial-odd", "torn", "zeroed")


def captures(base: Path, version: str) -> dict:
    """cap1..cap3 under ``base`` and what etcd served at each."""
    live = base / "live"
    served = {}
    k = 0
    for n, batches in ((1, 1), (2, 1), (3, 4)):
        with EtcdServer(live, version, extra_args=["--snapshot-count",
                                                   str(T.SNAPSHOT_COUNT)]) as s:
            g = T.Gateway(s.endpoint)
            for _ in range(batches):
                k += 1
                T._batch(g, k)
            served[n] = T._served(s)
        shutil.copytree(live, base / f"cap{n}")
    return served


def serve(version: str, d: Path):
    """What etcd serves from a copy of ``d``, or None when it does not start."""
    run = d.parent / (d.name + ".run")
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(d, run)
    try:
        with EtcdServer(run, version, start_timeout=25) as s:
            return T._served(s)
    except EtcdStartError:
        return None
    finally:
        shutil.rmtree(run, ignore_errors=True)


def score(got, want: dict) -> str:
    """``right/total (wrong N)`` or ``panics``."""
    if got is None:
        return "does not start"
    wrong = T._wrong(got, want)
    right = sum(1 for k in want if got.get(k) == want[k])
    return f"{right}/{len(want)} right, {len(wrong)} wrong"


def dbs(base: Path, work: Path, old: int, new: int) -> dict:
    """case name -> crashed db file."""
    out = {"older-db": base / f"cap{old}/member/snap/db"}
    db = work / f"lost-{old}-{new}.db"
    shutil.copy(base / f"cap{new}/member/snap/db", db)
    rev_old = max(int.from_bytes(e["key"][:8], "big") for e in oracle.oracle_dump(
        base / f"cap{old}/member/snap/db") if e["path"] == [b"key"] and e["type"] == "kv")
    keys = [e["key"] for e in oracle.oracle_dump(db) if e["path"] == [b"key"]
            and e["type"] == "kv" and decode_revision(e["key"])["main"] > rev_old]
    oracle.delete_keys(db, [b"key"], keys)
    oracle.compact(db, work / f"lost-{old}-{new}.compacted.db")
    out["lost-revisions"] = work / f"lost-{old}-{new}.compacted.db"
    prev = (base / f"cap{old}/member/snap/db").read_bytes()
    cur = (base / f"cap{new}/member/snap/db").read_bytes()
    for i, kind in enumerate(MIXES):
        p = work / f"{kind}-{old}-{new}.db"
        p.write_bytes(CC.crash(prev, cur, kind, i + 1))
        out[kind] = p
    return out


def main() -> None:
    """Run every case; print one line each and the totals."""
    version = sys.argv[1] if len(sys.argv) > 1 else "3.5"
    work = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp())
    base = work / f"caps{version}"
    base.mkdir(parents=True)
    served = captures(base, version)
    totals = {"before": 0, "after": 0, "keys": 0, "named": 0, "wrong_after": 0,
              "unnamed_wrong": 0}
    for old, new in ((1, 2), (2, 3), (1, 3)):
        want = served[new]
        for name, db in dbs(base, work, old, new).items():
            d = work / f"{name}-{old}-{new}"
            shutil.copytree(base / f"cap{new}", d)
            shutil.copy(db, d / "member/snap/db")
            before = serve(version, d)
            out = work / f"{name}-{old}-{new}.out"
            cp = subprocess.run([sys.executable, "-m", "boltfix", "repair", "--data-dir",
                                 str(d), "--out-data-dir", str(out), "--json",
                                 *sys.argv[3:]],
                                capture_output=True, text=True, cwd=REPO)
            if cp.returncode not in (0, 1):
                print(f"{version} cap{old}->cap{new} {name:15s} repair exit {cp.returncode}: "
                      f"{cp.stderr.strip()[:200]}")
                continue
            rw = json.loads(cp.stdout)["rewind"]
            after = serve(version, out)
            wrong = T._wrong(after, want) if after is not None else set(want)
            named = set(rw["keys_at_risk"])
            totals["keys"] += len(want)
            totals["before"] += sum(1 for k in want if (before or {}).get(k) == want[k])
            totals["after"] += sum(1 for k in want if (after or {}).get(k) == want[k])
            totals["named"] += len(named)
            totals["wrong_after"] += len(wrong)
            totals["unnamed_wrong"] += len(wrong - named)
            print(f"{version} cap{old}->cap{new} {name:15s} before: {score(before, want):28s} "
                  f"after: {score(after, want):28s} exit {cp.returncode} ci "
                  f"{rw['db_consistent_index']}->{rw['consistent_index']} named "
                  f"{len(named)} (unnamed wrong {len(wrong - named)})")
    print(json.dumps(totals))


if __name__ == "__main__":
    main()
