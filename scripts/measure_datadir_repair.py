"""Measure ``boltfix repair --data-dir``: keys the real etcd serves right
before and after, on crashed data dirs built from real etcd captures.

    PYTHONPATH=. python3 scripts/measure_datadir_repair.py [3.5|3.4] [WORKDIR] \
        [--wal-only] [REPAIR OPTION...]

(``--older-snapshot`` as a REPAIR OPTION measures that mode; ``--wal-only``
runs only the damaged-WAL cases.)

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
names at risk; a wrong key not named so is "named by range" when its
mod_revision of before lies in a revision range the report says is lost
(``rewind.lost_revision_ranges``; ``support.named``, the crash tests'
count); "range reach" counts the keys of before such a range names.
Then the same with the WAL damaged too (the newer capture's
own db, ``older-db`` and ``lost-revisions``; ``+wal-torn``: the last segment
zeroed from a sector boundary inside a record at 80% of its records on, a
crash's unwritten sectors; ``+wal-crc``: the last data byte of the entry
record at 50% of the WAL flipped, a CRC mismatch etcd refuses).  One line
per case, then the totals.
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
from support.named import range_scope, wrong_named  # noqa: E402


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


def run_case(version: str, work: Path, label: str, d: Path, want: dict, totals: dict,
             extra: list) -> None:
    """etcd on the crashed ``d`` (before) and on its repair (after): one line."""
    before = serve(version, d)
    out = work / f"{label}.out"
    cp = subprocess.run([sys.executable, "-m", "boltfix", "repair", "--data-dir",
                         str(d), "--out-data-dir", str(out), "--json", *extra],
                        capture_output=True, text=True, cwd=REPO)
    if cp.returncode not in (0, 1):
        print(f"{version} {label:32s} repair exit {cp.returncode}: {cp.stderr.strip()[:200]}")
        totals["repair_refused"] += 1
        return
    rw = json.loads(cp.stdout)["rewind"]
    after = serve(version, out)
    wrong = T._wrong(after, want) if after is not None else set(want)
    named = set(rw["keys_at_risk"])
    lost = rw.get("lost_revision_ranges")
    _by_key, by_range = wrong_named(wrong, want, named, lost)
    reach = range_scope(want, lost)
    totals["cases"] += 1
    totals["starts_before"] += before is not None
    totals["starts_after"] += after is not None
    totals["keys"] += len(want)
    totals["before"] += sum(1 for k in want if (before or {}).get(k) == want[k])
    totals["after"] += sum(1 for k in want if (after or {}).get(k) == want[k])
    totals["named"] += len(named)
    totals["wrong_after"] += len(wrong)
    totals["named_by_range"] += len(by_range)
    totals["range_reach"] += len(reach)
    totals["unnamed_wrong"] += len(wrong - named - by_range)
    cut = rw.get("wal_cut") or {}
    print(f"{version} {label:32s} before: {score(before, want):28s} "
          f"after: {score(after, want):28s} exit {cp.returncode} ci "
          f"{rw['db_consistent_index']}->{rw['consistent_index']} named "
          f"{len(named)} +by range {len(by_range)} of reach {len(reach)} "
          f"(unnamed wrong {len(wrong - named - by_range)})"
          + (f" wal cut at {cut.get('last_index_kept')}" if cut else "")
          + (" db kept past the WAL" if rw.get("db_kept_past_wal") else ""))


def main() -> None:
    """Run every case; print one line each and the totals."""
    version = sys.argv[1] if len(sys.argv) > 1 else "3.5"
    work = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp())
    extra = [a for a in sys.argv[3:] if a != "--wal-only"]
    wal_only = "--wal-only" in sys.argv[3:]
    base = work / f"caps{version}"
    base.mkdir(parents=True)
    served = captures(base, version)
    totals = dict.fromkeys(("cases", "starts_before", "starts_after", "before", "after",
                            "keys", "named", "named_by_range", "range_reach",
                            "wrong_after", "unnamed_wrong",
                            "repair_refused"), 0)
    for old, new in ((1, 2), (2, 3), (1, 3)):
        want = served[new]
        cases = dbs(base, work, old, new)
        for name, db in cases.items():
            if wal_only:
                break
            d = work / f"{name}-{old}-{new}"
            shutil.copytree(base / f"cap{new}", d)
            shutil.copy(db, d / "member/snap/db")
            run_case(version, work, f"cap{old}->cap{new} {name}", d, want, totals, extra)
        # the WAL damaged too: its last segment torn (a crash's unwritten
        # sectors), or a record's data flipped in the middle (etcd refuses)
        for name in ("intact", "older-db", "lost-revisions"):
            db = base / f"cap{new}/member/snap/db" if name == "intact" else cases[name]
            for damage, at in (("torn", 0.8), ("crc", 0.5)):
                d = work / f"{name}-{damage}-{old}-{new}"
                shutil.copytree(base / f"cap{new}", d)
                shutil.copy(db, d / "member/snap/db")
                (T.tear_wal if damage == "torn" else T.flip_wal_record)(d, at)
                run_case(version, work, f"cap{old}->cap{new} {name}+wal-{damage}", d, want,
                         totals, extra)
    print(json.dumps(totals))


if __name__ == "__main__":
    main()
