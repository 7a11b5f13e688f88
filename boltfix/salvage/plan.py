"""The salvage plan: what goes where (:class:`Placed`), what is kept apart
as evidence (:class:`Evidence`), and the page sets the rules take."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from boltfix.leaves import Bucket, Record, Tree
from boltfix.text import name_text

RULE1, RULE2, RULE3 = "rule 1", "rule 2", "rule 3"
RULE3_ROOT = "rule 3 (no committed bound)"  # no part of the committed `key` tree survives
MAX_EVIDENCE_RECORDS = 1_000_000  # per lost+found file
MAX_GAP_SCAN = 10_000_000  # revisions scanned per range when reporting what is gone


@dataclass
class Placed:
    """One record salvaged into a bucket of the output."""

    key: bytes
    value: object  # bytes or memoryview
    flags: int
    page: int
    rule: str
    child: Bucket | None = None  # a sub-bucket entry: its tree, walked when written
    new_bucket: bool = False  # a bucket the tree lost entirely (root lost)


@dataclass
class Evidence:
    """Something found but not proven: one bucket of the lost+found file."""

    page: int
    state: str  # free, unreached, bad-self-id, conflict, uncommitted, compacted, ...
    leaves: list[int] = field(default_factory=list)
    records: list[tuple[bytes, bytes]] = field(default_factory=list)  # explicit records
    lo: bytes | None = None
    hi: bytes | None = None
    likely: tuple | None = None  # the bucket it most likely came from
    why: str = ""

    def to_json(self) -> dict:
        """The evidence as the report's ``lost_found`` lists it."""
        return {"page": self.page, "state": self.state, "leaf_pages": self.leaves[:64],
                "records": len(self.records) or None,
                "key_range": [_hx(self.lo), _hx(self.hi)],
                "likely_bucket": None if self.likely is None
                else [name_text(b) for b in self.likely], "why": self.why}


#: an etcd file rebuilt without its root has an empty `meta` bucket: no
#: consistent_index.  Put back into its own data dir, etcd would re-apply
#: every WAL entry it still holds (server.go applyEntryNormal skips only
#: entries at or below consistent_index): writes the file already holds would
#: be applied twice, under new revisions (seen with the real etcd 3.4).  A
#: snapshot restore makes a new data dir and WAL, where nothing is replayed.
ETCD_SNAPSHOT_ONLY = ("restore it as a snapshot (etcdutl / etcdctl snapshot restore "
                      "--skip-hash-check) into a new data dir; do not put it back into "
                      "its own data dir: with no meta/consistent_index etcd would replay "
                      "its whole WAL and apply those writes a second time")


@dataclass
class Plan:
    """What salvage places into the output (``extras``), what it keeps apart (``evidence``),
    and why."""

    root_lost: bool = False
    tree: Tree | None = None  # the tree repair walked (its high-water mark bounds walks)
    etcd: bool = False
    extras: dict[tuple, list[Placed]] = field(default_factory=dict)
    evidence: list[Evidence] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # (bucket path, rule) -> records
    facts: dict = field(default_factory=dict)
    gone: list[dict] = field(default_factory=list)
    #: filled while writing: records skipped because the tree had the key
    duplicates: int = 0
    conflicts: list[tuple[tuple, bytes]] = field(default_factory=list)

    @property
    def placed(self) -> int:
        """Records placed (those the tree already held are not counted)."""
        return sum(n for n in self.counts.values() if n > 0)

    def to_json(self) -> dict:
        """The plan as repair's report (``salvage``) gives it."""
        per = defaultdict(dict)
        for (path, rule), n in sorted(self.counts.items()):
            if n > 0:  # records the tree already held are not salvaged ones
                per["/".join(name_text(b) for b in path)][rule] = n
        out = {"root_lost": self.root_lost, "etcd": self.etcd, "salvaged": dict(per),
                "salvaged_records": self.placed, "facts": self.facts,
                "lost_found": [e.to_json() for e in self.evidence[:1000]],
                "lost_found_subtrees": len(self.evidence),
                "duplicates_of_tree": self.duplicates,
                "conflicts_with_tree": len(self.conflicts), "gone": self.gone[:1000]}
        if self.root_lost and self.etcd:
            out["etcd_restore"] = ETCD_SNAPSHOT_ONLY
        return out


@dataclass
class Subtree:
    """An orphan subtree as the walk read it: its records, pages and leaves."""

    top: int
    path: tuple
    records: list[Record]
    pages: int  # the pages it walked, as an int (byte n nonzero: page n)
    problems: int
    leaves: list[int]


def bitmap(reached) -> int:
    """A page map (one byte per page, nonzero: set) as an int, so that two
    maps intersect with one ``&``."""
    return int.from_bytes(bytes(reached).translate(_NONZERO), "little")


_NONZERO = bytes([0] + [1] * 255)


def pages_of(bitmap: int) -> list[int]:
    """The pages set in a page map held as an int (one byte per page)."""
    raw = bitmap.to_bytes((bitmap.bit_length() + 7) // 8, "little")
    return [i for i, x in enumerate(raw) if x]


def has_page(bitmap: int, pgid: int) -> bool:
    """Whether page ``pgid`` is set in a page map held as an int."""
    return bool((bitmap >> (8 * pgid)) & 0xFF)




def _hx(k) -> str | None:
    return None if k is None else bytes(k).hex()
