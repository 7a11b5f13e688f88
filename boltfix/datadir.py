"""An etcd data dir as etcd reads it at start: db, snapshots, WAL.

The operations layer: files in, facts and findings out; nothing is ever
written (etcd itself renames a bad ``.snap`` to ``.broken``, repairs a
torn WAL and swaps in a ``.snap.db``; here each is only predicted).

:func:`open_data_dir` finds the parts (``DIR`` may be the data dir, its
``member`` dir or a WAL dir); :func:`predict_start` says what etcd will do
when started on it, following etcd's start path:

1. ``wal.Exist``: no ``*.wal`` file means a *new* member is bootstrapped and
   the data dir's history is ignored (3.4 ``etcdserver/server.go``
   ``NewServer``; 3.5 ``server/etcdserver/server.go``; 3.6+
   ``server/etcdserver/bootstrap.go`` ``bootstrap``).
2. ``wal.ValidSnapshotEntries`` reads every segment: the snapshot records
   at or below the last HardState's commit; a read error other than (a
   torn) EOF stops etcd.
3. ``snap.LoadNewestAvailable``: the newest ``.snap`` that is one of those
   and reads cleanly (``snapshotter.go`` ``Read``: non-empty, CRC-32C); a
   ``.snap`` that fails is renamed ``.broken`` and the next older one tried.
   3.7 reads no ``.snap``: ``recoverSnapshot`` builds the snapshot from the
   newest of those records (:func:`snapshot_from_wal`).
4. ``recoverSnapshotBackend`` (3.4/3.5 ``server.go``; 3.6+
   ``server/storage/backend.go`` ``RecoverSnapshotBackend``): when the
   snapshot's index is above the db's ``consistent_index`` (0 without a
   db), the db is replaced by ``member/snap/<index:016x>.snap.db``; when that
   file is missing: panic "failed to recover v3 backend from snapshot".
   Then the new backend's consistent_index must reach the snapshot's,
   unless it is 0 (3.6+ ``bootstrap.go``; 3.4/3.5 ``NewServer``): else
   "database file ... does not match with snapshot" and etcd exits (3.5.1
   panics "assertion failed: tx closed" on the way out).  Checked with the
   real 3.4.23, 3.5.1, 3.5.21, 3.6.16 and 3.7.3.
5. ``readWAL``/``openWALFromSnapshot``: ``wal.Open`` at the snapshot
   (``selectWALFiles``: a segment starting at or below its index, and
   consecutive sequence numbers, else "failed to open WAL"), ``ReadAll``
   (a torn tail is repaired once; anything else: "failed to read WAL,
   cannot be repaired"; no snapshot record for the snapshot:
   ``ErrSnapshotNotFound``, also fatal).
6. raft's ``RestartNode`` -> ``newRaft`` -> ``loadState``
   (``raft/raft.go``): the HardState's commit must lie between the
   snapshot's index and the last entry ("state.commit %d is out of range").
7. 3.4/3.5: no backend file while the cluster version is 3.x: "database
   file (...) of the backend is missing".
8. Apply (``applyEntryNormal``, ``applyConfChange``): every committed
   entry above the snapshot is applied; only those above the backend's
   ``consistent_index`` change it.  A single member also commits (and so
   applies) the uncommitted tail once it is leader again.
9. Ready (:func:`_ready_delay`): with the backend's ``consistent_index``
   past the WAL's last entry (a torn tail the db had applied), the new
   entries raft numbers up to it are never applied nor answered; 3.6+
   publishes its member through them (``publishV3``) and serves clients
   only once an attempt lands above it (measured: 7 s per attempt).
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
from dataclasses import dataclass, field
from typing import List, Optional

from boltfix import etcd
from boltfix import findings as F
from boltfix import raftlog as R
from boltfix import wal as W
from boltfix.check import check
from boltfix.errors import BoltError, CannotOpen
from boltfix.findings import ERROR, WARNING, Finding
from boltfix.navigate import open_path, top_level_names
from boltfix.reader import DB
from boltfix.walk import Walker

_SNAP_NAME = re.compile(r"^([0-9a-fA-F]{1,16})-([0-9a-fA-F]{1,16})\.snap$")
_SNAP_DB_NAME = re.compile(r"^([0-9a-fA-F]{1,16})\.snap\.db$")
#: the biggest .snap file read (a raft snapshot holds the v2 store: members
#: and cluster version, kilobytes; etcd reads it whole)
MAX_SNAP_BYTES = 512 << 20


@dataclass
class DataDir:
    """An etcd data dir's parts as found: member dir, snap dir, WAL dir and db."""
    root: str
    member: Optional[str]
    snap_dir: Optional[str]
    wal_dir: str
    db_path: Optional[str]


