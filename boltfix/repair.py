"""``boltfix repair``: a fresh, valid bbolt file from whatever a damaged one holds.

How it works, in one pass:

1. Choose the meta: the newest valid one (bbolt's own choice), the other
   one when the newest is torn, or the one forced with ``meta=``.  When both
   are invalid, rediscover the root: candidates are pages no branch page
   points to whose entries are all bucket entries; the one whose tree holds
   the most valid records wins (and the report says so).
2. Walk the chosen tree with the safe walker (:mod:`boltfix.walk`).  It
   yields only records that passed every check, in strictly increasing key
   order per bucket, and reports everything it had to drop, at the finest
   grain that is safe: a bad branch element rather than its page, a bad leaf
   element rather than its page, a bad subtree rather than its bucket.
3. Stream those records into :class:`boltfix.writer.BoltWriter`, which lays
   out a new file exactly as bbolt would, page by page, in bounded memory.
   Keys and values are copied byte for byte: nothing is invented, nothing
   reordered.
4. fsync, read the new file back with boltfix's own checker, and only if it
   is clean move it into place (no-clobber unless ``force``).  Neither the
   writing nor the read-back leaves the file in the page cache
   (:mod:`boltfix.writebehind`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import heapq
import os
import signal
import stat
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Union

from boltfix import commits, containerd, datadir, docker, etcd, raftboltdb, served
from boltfix import findings as F
from boltfix import salvage as SV
from boltfix import structs as S
from boltfix.check import check
from boltfix.errors import BoltError, FileChanged, OutputError
from boltfix.etcdkeys import KEY_BUCKET, META_BUCKET
from boltfix.findings import Collector, Finding
from boltfix.leaves import InlineRun, Tree
from boltfix.navigate import top_level_names
from boltfix.reader import DB, Meta, branch_elements, leaf_elements
from boltfix.text import name_text
from boltfix.treecheck import key_too_long
from boltfix.walk import Walker
from boltfix.writebehind import ReadBehind
from boltfix.writer import BoltWriter

MAX_ROOT_CANDIDATES = 16
MAX_REPORTED_BUCKETS = 1000


class RepairRefused(BoltError):
    """The request itself is refused (paths); nothing is written."""


class NothingRecoverable(BoltError):
    """No usable root: nothing could be salvaged; nothing is written."""


@dataclass
class RepairReport:
    """What :func:`repair` did: the meta or root used, what was kept, what
    was dropped and why, salvage's plan, and for etcd what it will serve."""

    input: str
    output: Optional[str]
    dry_run: bool
    meta: dict
    page_size: int
    freelist: str
    buckets: int = 0
    records: int = 0
    per_bucket: List[dict] = field(default_factory=list)
    dropped: List[Finding] = field(default_factory=list)
    dropped_counts: dict = field(default_factory=dict)
    other_counts: dict = field(default_factory=dict)
    written: Optional[dict] = None
    verified: Optional[bool] = None
    verify_problems: List[str] = field(default_factory=list)
    #: what salvage beyond the reachable tree found (boltfix.salvage.Plan.to_json)
    salvage: Optional[dict] = None
    lost_found: Optional[dict] = None
    #: etcd files only: what etcd will serve (boltfix.served)
    etcd: Optional[served.EtcdState] = None
    #: the file's trees as judged, and which commit was kept (boltfix.commits)
    commits: Optional[dict] = None
    #: etcd, an input inside a data dir: what etcd will do with the output in
    #: the input's place (boltfix.datadir), and the route when it will not start
    in_place: Optional[dict] = None
    #: raft-boltdb stores only: the raft log the output holds (:func:`_raft_report`)
    raft: Optional[dict] = None
    #: containerd's metadata only: its objects lost and what to run
    #: (:func:`boltfix.containerd.repair_report`)
    containerd: Optional[dict] = None
    #: Docker's volume store or local-kv.db only: what was lost, what to run
    #: (:func:`boltfix.docker.repair_report`)
    docker: Optional[dict] = None
    #: Docker's files only: the commit a rollback passed over, in Docker's
    #: terms (:func:`boltfix.docker.commit_loss`), for ``docker.lost``
    docker_rolled_back: Optional[dict] = None

    @property
    def rediscovered(self) -> bool:
        """No valid meta was used: the root was rediscovered (or lost)."""
        return self.meta.get("index") is None

    @property
    def lost_data(self) -> bool:
        """True when data was dropped, the newest meta's tree had to be passed
        over, or completeness cannot be shown (no valid meta: the rediscovered
        root may not be the last committed one)."""
        return bool(self.dropped_counts) or self.rediscovered or bool(self.meta.get("fallback"))

    def to_json(self) -> dict:
        """The report as ``repair --json`` prints it."""
        out = {
            "input": self.input,
            "output": self.output,
            "dry_run": self.dry_run,
            "meta": self.meta,
            "page_size": self.page_size,
            "freelist": self.freelist,
            "kept": {"buckets": self.buckets, "records": self.records,
                     "per_bucket": self.per_bucket},
            "lost_data": self.lost_data,
            "root_rediscovered": self.rediscovered,  # also true when the root was lost
            "root_lost": bool(self.meta.get("root_lost")),
            "meta_fallback": bool(self.meta.get("fallback")),
            "dropped_counts": self.dropped_counts,
            "dropped": [f.to_json() for f in self.dropped],
            "other_problems": self.other_counts,
            "written": self.written,
            "verified": self.verified,
            "verify_problems": self.verify_problems,
            "salvage": self.salvage,
            "lost_found": self.lost_found,
            "commits": self.commits,
        }
        if self.in_place is not None:
            out["in_place"] = self.in_place
        if self.etcd is not None:  # etcd files only: a generic report is unchanged
            out["etcd"] = self.etcd.to_json()
        if self.raft is not None:  # raft-boltdb stores only
            out["raft"] = self.raft
        if self.containerd is not None:  # containerd's metadata only
            out["containerd"] = self.containerd
        if self.docker is not None:  # Docker's files only
            out["docker"] = self.docker
        return out


