"""``boltfix check``: every problem in a bbolt file, as data.

The checker runs the safe walk (:mod:`boltfix.walk`) over every bucket, then
checks the meta pages, the file length and the freelist against what the
walk reached.  Each kind of message bbolt's ``tx.Check`` emits has a
counterpart code here (``findings.BBOLT_EQUIVALENT``), and the checker also finds
what bbolt misses or dies on (cycles, pages past the end of the file,
element bounds, inline buckets, key ranges on bbolt 1.3.6).  A HashiCorp
raft-boltdb store also gets its logs checked in raft's terms
(:func:`boltfix.raftboltdb.check_findings`).

Time is linear in the file; memory is two bytes per page plus at most
``max_findings`` stored findings (the rest are only counted).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from boltfix import commits, containerd, docker, raftboltdb, served, vault
from boltfix import findings as F
from boltfix import structs as S
from boltfix.findings import ERROR, META_PROBLEMS, WARNING, Collector, Finding
from boltfix.navigate import top_level_names
from boltfix.reader import DB, Meta
from boltfix.treecheck import check_freelist, walk_everything
from boltfix.walk import Walker


@dataclass
class CheckResult:
    """What :func:`check` found: the findings kept, every one counted."""

    findings: List[Finding]
    counts: dict
    total: int
    stats: dict = field(default_factory=dict)
    #: findings that fail check by default (the rest never stop bbolt or etcd)
    failing: int = 0

    @property
    def clean(self) -> bool:
        """No finding at all."""
        return self.total == 0

    def failed(self, strict: bool = False) -> bool:
        """Exit 1?  Any finding with ``strict``, else only those
        :func:`~boltfix.findings.fails_check` names."""
        return bool(self.total if strict else self.failing)

    def to_json(self) -> dict:
        """The result as ``check --json`` prints it."""
        return {
            "clean": self.clean,
            "failing": self.failing,
            "total": self.total,
            "counts": dict(self.counts),
            "shown": len(self.findings),
            "stats": self.stats,
            "findings": [f.to_json() for f in self.findings],
        }


def check(db: DB, *, max_findings: Optional[int] = None,
          progress: Optional[Callable[[int], None]] = None) -> CheckResult:
    """Check the whole file; never raises on file contents."""
    report = Collector(max_findings)
    check_metas(db, report)
    check_file_length(db, report)
    walker = Walker(db, report, progress)
    stats = walk_everything(db, walker, report)
    if stats.get("etcd"):  # what etcd would serve, when the key bucket lost data
        served.check_findings(db, report, stats)
    if walker.tree is not None and not stats.get("etcd") \
            and raftboltdb.looks_like_raft(top_level_names(db, walker.tree)):
        # HashiCorp raft-boltdb: its logs in raft's terms (gaps, falling terms)
        stats["raft"] = raftboltdb.check_findings(db, report)
    elif walker.tree is not None and not stats.get("etcd") \
            and containerd.looks_like_containerd(top_level_names(db, walker.tree)) \
            and (version := containerd.recognise(db, walker.tree)) is not None:
        # containerd's meta.db: references its garbage collector keeps, broken
        stats["containerd"] = containerd.check_findings(db, version, report)
    elif walker.tree is not None and not stats.get("etcd") \
            and docker.kind_of(top_level_names(db, walker.tree)) is not None \
            and (kind := docker.recognise(db, walker.tree)) is not None:
        # Docker's volume store or local-kv.db: endpoints without their network
        stats["docker"] = docker.check_findings(db, kind, report, walker.tree)
    elif walker.tree is not None and not stats.get("etcd") \
            and vault.looks_like_vault(top_level_names(db, walker.tree)):
        # Vault's FSM: its facts (nothing in it can be judged without the keys)
        stats["vault"] = vault.scan(db, walker.tree).to_json()
    freelist = Counter()  # the freelist's own findings, apart (as commits.judge counts them)

    def report_freelist(finding: Finding) -> None:
        freelist[finding.code] += 1
        report(finding)

    check_freelist(db, walker, report_freelist, stats)
    _commit_findings(db, walker, report, stats, freelist)
    stats.pop("etcd_meta", None)  # for repair's choice of tree (boltfix.commits)
    stats.update(pages_reached=walker.pages_walked, records=walker.records_yielded)
    return CheckResult(report.findings, dict(report.counts), report.total, stats,
                       report.failing)


def _commit_findings(db: DB, walker: Walker, report, stats: dict, freelist: Counter) -> None:
    """Which commit survived (:mod:`boltfix.commits`): judged from the walk
    just made (``freelist``: the counts of its freelist's own findings); the
    other trees are walked only when the newest lost records, or (cheap) to
    hold a whole-looking one to the previous commit's facts."""
    newest = commits.of_check(db, walker, report.counts, stats, freelist)
    if newest is None:
        return
    choice = commits.choose(db, newest)
    if choice is not None:
        commits.check_findings(db, choice, report)


# ---------------------------------------------------------------- metas
def check_metas(db: DB, report) -> None:
    """Both meta pages: each one's problems, and whether bbolt can open the file."""
    used = db.meta
    for m in db.metas:
        if m.header_flags is not None and (m.header_flags != S.META_PAGE_FLAG):
            report(Finding(F.META_BAD_HEADER,
                           f"meta page {m.index}'s header has flags {m.header_flags:#x}, not meta",
                           WARNING if m.valid else ERROR, m.index))
        for code in m.problems:
            # A bad meta that is not the newest is the lesser harm: bbolt
            # falls back to the other one.  Still damage, so still reported.
            severity = ERROR if used is None or _newer_than(m, used) else WARNING
            report(Finding(code, f"meta page {m.index} {META_PROBLEMS[code]}", severity,
                           m.index, detail=_meta_detail(m)))
    if used is None:
        report(Finding(F.META_BOTH_INVALID,
                       "both meta pages are invalid: bbolt will refuse to open this file",
                       ERROR, None))
        return
    other = db.metas[1 - used.index]
    if not other.valid and _newer_than(other, used):
        report(Finding(F.META_NOT_NEWEST,
                       f"meta {other.index} looks newer (txid {other.txid}) but is invalid: "
                       f"the last write was torn; meta {used.index} (txid {used.txid}) is used",
                       ERROR, other.index))


def _newer_than(m: Meta, used: Meta) -> bool:
    return m.magic == S.MAGIC and m.version == S.VERSION and m.txid > used.txid


def _meta_detail(m: Meta) -> dict:
    return {"txid": m.txid, "pgid": m.pgid, "root": m.root, "page_size": m.page_size}


def check_file_length(db: DB, report) -> None:
    """The file against its meta's high-water mark and page size."""
    if db.meta is None:
        return
    if db.pages_in_file < db.meta.pgid:
        report(Finding(
            F.FILE_TRUNCATED,
            f"the file holds {db.pages_in_file} pages ({db.size} bytes) but the meta's "
            f"high-water mark is {db.meta.pgid}: pages {db.pages_in_file}..{db.meta.pgid - 1} "
            "are missing (bbolt dies with SIGBUS touching them)",
            ERROR, db.pages_in_file,
            detail={"pages_in_file": db.pages_in_file, "pgid": db.meta.pgid}))
    if db.size % db.page_size:
        report(Finding(F.FILE_PARTIAL_PAGE,
                       f"the file size {db.size} is not a multiple of the page size {db.page_size}",
                       WARNING, db.pages_in_file))