def _is_dir(p: Optional[str]) -> bool:
    try:
        return p is not None and stat.S_ISDIR(os.stat(p).st_mode)
    except OSError:
        return False


def _has_wal_files(d: str) -> bool:
    try:
        return any(n.endswith(".wal") for n in os.listdir(d))
    except OSError:
        return False


def open_data_dir(path: str, wal_dir: Optional[str] = None) -> DataDir:
    """The parts of a data dir; ``path`` may be the data dir, its ``member``
    directory, or a WAL directory (then only the WAL is known).  Raises
    :class:`CannotOpen` when it is none of these."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise CannotOpen(f"cannot open {path}: {exc.strerror}") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise CannotOpen(f"{path} is not a directory (give an etcd data dir, its member/ "
                         "directory, or a WAL directory)")
    if wal_dir is not None and not _is_dir(wal_dir):
        raise CannotOpen(f"--wal-dir {wal_dir} is not a directory")
    member = None
    if _is_dir(os.path.join(path, "member")):
        member = os.path.join(path, "member")
    elif _is_dir(os.path.join(path, "wal")) or _is_dir(os.path.join(path, "snap")):
        member = path
    if member is None:
        if wal_dir is None and _has_wal_files(path):
            return DataDir(path, None, None, path, None)
        raise CannotOpen(f"{path}: no member/ directory (nor wal/ or snap/, nor *.wal files): "
                         "not an etcd data dir")
    snap_dir = os.path.join(member, "snap")
    return DataDir(path, member, snap_dir if _is_dir(snap_dir) else None,
                   wal_dir or os.path.join(member, "wal"),
                   os.path.join(snap_dir, "db"))


def in_place(db_path: str, candidate: str) -> Optional["StartPrediction"]:
    """When ``db_path`` is a data dir's ``member/snap/db``: what etcd will
    do started on that data dir with ``candidate`` (a repaired db) put in
    its place; None for a db outside a data dir.  Nothing is written."""
    snap = os.path.dirname(os.path.abspath(db_path))
    member = os.path.dirname(snap)
    if os.path.basename(snap) != "snap" or os.path.basename(member) != "member":
        return None
    try:
        dd = open_data_dir(os.path.dirname(member))
    except CannotOpen:
        return None
    return predict_start(dataclasses.replace(dd, db_path=candidate), full_check=False)


def restore_route(version: Optional[str] = None) -> str:
    """The route that starts etcd from a bare db, whatever its data dir."""
    tool = ("ETCDCTL_API=3 etcdctl" if version and version.startswith("3.4") else "etcdutl")
    return (f"{tool} snapshot restore OUT.db --skip-hash-check --data-dir NEW-DATA-DIR "
            "(plus --name/--initial-cluster/--initial-advertise-peer-urls as the member "
            "had), then start etcd on NEW-DATA-DIR: a new cluster id, and the other members "
            "of a cluster are removed and added again")


# ---------------------------------------------------------------- snapshots
def read_snap_files(snap_dir: Optional[str]) -> List[dict]:
    """Every ``*.snap``, newest first as ``snapNames`` sorts them, each
    read as etcd's ``snap.Read`` does (``ok`` False: etcd renames it
    ``.broken`` and tries the next)."""
    if snap_dir is None:
        return []
    out = []
    try:
        names = sorted(os.listdir(snap_dir), reverse=True)
    except OSError:
        return []
    for name in names:
        m = _SNAP_NAME.match(name)
        if not m:
            continue
        item = {"name": name, "term": int(m.group(1), 16), "index": int(m.group(2), 16)}
        path = os.path.join(snap_dir, name)
        try:
            with open(path, "rb") as fh:
                data = fh.read(MAX_SNAP_BYTES + 1)
        except OSError as exc:
            item.update(ok=False, error=f"unreadable: {exc.strerror}")
            out.append(item)
            continue
        if len(data) > MAX_SNAP_BYTES:
            item.update(ok=False, error=f"larger than {MAX_SNAP_BYTES} bytes; not read")
            out.append(item)
            continue
        try:
            dec = R.decode_snap_file(data)
        except R.ProtoError as exc:
            dec = {"error": f"does not unmarshal: {exc}"}
        item["ok"] = "error" not in dec
        if item["ok"] and (dec["index"], dec["term"]) != (item["index"], item["term"]):
            item["name_mismatch"] = {"index": dec["index"], "term": dec["term"]}
        for k in ("index", "term"):
            if k in dec:
                item[k] = dec[k]
        if "conf_state" in dec:
            item["conf_state"] = dec["conf_state"]
        if "error" in dec:
            item["error"] = dec["error"]
        out.append(item)
    return out


def snap_db_files(snap_dir: Optional[str]) -> dict:
    """``{index: path}`` of the ``<index:016x>.snap.db`` files."""
    if snap_dir is None:
        return {}
    out = {}
    try:
        names = os.listdir(snap_dir)
    except OSError:
        return {}
    for name in names:
        m = _SNAP_DB_NAME.match(name)
        if m:
            out[int(m.group(1), 16)] = os.path.join(snap_dir, name)
    return out


def judge_db(path: str, full_check: bool = True) -> dict:
    """A backend file as etcd would open it: does it open, its
    ``meta/consistent_index`` and ``term``, its members, and (with
    ``full_check``) how many of boltfix's check findings would stop bbolt
    or etcd."""

    out: dict = {"path": path, "exists": os.path.lexists(path)}
    if not out["exists"]:
        return out
    try:
        db = DB(path)
    except BoltError as exc:
        out.update(opens=False, error=str(exc))
        return out
    with db:
        out["opens"] = db.meta is not None
        if db.meta is None:
            out["error"] = "both meta pages are invalid"
            return out
        w = Walker(db)
        meta, _ = open_path(w, ["meta"])
        for name in ("consistent_index", "term"):
            rec = w.find(meta, name.encode()) if meta is not None else None
            out[name] = (int.from_bytes(bytes(rec.value), "big")
                         if rec is not None and len(rec.value) == 8 else None)

        top = set(top_level_names(db))
        sv = w.find(meta, b"storageVersion") if meta is not None else None
        names = ([b"storageVersion"] if sv is not None else []) + \
            ([b"term"] if out["term"] is not None else [])
        out["version"] = etcd.guess_etcd_version(
            names, bytes(sv.value) if sv is not None and not sv.is_bucket else None)
        out["members"] = _members(w) if b"members" in top else []
        if full_check:

            res = check(db, max_findings=20)
            out["check"] = {"failing": res.failing, "total": res.total,
                            "counts": dict(res.counts)}
    return out


def _members(w) -> List[str]:

    bucket, _ = open_path(w, ["members"])
    if bucket is None:
        return []
    ids = []
    for page_keys in w.key_lists(bucket):
        ids.extend(bytes(k).decode("ascii", "replace").lower() for k in page_keys)
    return ids


# ---------------------------------------------------------------- the prediction
@dataclass
class StartPrediction:
    """What etcd will do at start (see the module docstring)."""
    data_dir: DataDir
    findings: List[Finding] = field(default_factory=list)
    facts: dict = field(default_factory=dict)
    wal: Optional[W.WalRead] = None

    @property
    def outcome(self) -> str:
        """``starts``, ``repairs_wal_and_starts`` or ``fails``."""
        if any(f.severity == ERROR for f in self.findings):
            return "fails"
        if self.wal is not None and self.wal.stop == "torn":
            return "repairs_wal_and_starts"
        return "starts"

    def to_json(self) -> dict:
        """The prediction for ``--json``."""
        return {"outcome": self.outcome, **self.facts,
                "findings": [f.to_json() for f in self.findings]}


def _f(code: str, message: str, severity: str = ERROR, **detail) -> Finding:
    return Finding(code, message, severity, detail=detail)


def snapshot_from_wal(version: Optional[str]) -> bool:
    """Whether etcd of ``version`` (a db's :func:`boltfix.etcd.guess_etcd_version`
    text) takes its raft snapshot from the newest valid WAL snapshot record
    alone, with no ``.snap`` file: 3.7 and later (checked with the real
    3.7.3: ``recoverSnapshot`` builds it from ``wal.ValidSnapshotEntries``;
    3.6 and before load the newest matching ``.snap``).  Unknown: False."""
    m = re.match(r"3\.(\d+) ", (version or "") + " ")
    return m is not None and int(m.group(1)) >= 7


def _chosen_snapshot(p: StartPrediction, res: W.WalRead, commit: int, snaps: list,
                     version: Optional[str]) -> Optional[dict]:
    """The raft snapshot etcd starts from (steps 2-3), with the findings on
    the ``.snap`` files it passes over, or None."""
    valid = {(s["index"], s["term"]) for s in res.snapshots if s["index"] <= commit}
    if snapshot_from_wal(version):
        # 3.7+ (``bootstrap.go`` ``recoverSnapshot``): the newest valid WAL
        # snapshot record is the snapshot; the .snap files are not read
        newest = max(valid, default=(0, 0))
        return ({"name": f"WAL snapshot record {newest[0]}", "index": newest[0],
                 "term": newest[1], "ok": True, "from_wal": True} if newest[0] > 0 else None)
    for s in snaps:
        if not s.get("ok"):
            p.findings.append(_f(F.DATADIR_SNAP_BROKEN,
                                 f"{s['name']}: {s.get('error')}: etcd renames it "
                                 f"{s['name']}.broken and tries an older snapshot", WARNING,
                                 file=s["name"]))
            continue
        if (s["index"], s["term"]) in valid:
            return s
        p.findings.append(_f(F.DATADIR_SNAP_ORPHAN,
                             f"{s['name']}: no WAL snapshot record at or below the commit "
                             "index names it (etcd crashed between writing it and the WAL "
                             "record): etcd skips it", WARNING, file=s["name"]))
    return None


def predict_start(dd: DataDir, *, full_check: bool = True) -> StartPrediction:
    """What etcd does when started on ``dd``; never writes, never raises on
    file contents."""
    p = StartPrediction(dd)
    facts = p.facts
    facts["data_dir"] = dd.root
    facts["wal_dir"] = dd.wal_dir
    res = W.read_wal(dd.wal_dir)
    p.wal = res
    wal_findings = [f for f in res.findings]
    if not res.segments:
        p.findings.append(_f(F.DATADIR_NO_WAL, f"{dd.wal_dir}: no WAL segment: etcd would "
                             "bootstrap a new member here and ignore this data dir's history "
                             "(or refuse: 'member ... has already been bootstrapped')"))
    db = judge_db(dd.db_path, full_check) if dd.db_path else {"exists": False}
    facts["db"] = db
    snaps = read_snap_files(dd.snap_dir)
    facts["snapshots"] = snaps
    snap_dbs = snap_db_files(dd.snap_dir)
    hs = res.hard_state or {"term": 0, "vote": 0, "commit": 0}
    facts["wal"] = {
        "segments": [s.name for s in res.segments], "records": res.records,
        "first_index": res.first_index, "last_index": res.last_index,
        "hard_state": hs, "metadata": _ids(res.metadata),
        "snapshot_records": [{"index": s["index"], "term": s["term"]} for s in res.snapshots],
        "overwritten_entries": res.overwritten, "read_stops": res.stop, "stop_at": res.stop_at,
    }
    # 2-3: the snapshot etcd loads
    chosen = _chosen_snapshot(p, res, hs["commit"], snaps, db.get("version"))
    facts["snapshot"] = ({"name": chosen["name"], "index": chosen["index"],
                          "term": chosen["term"], "from_wal": bool(chosen.get("from_wal"))}
                         if chosen else None)
    snap_index = chosen["index"] if chosen else 0
    # 4: the backend
    ci = db.get("consistent_index") or 0 if db.get("opens") else 0
    backend = "db" if db.get("exists") else None
    facts["snapshot_dbs"] = [{"index": i, "name": os.path.basename(path)}
                             for i, path in sorted(snap_dbs.items())]
    if chosen and snap_index > ci:
        path = snap_dbs.get(snap_index)
        if path is None:
            p.findings.append(_f(
                F.DATADIR_SNAPSHOT_DB_MISSING,
                f"the raft snapshot {chosen['name']} (index {snap_index}) is above the db's "
                f"consistent_index {ci}, and no {snap_index:016x}.snap.db exists: etcd panics "
                "'failed to recover v3 backend from snapshot' (snap: snapshot file doesn't "
                "exist)", snapshot_index=snap_index, consistent_index=ci))
        else:
            sdb = judge_db(path, full_check)
            facts["snapshot_db"] = sdb
            backend = os.path.basename(path)
            ci = sdb.get("consistent_index") or 0
            if ci and ci < snap_index:
                p.findings.append(_f(
                    F.DATADIR_SNAPSHOT_DB_BEHIND,
                    f"{os.path.basename(path)}'s consistent_index {ci} is below the snapshot "
                    f"index {snap_index}: etcd refuses to start ('database file ... does not "
                    "match with snapshot'; 3.5.1 panics 'assertion failed: tx closed')",
                    snapshot_index=snap_index, consistent_index=ci))
    facts["backend"] = backend
    facts["consistent_index"] = ci
    # 5: the WAL read from the snapshot
    p.findings.extend(wal_findings)
    _wal_from_snapshot(p, res, snap_index, chosen)
    # 6: raft's loadState
    last = res.last_index if res.last_index is not None else snap_index
    if res.segments and not (snap_index <= hs["commit"] <= last):
        p.findings.append(_f(
            F.DATADIR_COMMIT_OUT_OF_RANGE,
            f"the WAL's HardState commit {hs['commit']} is outside [{snap_index}, {last}] "
            "(snapshot index, last entry): raft panics 'state.commit "
            f"{hs['commit']} is out of range [{snap_index}, {last}]' (the WAL lost its tail)",
            commit=hs["commit"], last_index=last, snapshot_index=snap_index))
    # 7: the backend file
    _backend_check(p, res, db, backend)
    _members_check(p, res, db)
    _apply_facts(p, res, ci, snap_index, hs["commit"])
    _ready_delay(p, res, ci, (facts.get("snapshot_db") if backend not in (None, "db")
                              else db).get("version"), db.get("members") or [])
    return p


def _backend_check(p: StartPrediction, res: W.WalRead, db: dict, backend) -> None:
    """Step 7: a missing, unreadable or damaged backend."""
    dd = p.data_dir
    if backend is None and res.segments:
        p.findings.append(_f(F.DATADIR_DB_MISSING,
                             f"{dd.db_path}: missing, and no snapshot brings one: etcd refuses "
                             "('database file ... of the backend is missing')"))
    elif backend == "db" and not db.get("opens"):
        p.findings.append(_f(F.DATADIR_DB_UNREADABLE,
                             f"{dd.db_path}: {db.get('error')}: bbolt cannot open it"))
    elif backend == "db" and (db.get("check") or {}).get("failing"):
        n = db["check"]["failing"]
        p.findings.append(_f(
            F.DATADIR_DB_DAMAGED,
            f"{dd.db_path}: {n} problem(s) that stop bbolt or etcd (see check's findings): "
            "etcd panics on the damaged db (its start reads the whole key bucket; bbolt "
            "panics on a bad page it reaches): it starts only after repair (boltfix repair "
            "--data-dir ... --out-data-dir NEW)", failing=n))


def _ids(md: Optional[dict]) -> Optional[dict]:
    if md is None:
        return None
    return {"member_id": f"{md['node_id']:x}", "cluster_id": f"{md['cluster_id']:x}"}


def _wal_from_snapshot(p: StartPrediction, res: W.WalRead, snap_index: int, chosen) -> None:
    segs = res.segments
    if not segs:
        return
    start = [s for s in segs if s.index <= snap_index]
    if not start:
        p.findings.append(_f(
            F.DATADIR_WAL_AFTER_SNAPSHOT,
            f"no WAL segment starts at or below the snapshot index {snap_index} (the first, "
            f"{segs[0].name}, starts after {segs[0].index}): etcd: 'failed to open WAL' "
            "(ErrFileNotFound); the entries in between are gone", snapshot_index=snap_index))
        return
    snap_term = chosen["term"] if chosen else 0
    if not any(s["index"] == snap_index and s["term"] == snap_term for s in res.snapshots):
        p.findings.append(_f(
            F.DATADIR_WAL_SNAPSHOT_MISSING,
            f"the WAL holds no snapshot record for index {snap_index} term {snap_term}: "
            "etcd's ReadAll returns ErrSnapshotNotFound ('failed to read WAL, cannot be "
            "repaired')", snapshot_index=snap_index))
    first = res.first_index
    if first is not None and snap_index and first > snap_index + 1:
        p.findings.append(_f(
            F.DATADIR_WAL_GAP,
            f"the WAL's entries start at {first}, after the snapshot index {snap_index}: "
            f"entries {snap_index + 1}..{first - 1} are missing (ErrSliceOutOfRange)",
            first_index=first, snapshot_index=snap_index))


def _members_check(p: StartPrediction, res: W.WalRead, db: dict) -> None:
    md = res.metadata
    members = db.get("members") or []
    if md is None or not members:
        return
    me = f"{md['node_id']:x}"
    if me not in members:
        p.findings.append(_f(
            F.DATADIR_MEMBER_MISMATCH,
            f"the WAL belongs to member {me} (cluster {md['cluster_id']:x}), but the db's "
            f"members are {', '.join(members)}: the db and the WAL come from different "
            "members or clusters", WARNING, member_id=me, db_members=members))


def _apply_facts(p: StartPrediction, res: W.WalRead, ci: int, snap_index: int,
                 commit: int) -> None:
    last = res.last_index
    facts = p.facts
    lo = max(ci, snap_index) + 1
    applied = {"from": lo, "to": commit, "count": max(0, commit - lo + 1)}
    if last is not None and last > commit:
        applied["uncommitted"] = {"from": max(commit + 1, lo), "to": last,
                                  "count": max(0, last - max(commit, lo - 1))}
    facts["apply"] = applied
    if last is not None and ci > last:
        p.findings.append(_f(
            F.DATADIR_DB_AHEAD,
            f"the backend's consistent_index {ci} is past the WAL's last entry {last}: etcd "
            "starts, but treats every new entry up to that index as applied (server.go "
            "apply: only 'e.Index > consistIndex' reaches the backend): the proposals raft "
            f"numbers {last + 1}..{ci} are never applied, their requests time out (a torn "
            "WAL tail the db had already applied, a db from elsewhere, or a WAL from another "
            "member; repair --data-dir sets a single member's consistent_index back to the "
            "WAL's last entry)", WARNING, consistent_index=ci, last_index=last))


#: etcd's ``ServerConfig.ReqTimeout`` with the default ``--election-timeout``
#: 1000 ms (3.6 ``server/config/config.go``: 5 s + 2 x election timeout):
#: the time each member publish attempt waits
PUBLISH_TIMEOUT_S = 7


def publishes_through_v3(version: Optional[str]) -> bool:
    """Whether etcd of ``version`` (a db's :func:`boltfix.etcd.guess_etcd_version`
    text) publishes its member attributes at start as a v3
    ``ClusterMemberAttrSet`` request (3.6+: ``server.go`` ``Start``,
    ``s.publishV3``) rather than a v2 request (3.4/3.5: ``s.publish``)."""
    m = re.match(r"3\.(\d+)", version or "")
    return m is not None and int(m.group(1)) >= 6


def _ready_delay(p: StartPrediction, res: W.WalRead, ci: int, version: Optional[str],
                 members: List[str]) -> None:
    """When etcd becomes ready with the backend's consistent_index past the
    WAL's last entry, on one member (verified with the real 3.6.16 and 3.7.3).

    On restart the lone member campaigns and appends an empty entry at
    ``last + 1``; then it publishes its attributes and serves clients only
    once that proposal is applied.  3.6+ publishes a v3 request
    (3.6.16 ``server/etcdserver/server.go:545`` ``s.publishV3``), and
    ``applyEntryNormal`` returns before ``s.w.Trigger`` for an entry at or
    below the consistent_index (3.6.16 ``server.go:2009``, 3.7.3
    ``server.go:1973``: "do not re-toApply applied entries"): the attempt
    times out after ReqTimeout and publishV3 retries at the next index.  So
    ``ci - last - 1`` attempts fail (fewer when other proposals take indexes
    in between).  3.4/3.5 publish a v2 request, which ``applyEntryNormal``
    triggers whatever the index (3.5.21 ``server.go:823`` ``s.publish``,
    ``server.go:2318``): ready at once (their next client writes up to
    ``ci`` time out instead, :data:`boltfix.findings.DATADIR_DB_AHEAD`)."""
    last = res.last_index
    if last is None or ci <= last:
        return
    if len(members) > 1:
        _acked_lost(p, ci, last, len(members))
        return
    if not publishes_through_v3(version):
        return
    attempts = max(0, ci - last - 1)
    p.facts["ready_delay"] = {"failing_publish_attempts": attempts,
                              "seconds": attempts * PUBLISH_TIMEOUT_S}
    if attempts:
        p.findings.append(_f(
            F.DATADIR_READY_DELAYED,
            f"etcd {version} publishes its member through raft (server.go publishV3) and "
            f"never answers an entry at or below the consistent_index {ci} (server.go "
            "applyEntryNormal: 'do not re-toApply applied entries', 3.6.16 server.go:2009, "
            "3.7.3 server.go:1973): after the "
            f"leader's empty entry at {last + 1}, {attempts} publish attempt(s) time out "
            f"('failed to publish local member to cluster through raft'), so etcd serves "
            f"clients only after about {attempts * PUBLISH_TIMEOUT_S} s (ReqTimeout, 7 s at "
            "the default --election-timeout, each); repair --data-dir sets the consistent_index "
            "back to the WAL's last entry", WARNING, attempts=attempts,
            seconds=attempts * PUBLISH_TIMEOUT_S, consistent_index=ci, last_index=last))


def _acked_lost(p: StartPrediction, ci: int, last: int, n: int) -> None:
    """A member of several whose WAL ends below its backend's
    consistent_index: it had persisted and acknowledged the entries up to
    there (it applied them), and a leader that keeps running remembers that
    match index: its heartbeat carries ``commit = min(match, committed)``
    (raft ``sendHeartbeat``), and ``handleHeartbeat`` -> ``commitTo`` panics
    "tocommit(N) is out of range [lastIndex(M)]" (raft v3.6.0 ``log.go:324``;
    3.5's ``raft/log.go:237``).  Verified with three real 3.6.16 members."""
    p.findings.append(_f(
        F.DATADIR_ACKED_ENTRIES_LOST,
        f"this member of {n} had acknowledged the entries up to {ci} (its db applied them) but "
        f"its WAL ends at {last}: while the leader that saw them keeps running, raft panics on "
        f"its first heartbeat ('tocommit({ci} or more) is out of range [lastIndex({last})]', "
        "raft log.go commitTo); the leader sends the entries again only when it restarts "
        "(then etcd skips those at or below the consistent_index as applied): remove this "
        "member and add it again from a healthy one", WARNING, consistent_index=ci,
        last_index=last, members=n))