# ---------------------------------------------------------------- entry point
def repair(src: Union[DB, str, os.PathLike], out_path, *, force: bool = False,
           dry_run: bool = False, meta: Optional[int] = None, page_size: Optional[int] = None,
           progress: Optional[Callable[[int], None]] = None,
           max_dropped: int = 10000, lost_found: Optional[str] = None,
           beyond_tree: bool = True, etcd_at_risk: str = "keep") -> RepairReport:
    """Repair ``src`` into ``out_path``; raises BoltError when nothing is written.

    ``src``: the input's path, or the input already open (a :class:`DB`
    opened with ``page_size`` and no forced meta, as the CLI opens it for
    its progress bar): the input is opened once, and closed here.
    ``beyond_tree``: salvage what the committed tree no longer reaches
    (:mod:`boltfix.salvage`); ``lost_found``: where to write the evidence
    that cannot be proven to belong anywhere (never into ``out_path``).
    ``etcd_at_risk``: ``keep`` (default) writes every record; ``drop`` leaves
    out every revision of each user key :mod:`boltfix.served` finds at risk.
    """
    src_path = src.filename if isinstance(src, DB) else os.fspath(src)
    out_path = os.fspath(out_path)
    try:
        _refuse_bad_output(src_path, out_path, force, dry_run)
        if lost_found is not None:
            lost_found = os.fspath(lost_found)
            _refuse_bad_output(src_path, lost_found, force, dry_run)
            if os.path.abspath(lost_found) == os.path.abspath(out_path):
                raise RepairRefused("--lost-found must not be --out: evidence never goes there")
    except BaseException:
        if isinstance(src, DB):
            src.close()
        raise
    if not isinstance(src, DB):
        db = DB(src_path, page_size=page_size, meta=meta)
    else:
        db = src
        if meta is not None:
            db.reread(page_size=page_size, meta=meta)
    try:
        return _repair(db, out_path, force, dry_run, meta, page_size, progress, max_dropped,
                       lost_found, beyond_tree, etcd_at_risk)
    except BoltError as exc:
        why = None if isinstance(exc, FileChanged) else db.changed()
        if why is not None:  # the change is why a page stopped making sense
            raise FileChanged(f"{db.filename} changed while it was being read: {why}") from exc
        raise
    finally:
        db.close()


def _repair(db: DB, out_path: str, force, dry_run, meta, page_size, progress, max_dropped,
            lost_found, beyond_tree, etcd_at_risk) -> RepairReport:
    """:func:`repair` on the open input."""
    try:
        chosen, used, plan, choice = _choose_meta_or_root_lost(db, meta, beyond_tree,
                                                               lost_found)
    except NothingRecoverable as exc:
        if page_size is not None:
            raise
        chosen, used, plan, choice = _retry_page_size(db, meta, exc, beyond_tree, lost_found)
    report = RepairReport(
        input=db.filename, output=None if dry_run else out_path, dry_run=dry_run,
        meta=chosen, page_size=db.page_size,
        freelist="synced" if used.freelist_synced else "none")
    report.commits = _commits_report(db, choice)
    report.docker_rolled_back = _docker_rolled_back(db, choice)
    collector = Collector(max_dropped)
    report.salvage = {"enabled": beyond_tree}
    if dry_run:
        stats, plan = _salvage(db, _NullFile(), collector, report, progress, used, plan)
        report.etcd = served.for_repair(db, None, collector, chosen, Tree.of(used))
        if report.etcd is not None:
            report.etcd.at_risk_action = etcd_at_risk
    else:
        stats, plan = _write_verified(db, out_path, force, collector, report, progress, used,
                                      plan, etcd_at_risk)
    report.written = stats
    _sort_findings(report, collector)
    if lost_found is not None and not dry_run:  # written even when empty
        report.lost_found = SV.write_lost_found(db, plan or SV.Plan(), lost_found, force)
    return report


def _choose_meta_or_root_lost(db: DB, forced, beyond_tree: bool, lost_found):
    """(report's meta, the meta to write, salvage plan or None, the judgement
    of the file's commits or None).  When no
    root can be used, salvage rebuilds the top level (rule 4) if it finds
    anything (or lost+found is asked for); else NothingRecoverable."""
    try:
        chosen, used, choice = _choose_meta(db, forced)
        if (chosen.get("index") is None and chosen.get("rule") is None and beyond_tree
                and any(m.valid for m in db.metas)):
            # A valid meta whose root is gone: a rediscovered root is not
            # the committed one (an older tree, or a sub-bucket's leaf that
            # looks like a root), so nothing proves its records belong
            # where it would put them: rule 4 instead (boltfix.salvage).
            # (A root commits.choose took is another matter: it proved it.)
            raise NothingRecoverable("the committed root is lost")
        return chosen, used, None, choice
    except NothingRecoverable as exc:
        plan = SV.plan_root_lost(db) if beyond_tree else None
        if plan is None or not (plan.extras or lost_found is not None):
            if plan is not None and plan.evidence:
                # nothing is proven to belong anywhere, but the file still
                # holds records: say how to keep them
                raise NothingRecoverable(
                    f"{exc}: nothing can be placed in a new file, but {len(plan.evidence)} "
                    "orphan subtrees or pages still hold records; pass --lost-found PATH to "
                    "keep them (with where each came from) as evidence",
                    page=exc.page) from exc
            raise
    newest = max((m for m in db.metas if m.valid), key=lambda m: m.txid, default=None)
    used = _synthetic_meta(
        db, 0, newest.txid if newest else 1, 0,
        S.PGID_NO_FREELIST if plan.etcd or newest is None or not newest.freelist_synced
        else 2)
    chosen = {"index": None, "txid": used.txid, "root": None, "pgid": used.pgid,
              "root_lost": True,
              "reason": "no usable root page: the top level was rebuilt from the "
                        "surviving bucket subtrees (rule 4)"}
    return chosen, used, plan, None


def _refuse_bad_output(src: str, out: str, force: bool, dry_run: bool) -> None:
    refuse_output(src, out, force, dry_run=dry_run)


def refuse_output(src: str, out: str, force: bool, *, dry_run: bool = False,
                  option: str = "--out") -> None:
    """The one rule for a path boltfix writes (``repair --out``,
    ``--lost-found``, ``pages --map-svg``): never the input (by any name),
    never a directory or anything but a regular file (forced or not), an
    existing file only with ``force``, and its directory must exist.
    Raises :class:`RepairRefused`; nothing is written."""
    if os.path.realpath(src) == os.path.realpath(out) or (
            os.path.exists(out) and os.path.exists(src) and os.path.samefile(src, out)):
        raise RepairRefused(f"refusing to write over the input {src}; choose another {option}")
    if dry_run:
        return
    if os.path.isdir(out):
        raise RepairRefused(f"{out} is a directory")
    if os.path.lexists(out):
        # a device, FIFO or socket is never replaced, forced or not (rename
        # would swap /dev/sdX or a pipe for a plain file)
        kind = _not_regular(out)
        if kind:
            raise RepairRefused(f"{out} is {kind}, not a regular file; refusing to replace it")
        if not force:
            raise RepairRefused(f"{out} exists; pass --force to replace it")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise RepairRefused(f"the directory {parent} does not exist")


def _not_regular(path: str) -> Optional[str]:
    """What ``path`` (following links) is when it is not a regular file."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "a dangling link" if os.path.islink(path) else "unreadable"
    if stat.S_ISREG(mode):
        return None
    for test, kind in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


# ---------------------------------------------------------------- meta
def _choose_meta(db: DB, forced: Optional[int]):
    """The meta whose tree repair walks (db.meta, the other one, or one made
    for a rediscovered root), the report's description of the choice, and
    :func:`boltfix.commits.choose`'s judgement of the file's trees (None
    when a meta is forced or none is valid).  db.meta itself is left as the
    file has it.

    Unless a meta is forced, the tree is the one :mod:`boltfix.commits`
    chooses (the newest whole commit: the newest meta's, one a copy made
    while bbolt wrote left behind, or the previous commit's); when no tree
    is whole, as below.

    A valid meta whose root page is unusable (past the end of a truncated
    file, zeroed) is passed over for the other meta when that one's root is
    usable (the last transaction is then lost, and the report says so), and
    otherwise for a rediscovered root.
    """
    why_not = ""
    if forced is None and db.meta is not None:
        choice = commits.choose(db)
        if choice is not None and choice.rule in (commits.ROLLED_BACK, commits.COPIED,
                                                  commits.ROLLED_BACK_FURTHER, commits.MENDED):
            return _chosen(db, choice), _meta_of(db, choice), choice
    else:
        choice = None
    if db.meta is not None and (forced is None or db.meta.valid):
        problem = _root_problem(db, db.meta.root)
        if problem is None:
            return {"index": db.meta.index, "txid": db.meta.txid, "root": db.meta.root,
                    "pgid": db.meta.pgid, "reason": db.meta_source}, db.meta, choice
        if forced is not None:
            raise NothingRecoverable(f"meta {forced}: {problem}", page=db.meta.root)
        used, other = db.meta, db.metas[1 - db.meta.index]
        if other.valid and _root_problem(db, other.root) is None:
            return {"index": other.index, "txid": other.txid, "root": other.root,
                    "pgid": other.pgid, "fallback": True,
                    "reason": f"meta {used.index} (txid {used.txid}) is valid but {problem}; "
                              f"using meta {other.index}: transaction {used.txid} is lost"
                    }, other, choice
        why_not = f"meta {used.index}: {problem}; "
    if forced is not None and db.meta is not None:
        m = db.meta
        if m.magic == S.MAGIC and _root_problem(db, m.root) is None:
            # A forced but imperfect meta: use its root, bound the HWM by the file.
            made = _synthetic_meta(db, m.root, m.txid, m.sequence,
                                   m.freelist if m.freelist_synced else S.PGID_NO_FREELIST)
            return {"index": forced, "txid": m.txid, "root": m.root, "pgid": made.pgid,
                    "reason": f"forced meta {forced} ({', '.join(m.problems)})"}, made, choice
    root, records, considered = rediscover_root(db)
    if root is None:
        raise NothingRecoverable(
            why_not + "no valid meta page with a usable root, and no page looks like a "
            "root bucket: nothing can be recovered", page=None)
    txid = max((m.txid for m in db.metas if m.magic == S.MAGIC), default=1)
    made = _synthetic_meta(db, root, txid, 0, S.PGID_NO_FREELIST)
    return {"index": None, "txid": txid, "root": root, "pgid": made.pgid,
            "reason": f"{why_not or 'both metas invalid; '}rediscovered root page {root} "
                      f"({records} records; {considered} candidates considered)"}, made, choice


def _in_place(src: str, written: str, out_path: str) -> Optional[dict]:
    """etcd started on the input's data dir with the output in the input's
    place (the data dir itself is only read): ``starts``, and when it will
    not, why and the route that works (:func:`boltfix.datadir.restore_route`)."""
    pred = datadir.in_place(src, written)
    if pred is None:
        return None
    out = pred.to_json()
    if isinstance(out.get("db"), dict):
        out["db"]["path"] = out_path  # (read from the temporary file beside it)
    out["starts"] = pred.outcome != "fails"
    if not out["starts"]:
        out["route"] = datadir.restore_route()
    return out


def _commits_report(db: DB, choice: Optional[commits.Choice]) -> Optional[dict]:
    """The report's ``commits``: every tree judged, the rule that chose, and
    when a newer commit was passed over, what it held that is not kept."""
    if choice is None:
        return None
    out = choice.to_json()
    if choice.passed_over is not None:
        out["newer_commit"] = commits.newer_commit_loss(
            db, choice.passed_over.candidate.tree, choice.candidate.tree)
    return out


def _docker_rolled_back(db: DB, choice: Optional[commits.Choice]) -> Optional[dict]:
    """A Docker file's commit that a rollback passed over, in Docker's
    terms (:func:`boltfix.docker.commit_loss`); None for any other file or
    when no commit was passed over."""
    if choice is None or choice.passed_over is None:
        return None
    kept, newer = choice.candidate.tree, choice.passed_over.candidate.tree
    kind = docker.kind_of(top_level_names(db, kept))
    if kind is None or docker.recognise(db, kept) is None:
        return None
    return docker.commit_loss(db, kind, newer, kept)


#: pieces of salvage's evidence read for the Docker report's names
MAX_DOCKER_EVIDENCE = 1000


def _docker_evidence(db: DB, plan, collector: Collector, used: Meta) -> tuple:
    """A Docker file's pages lost whole, with the exact key range each was
    followed with ({page: (start, end)}: a finding's ``key_range`` cuts a
    key to 32 bytes, and libnetwork's keys are longer), and the objects
    that salvage's evidence (what lost+found holds) names inside them
    (:func:`boltfix.docker.evidence_names`); ({}, []) for any other file."""
    if plan is not None and plan.root_lost:
        return {}, []
    kind = docker.kind_of(top_level_names(db, Tree.of(used)))
    if kind is None:
        return {}, []
    dropped = [f for f in collector.findings if f.code in F.REPAIR_LOSS]
    bounds = {f.page: b for f in dropped[:MAX_DOCKER_EVIDENCE]
              if f.page is not None and f.pages and tuple(f.bucket) == (kind,)
              and (b := _child_bounds(db, f.page, f.pages)) is not None}
    if plan is None or not plan.evidence:
        return bounds, []
    return bounds, docker.evidence_names(
        kind, dropped, ((e.page, e.state, SV.evidence_records(db, e))
                        for e in plan.evidence[:MAX_DOCKER_EVIDENCE]), bounds)


def _child_bounds(db: DB, child: int, parents) -> Optional[tuple]:
    """The key range (start, end excluded; None open) that the branch pages
    ``parents`` (root first) give page ``child``: its element's key, and
    the next element's key here or further up.  None when a parent does not
    point at the page below it."""
    try:
        below, start, end = child, None, None
        for pgid in reversed(list(parents)):
            els = db.page(pgid).elements()
            i = next((j for j, e in enumerate(els) if e.child == below), None)
            if i is None:
                return None
            if below == child:
                start = bytes(els[i].key)
            if i + 1 < len(els):
                end = bytes(els[i + 1].key)
                break
            below = pgid
        return start, end
    except Exception:  # a damaged parent: the finding's own range stands
        return None


def _chosen(db: DB, choice: commits.Choice) -> dict:
    """The report's ``meta`` for a tree :func:`boltfix.commits.choose` chose
    over the newest valid meta's (its commit is lost: ``fallback``; not so
    for a newer meta mended, which loses nothing)."""
    cand = choice.candidate
    meta = cand.meta
    out = {"index": meta.index if meta is not None else None,
           "txid": meta.txid if meta is not None else db.meta.txid, "root": cand.tree.root,
           "pgid": cand.tree.hwm, "fallback": choice.rule != commits.MENDED,
           "rule": choice.rule,
           "reason": choice.reason}
    if meta is None:
        out["root_rediscovered"] = True
    return out


def _meta_of(db: DB, choice: commits.Choice) -> Meta:
    """The meta to write for the chosen tree: its own, or for a root no
    meta names one made for it (the newest meta's txid, sequence and
    freelist mode)."""
    cand = choice.candidate
    if cand.meta is not None:
        return cand.meta
    newest = db.meta
    return _synthetic_meta(db, cand.tree.root, newest.txid, newest.sequence,
                           2 if newest.freelist_synced else S.PGID_NO_FREELIST)


def _retry_page_size(db: DB, meta: Optional[int], failure: NothingRecoverable,
                     beyond_tree: bool, lost_found):
    """Nothing parses at the page size the meta claims (a meta with a good
    checksum but a wrong page size, e.g. 65536 on a 4096 file): try the size
    the page headers suggest (ids equal to their position) before giving up,
    over the same map (:meth:`DB.reread`).  Returns the meta choice, the meta
    used and the salvage plan; raises ``failure`` when there is no other
    size to try."""
    claimed = db.page_size
    alt = db.scan_page_size()  # the reader's own header scan
    if alt is None or alt == claimed:
        raise failure
    db.reread(page_size=alt, meta=meta)
    chosen, used, plan, choice = _choose_meta_or_root_lost(db, meta, beyond_tree, lost_found)
    chosen["reason"] = (f"page size {alt} from the page headers (nothing parses at the "
                        f"{claimed} the meta claims); " + chosen["reason"])
    chosen["page_size_guessed"] = True
    return chosen, used, plan, choice


def _root_problem(db: DB, root: int) -> Optional[str]:
    """Why a root page cannot be used, or None."""
    if root < 2 or root >= db.pages_in_file:
        return f"its root page {root} is past the end of the file" if root >= 2 \
            else f"its root page {root} is a meta page"
    p = db.page(root)
    if p.flags not in (S.BRANCH_PAGE_FLAG, S.LEAF_PAGE_FLAG):
        return f"its root page {root} is a {p.type} page"
    leaf = _leftmost_leaf(db, p)
    if leaf is not None:
        foreign = _plain_records(db, leaf)
        if foreign:
            # bbolt allows only buckets in the root: a flag bit lost on one
            # entry leaves a bucket value behind; a value that is no bucket
            # at all means another bucket's page now lies where the root was
            # (a copy taken while bbolt wrote, a misdirected write)
            return (f"its root page {root} holds {foreign} plain records whose values are "
                    "no bucket: it is another bucket's page, not a root")
    return None


def _leftmost_leaf(db: DB, page, depth: int = 8):
    """The first leaf below a root page (down element 0 of each branch,
    every pointer bounded), or None."""
    for _ in range(depth):
        if page.flags == S.LEAF_PAGE_FLAG:
            return page
        els = page.elements() if page.flags == S.BRANCH_PAGE_FLAG else []
        if not els or els[0].problem or not 2 <= els[0].child < db.pages_in_file:
            return None
        page = db.page(els[0].child)
    return None


def _plain_records(db: DB, page) -> int:
    """Elements of a leaf that are neither bucket entries nor a bucket value
    whose entry lost its flag (root below the high-water mark, or an inline
    leaf page)."""
    n = 0
    for el in page.elements():
        if el.problem or el.flags & S.BUCKET_LEAF_FLAG:
            continue
        value = el.value
        if len(value) >= S.BUCKET_HEADER_SIZE:
            broot, _ = S.BUCKET_HEADER.unpack_from(value, 0)
            if 2 <= broot < db.pages_in_file:
                continue
            if broot == 0 and len(value) >= S.BUCKET_HEADER_SIZE + S.PAGE_HEADER_SIZE and \
                    S.PAGE_HEADER.unpack_from(value, S.BUCKET_HEADER_SIZE)[1] == S.LEAF_PAGE_FLAG:
                continue
        n += 1
    return n


def _synthetic_meta(db: DB, root: int, txid: int, sequence: int, freelist: int) -> Meta:
    m = Meta(index=-1, offset=0, magic=S.MAGIC, version=S.VERSION,
             page_size=db.page_size, root=root, sequence=sequence,
             freelist=freelist if freelist < db.pages_in_file or freelist == S.PGID_NO_FREELIST
             else S.PGID_NO_FREELIST,
             pgid=db.pages_in_file, txid=txid)
    return m


def rediscover_root(db: DB):
    """Find the most likely root bucket page when no meta can be trusted.

    Returns (page id or None, records under it, candidates considered).
    """
    referenced = bytearray(db.pages_in_file)
    candidates = []
    ps = db.page_size
    for pgid in range(2, db.pages_in_file):
        pid, flags, count, overflow = S.PAGE_HEADER.unpack_from(db.buf, pgid * ps)
        if pid != pgid:
            continue
        end = min((pgid + overflow + 1) * ps, db.size)
        if flags == S.BRANCH_PAGE_FLAG:
            for _, _, child, problem in branch_elements(db.buf, pgid * ps, count, end):
                if not problem and child < len(referenced):
                    referenced[child] = 1
        elif flags == S.LEAF_PAGE_FLAG and count and _all_bucket_entries(db, pgid, count, end):
            candidates.append(pgid)
    # A page some branch points at is usually not a root, but a stale branch
    # in a free page may point at the live root: rank, do not exclude.
    roots = sorted(candidates, key=lambda p: (not referenced[p], p))[-MAX_ROOT_CANDIDATES:]
    best, best_score, best_records = None, None, 0
    for pgid in reversed(roots):
        score, records = _root_score(db, pgid, bool(referenced[pgid]))
        if best_score is None or score > best_score:
            best, best_score, best_records = pgid, score, records
    return best, best_records, len(roots)


def _root_score(db: DB, pgid: int, referenced: bool):
    """How likely a candidate root is the last committed one; higher wins.

    Old roots survive in free pages, so "most records" alone would often pick
    an older tree (etcd's compaction shrinks the newest one).  In order:
    1. a damaged meta that still names this page as its root (its txid);
    2. for etcd files, the tree's ``meta/consistent_index`` (it only grows);
    3. fewer problems in the tree (a stale tree is often partly overwritten);
    4. no branch page pointing at it;
    5. more records.
    """
    named = max((m.txid for m in db.metas if m.root == pgid), default=-1)
    problems = Collector(limit=0)
    walker = Walker(db, problems, tree=Tree(pgid, 0, db.pages_in_file))
    records = 0
    index = -1
    for bucket, rec in walker.walk():
        records += 1
        if bucket.path == META_BUCKET and rec.key == b"consistent_index" and len(rec.value) == 8:
            index = int.from_bytes(rec.value, "big")
    return (named >= 0, named, index, -problems.total, not referenced, records), records


def _all_bucket_entries(db: DB, pgid: int, count: int, end: int) -> bool:
    for _, flags, _, value, problem in leaf_elements(db.buf, pgid * db.page_size, count, end):
        if problem or not flags & S.BUCKET_LEAF_FLAG or len(value) < S.BUCKET_HEADER_SIZE:
            return False
    return True


# ---------------------------------------------------------------- salvage
def _salvage(db: DB, fileobj, collector, report: RepairReport, progress, m: Meta,
             plan=None, keep=None) -> dict:
    """Walk the tree of meta ``m`` and stream every valid record into a BoltWriter.

    The first pass writes what the tree reaches; when the walk pruned
    something, :mod:`boltfix.salvage` plans what beyond the tree is proven
    to belong, and a second pass writes the tree's records with those merged
    in (an intact file is written once, on the copy path).
    ``keep``: (keys, values) -> the records of etcd's ``key`` bucket to write
    (``--etcd-at-risk drop``); None writes all.  Returns (the writer's
    stats, salvage's plan or None).
    """
    writer = BoltWriter(fileobj, db.page_size,
                        freelist="synced" if m.freelist_synced else "none",
                        txid=max(m.txid, 1), root_sequence=m.sequence)
    tree = Tree.of(m)
    prunes = SV.PruneLog(collector if plan is None else None)
    walker = Walker(db, prunes, progress, tree=tree)
    seen = SV.Seen(collector if plan is None else None)
    if plan is not None and plan.root_lost:
        etcd_keys, stream = plan.etcd, iter(())
    else:
        root = walker.root_bucket()
        _require_usable_root(db, root.root)
        # etcd exits at start on a `key` record it cannot decode: such records
        # are dropped (and reported), so that etcd starts from the output.
        etcd_keys = etcd.looks_like_etcd(top_level_names(db, tree))
        # salvaged records may be merged into a small sub-bucket: with a
        # plan, every sub-bucket comes on its own (SV.merged opens them)
        stream = seen.observe(_batches(walker, etcd_keys, plan is None), db)
    into = _Into(db, walker, writer, collector, report, keep)
    # raft-boltdb: a `logs` record not under its own Index is dropped (check's rule)
    into.raft_logs = not (plan is not None and plan.root_lost) and raftboltdb.looks_like_raft(
        top_level_names(db, tree))
    # libnetwork: a value shorter than libkv's index is dropped (its List panics)
    into.docker_kv = not (plan is not None and plan.root_lost) and docker.kind_of(
        top_level_names(db, tree)) == docker.LIBNETWORK
    # whole: True pages copied as they stand, False a batch of the walk,
    # None a batch salvage placed (its records are not its page's: never copied)
    for bucket, item, etcd_check, whole in SV.merged(stream, plan, db):
        if whole:
            into.leaves(bucket, item)
        else:
            into.batch(bucket, item, etcd_check, copy=whole is not None)
    into.open(())
    stats = writer.close()
    # a meta fallback lost the newest transaction: its pages are evidence at least
    newer_lost = bool(report.meta.get("fallback"))
    if plan is None and report.salvage.get("enabled") and (prunes.pruned or seen.bad_pages
                                                           or newer_lost):
        plan = SV.plan_salvage(db, SV.inputs_from_walk(db, walker, prunes, m), seen, etcd_keys,
                               newer_lost=newer_lost)
        if plan.extras:  # write again, with the salvaged records merged in
            fileobj.seek(0)
            fileobj.truncate(0)
            report.records = report.buckets = 0
            return _salvage(db, fileobj, SV.Dedupe(collector), report, progress, m, plan)
    if plan is not None:
        report.salvage.update(plan.to_json())
    report.per_bucket = [
        {"path": [name_text(p) for p in path], "records": n}
        for path, n in sorted(into.per_bucket.items())[:MAX_REPORTED_BUCKETS]]
    return (stats.as_dict() if hasattr(stats, "as_dict") else dict(vars(stats))), plan


def _batches(walker: Walker, etcd_keys: bool, runs: bool = True):
    """(bucket, item, whether its records need etcd's check, whole) in walk
    order.  ``item`` is a :class:`~boltfix.walk.Batch`, or with ``whole``
    ``(leaves, start, stop)``: pages of whole clean
    :class:`~boltfix.walk.Leaves` that need no etcd check, or (with
    ``runs``, not whole) an :class:`~boltfix.walk.InlineRun` of small
    sub-buckets, written whole by :meth:`_Into.inline_run`.

    In etcd's ``key`` bucket only the pages :meth:`Leaves.etcd_suspects`
    names have their records checked here.
    """
    for bucket, leaves in walker.walk_leaves(inline_runs=runs):
        etcd_check = etcd_keys and bucket.path == KEY_BUCKET
        if type(leaves) is InlineRun:
            if etcd_check:  # each entry goes through etcd's check (_Into._keep)
                yield from ((b, next(lv.batches()), True, False)
                            for b, lv in leaves.expand(walker, bucket))
            else:
                yield bucket, leaves, False, False
            continue
        pages = leaves.pages
        if pages is None:  # one page already read
            yield bucket, next(leaves.batches()), etcd_check, False
            continue
        start = 0
        for i in sorted(leaves.etcd_suspects()) if etcd_check else ():
            if start < i:
                yield bucket, (leaves, start, i), False, True
            yield bucket, next(leaves.batches(i, i + 1)), True, False
            start = i + 1
        if start < len(pages):
            yield bucket, (leaves, start, len(pages)), False, True

class _Into:
    """Where the walk's records go: the writer, its open bucket path kept in
    step with the walk, and the report's counts.

    A page whose every element the walk took, and that passed repair's own
    checks, is copied as it stands when the writer can
    (:meth:`BoltWriter.copy_leaves`: laid out exactly as ``node.write`` lays
    out its records); the rule looks only at the page, so the file is the
    same whether the page came in a C run or as a batch.
    """

    def __init__(self, db: DB, walker: Walker, writer, collector, report,
                 keep=None) -> None:
        self.db = db
        self.keep = keep  # etcd's key bucket records to write (--etcd-at-risk drop)
        self.walker = walker
        self.writer = writer
        self.collector = collector
        self.report = report
        self.open_path: list = []
        self._opened: tuple = ()  # tuple(open_path), kept in step
        self.per_bucket = Counter()
        self.skipped = None  # path of a bucket left out: its whole subtree goes with it
        self.raft_logs = False  # a raft-boltdb store: `logs` records checked (_keep)
        self.docker_kv = False  # libnetwork's local-kv.db: short values dropped (_keep)

    def open(self, path) -> None:
        if self._opened == path:
            return
        while tuple(self.open_path) != path:
            self.writer.end_bucket()
            self.open_path.pop()
        self._opened = tuple(self.open_path)

    def leaves(self, bucket, item) -> None:
        """Pages ``start:stop`` of whole clean :class:`~boltfix.walk.Leaves`:
        copied in bulk; a page the writer will not copy goes as a batch
        (with every check), and copying resumes after it."""
        leaves, start, stop = item
        if self._skip(bucket):
            return
        if self._raft_check(bucket) or self._docker_check(bucket):
            # each page's records seen; a clean page still copied
            for batch in leaves.batches(start, stop):
                self.batch(bucket, batch, False)
            return
        if self._filtered(bucket):  # records are left out: no page goes as it stands
            for batch in leaves.batches(start, stop):
                self.batch(bucket, batch, False)
            return
        pages = leaves.pages
        while start < stop:
            start += self._copy(bucket, pages[start:stop])
            if start < stop:
                self.batch(bucket, next(leaves.batches(start, start + 1)), False)
                start += 1

    def batch(self, bucket, batch, etcd_check: bool, copy: bool = True) -> None:
        if type(batch) is InlineRun:
            self.inline_run(bucket, batch)
            return
        if (batch.bucket_entry is None and self.skipped is None
                and max(map(len, batch.keys), default=0) <= S.MAX_KEY_SIZE
                and not (etcd_check and any(map(_etcd_unloadable, batch.keys, batch.values)))
                and not (self._raft_check(bucket)
                         and any(map(raftboltdb.index_mismatch, batch.keys, batch.values)))
                and not (self._docker_check(bucket)
                         and any(map(docker.unloadable, batch.keys, batch.values)))):
            # the common case, plain records of one page: in one go
            self.open(bucket.path)
            if self._filtered(bucket):
                keys, values = self.keep(batch.keys, batch.values)
                self.writer.put_many(keys, values)
                self._count(bucket.path, len(keys))
                return
            if copy and batch.indexes and batch.indexes[0] == 0 and self.writer.may_copy:
                leaf = _whole_leaf(self.db, batch.page, len(batch.keys))
                if leaf is not None and self._copy(bucket, [leaf]):
                    return
            if len(batch.keys) == 1:  # e.g. a small inline bucket's record
                self.writer.put(batch.keys[0], batch.values[0])
            else:
                self.writer.put_many(batch.keys, batch.values)
            self._count(bucket.path, len(batch.keys))
            return
        for rec in batch.records():
            if not self._skip(bucket) and self._keep(bucket, rec, etcd_check):
                self._record(bucket, rec)

    def inline_run(self, bucket, run) -> None:
        """Small sub-buckets whose values are the bytes the writer would
        write for them (walk.canonical_inline), added as they stand: the
        same file as :meth:`_record` and a batch for each, in one call."""
        if self._skip(bucket):
            return
        self.open(bucket.path)
        self.writer.put_inline_buckets(run.keys, run.values, run.records)
        self.report.buckets += len(run)
        self.report.records += run.records
        path = bucket.path
        counts = self.per_bucket  # (Counter.update of a dict adds in a Python loop)
        for name, n in zip(run.keys, run.counts):
            counts[path + (name,)] += n
        self._bound()

    def _skip(self, bucket) -> bool:
        """Records below a bucket entry that was left out are left out too."""
        if self.skipped is None:
            return False
        if bucket.path[:len(self.skipped)] == self.skipped:
            return True
        self.skipped = None
        return False

    def _keep(self, bucket, rec, etcd_check: bool) -> bool:
        too_long = key_too_long(rec.key, rec.page, bucket.path, rec.index, rec.is_bucket)
        if too_long is not None:
            self.collector(too_long)  # bbolt's Put refuses it: dropped (check's rule)
        elif etcd_check and (problems := etcd.check_key_record(
                rec.key, None if rec.is_bucket else rec.value)):
            self.collector(Finding(F.ETCD_UNLOADABLE_RECORD,
                                   f"etcd cannot load this `key` record, dropped: "
                                   f"{problems[0][1]}", page=rec.page, bucket=bucket.path,
                                   detail={"index": rec.index, "key": rec.key.hex()}))
        elif self._raft_check(bucket) and (why := raftboltdb.index_mismatch(
                rec.key, None if rec.is_bucket else rec.value)):
            self.collector(Finding(F.RAFT_LOG_INDEX_MISMATCH,
                                   f"raft-boltdb's `logs` record is not under its own Index, "
                                   f"dropped: {why}", page=rec.page, bucket=bucket.path,
                                   detail={"index": rec.index, "key": rec.key.hex()}))
        elif self._docker_check(bucket) and not rec.is_bucket \
                and docker.unloadable(rec.key, rec.value):
            self.collector(Finding(F.DOCKER_KV_VALUE_SHORT,
                                   "libnetwork's record is shorter than libkv's 8-byte index "
                                   "(its List panics on it), dropped", page=rec.page,
                                   bucket=bucket.path,
                                   detail={"index": rec.index, "key": rec.key.hex()}))
        else:
            return True
        if rec.is_bucket:
            self.skipped = bucket.path + (rec.key,)
        return False

    def _docker_check(self, bucket) -> bool:
        """Whether ``bucket``'s records are libnetwork's, checked (_keep)."""
        return self.docker_kv and bucket.path == (docker.LIBNETWORK,)

    def _raft_check(self, bucket) -> bool:
        return self.raft_logs and bucket.path == raftboltdb.LOGS_BUCKET

    def _filtered(self, bucket) -> bool:
        return self.keep is not None and bucket.path == KEY_BUCKET

    def _record(self, bucket, rec) -> None:
        if self._filtered(bucket) and not rec.is_bucket and not self.keep([rec.key],
                                                                         [rec.value])[0]:
            return
        self.open(bucket.path)
        if not rec.is_bucket:
            self.writer.put(rec.key, rec.value)
            self._count(bucket.path, 1)
        elif rec.child is not None:  # else reported by the walker (malformed value)
            self.writer.begin_bucket(rec.key, rec.child.sequence)
            self.open_path.append(rec.key)
            self._opened = tuple(self.open_path)
            self.report.buckets += 1
            self.per_bucket[rec.child.path] += 0
            self._bound()

    def _copy(self, bucket, leaves) -> int:
        """Whole leaves copied as they stand (how many: a prefix)."""
        self.open(bucket.path)
        before = self.writer.keys_written
        taken = self.writer.copy_leaves(self.db.buf, leaves)
        self._count(bucket.path, self.writer.keys_written - before)
        return taken

    def _count(self, path, n: int) -> None:
        self.report.records += n
        self.per_bucket[path] += n
        self._bound()

    def _bound(self) -> None:
        """Keep the counts of the MAX_REPORTED_BUCKETS smallest paths only
        (what the report lists), so that 300,000 buckets cost no 300,000
        entries.  A path left out has that many smaller paths kept, which
        stay, so it can never come back into the list with a part count."""
        if len(self.per_bucket) > 2 * MAX_REPORTED_BUCKETS:
            counts = self.per_bucket
            self.per_bucket = Counter(
                {p: counts[p] for p in heapq.nsmallest(MAX_REPORTED_BUCKETS, counts)})


def _whole_leaf(db: DB, pgid: int, count: int):
    """``(pgid, count, end)`` when a batch of ``count`` records starting at
    element 0 holds every element the page's header counts (a page whose
    count had to be recovered is rebuilt instead)."""
    ps = db.page_size
    off = pgid * ps
    if off + S.PAGE_HEADER_SIZE > len(db.buf):
        return None
    _, flags, hcount, overflow = S.PAGE_HEADER.unpack_from(db.buf, off)
    if hcount != count or flags != S.LEAF_PAGE_FLAG:
        return None
    return pgid, count, min(off + (overflow + 1) * ps, len(db.buf))


def _etcd_unloadable(key: bytes, value) -> bool:
    return bool(etcd.check_key_record(key, value))


def _require_usable_root(db: DB, root: int) -> None:
    """The root page itself must be a readable branch or leaf page."""
    problem = _root_problem(db, root)
    if problem:
        raise NothingRecoverable(f"the meta's {problem[4:]}; try --meta with the other "
                                 "meta page", page=root)


def _write_verified(db: DB, out_path: str, force: bool, collector, report, progress,
                    used: Meta, plan=None, etcd_at_risk: str = "keep") -> dict:
    """Write to a temp file beside the target, fsync, verify, then move it in.

    Whatever stops it (a full or read-only filesystem, a signal, the input
    changing), the temp file is removed and nothing is moved into place.
    Returns (the writer's stats, salvage's plan or None).
    """
    directory = os.path.dirname(os.path.abspath(out_path))
    tmp = None
    try:
        # a signal raised inside mkstemp, after it made the file and before
        # `tmp` names it, would leave the file behind: hold it till then
        with _signals_held():
            try:
                fd, tmp = tempfile.mkstemp(prefix=".boltfix-repair-", suffix=".tmp",
                                           dir=directory)
            except OSError as exc:
                raise OutputError(f"cannot write in {directory}: {exc.strerror}") from exc
        with os.fdopen(fd, "w+b", buffering=0) as raw:
            stats, plan = _salvage(db, _WholeWrites(raw), collector, report, progress, used,
                                   plan)
            raw.flush()
            os.fsync(raw.fileno())
        # what etcd will serve: from the records written, evidence from the input
        report.etcd = served.for_repair(db, tmp, collector, report.meta, Tree.of(used),
                                        keep_keys=etcd_at_risk == "drop")
        _raise_if_input_changed(db)
        docker_bounds, docker_evidence = _docker_evidence(db, plan, collector, used)
        if plan is None:
            db.close()  # unmap the input before mapping the output: half the peak RSS
        if report.etcd is not None and etcd_at_risk == "drop":
            tmp, stats = _drop_at_risk(tmp, directory, report, stats)
        verified = _verify(tmp, report)
        report.raft = _raft_report(verified.stats.get("raft"), collector, report)
        if verified.stats.get("containerd") is not None:
            report.containerd = containerd.repair_report(
                verified.stats["containerd"], verified.findings,
                [f for f in collector.findings if f.code in F.REPAIR_LOSS])
        if verified.stats.get("docker") is not None:
            report.docker = docker.repair_report(
                verified.stats["docker"], verified.findings,
                [f for f in collector.findings if f.code in F.REPAIR_LOSS],
                report.docker_rolled_back, docker_evidence, docker_bounds)
        if report.etcd is not None:
            report.in_place = _in_place(report.input, tmp, out_path)
        if force:
            os.replace(tmp, out_path)
        else:
            os.link(tmp, out_path)  # fails if out_path appeared meanwhile: no clobber
            os.unlink(tmp)
        fsync_dir(directory)
        return stats, plan
    except FileExistsError as exc:
        raise RepairRefused(f"{out_path} appeared while repairing; nothing replaced") from exc
    except OSError as exc:
        # ENOSPC, EROFS, EACCES, EIO...: the user's environment, not damage
        raise OutputError(f"cannot write {out_path} (temporary file {tmp}): "
                          f"{exc.strerror or exc}; nothing written") from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


@contextlib.contextmanager
def _signals_held():
    """SIGINT and SIGTERM stay pending (not lost) for the lines inside; the
    CLI's handler runs as soon as they are let through."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _raise_if_input_changed(db: DB) -> None:
    """The input changed while it was copied: the copy is not of one file state."""
    why = db.changed()
    if why is not None:
        raise FileChanged(f"{db.filename} changed while it was being read: {why}")


def _drop_at_risk(tmp: str, directory: str, report: RepairReport, stats: dict):
    """``--etcd-at-risk drop``: rewrite the (clean) temp file without the
    at-risk keys' revisions; returns the new temp file and its stats."""
    st = report.etcd
    st.at_risk_action = "drop"
    if not st.at_risk_count:
        return tmp, stats
    fd, tmp2 = tempfile.mkstemp(prefix=".boltfix-repair-", suffix=".tmp", dir=directory)
    again = dataclasses.replace(report, records=0, buckets=0, per_bucket=[])
    try:
        with DB(tmp) as src, os.fdopen(fd, "w+b", buffering=0) as raw:
            stats, _ = _salvage(src, raw, Collector(0), again, None, src.meta,
                                keep=served.drop_filter(st))
            raw.flush()
            os.fsync(raw.fileno())
    except BaseException:
        os.unlink(tmp2)
        raise
    os.unlink(tmp)
    st.dropped_records = report.records - again.records
    report.records, report.buckets, report.per_bucket = \
        again.records, again.buckets, again.per_bucket
    return tmp2, stats


def _verify(path: str, report: RepairReport):
    """Check the written file; its CheckResult (raises when it is not clean)."""
    with DB(path) as out:
        # the writer dropped the file from the cache as it went: so does this read
        result = check(out, max_findings=20, progress=ReadBehind.of(out))
    # etcd-* and raft-* findings judge the content (a value that is no
    # KeyValue, a missing consistent_index, raft log indexes missing where a
    # damaged page held them), copied byte for byte from the input; only
    # structural problems mean the new file is broken.
    structural = sum(n for code, n in result.counts.items() if not _content_code(code))
    report.verified = structural == 0
    report.verify_problems = [f.message for f in result.findings if not _content_code(f.code)]
    if structural:
        raise BoltError("the repaired file did not pass boltfix's own check; nothing was "
                        "written: " + "; ".join(report.verify_problems[:3]))
    return result


def _raft_report(facts: Optional[dict], collector: Collector,
                 report: RepairReport) -> Optional[dict]:
    """A raft-boltdb store's log as the output holds it (``facts``: the
    read-back check's ``stats.raft``, so it is what raft-boltdb's
    FirstIndex, LastIndex and GetLog will see): ``inspect``'s ``raft``
    facts, plus ``lost``: the index ranges missing between the first and the
    last log (GetLog answers ErrLogNotFound there), how many of repair's
    losses were in ``logs``, and whether logs before the first or past the
    last kept may be gone (a loss in ``logs``, or a newer commit passed
    over: nothing proves the ends whole).  None when the output is not a
    raft-boltdb store."""
    if facts is None:
        return None
    in_logs = sum(1 for f in collector.findings if f.code in F.REPAIR_LOSS
                  and tuple(bytes(b) for b in f.bucket) == raftboltdb.LOGS_BUCKET)
    gaps = facts["logs"]["gaps"]
    return {**facts, "lost": {
        "ranges": [list(g) for g in gaps["first"]],
        "ranges_total": gaps["count"],
        "missing_indexes": gaps["missing_indexes"],
        "dropped_in_logs": in_logs,
        "ends_may_be_lost": bool(in_logs or report.rediscovered
                                 or report.meta.get("fallback")),
    }}


def _content_code(code: str) -> bool:
    """A finding about an application's content, not the file's structure."""
    return code.startswith(("etcd-", "raft-", "containerd-", "docker-"))


def fsync_dir(directory: str) -> None:
    """fsync a directory, so a file just linked or renamed into it stays
    after a crash (best effort: some filesystems refuse)."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _sort_findings(report: RepairReport, collector: Collector) -> None:
    report.dropped = [f for f in collector.findings if f.code in F.REPAIR_LOSS]
    report.dropped_counts = {k: v for k, v in collector.counts.items() if k in F.REPAIR_LOSS}
    report.other_counts = {k: v for k, v in collector.counts.items() if k not in F.REPAIR_LOSS}


class _WholeWrites:
    """The temp file, whose write() writes everything or raises.

    An unbuffered file may write only part of a chunk (a filesystem filling
    up) and say so in its return value; the next write then raises ENOSPC.
    """

    def __init__(self, raw):
        self._raw = raw

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            n = self._raw.write(view[done:])
            if not n:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            done += n
        return done

    def __getattr__(self, name):
        return getattr(self._raw, name)


class _NullFile:
    """A sink for --dry-run: the writer runs (and validates) but nothing lands."""

    def __init__(self):
        self._pos = 0
        self._end = 0

    def write(self, data) -> int:
        n = len(data)
        self._pos += n
        self._end = max(self._end, self._pos)
        return n

    def seek(self, pos, whence=0):
        self._pos = pos if whence == 0 else (self._pos + pos if whence == 1 else self._end + pos)
        return self._pos

    def tell(self):
        return self._pos

    def flush(self):
        pass

    def truncate(self, size=None):
        self._end = self._pos if size is None else size
        return self._end

    def fileno(self):
        raise OSError("no file behind a dry run")
