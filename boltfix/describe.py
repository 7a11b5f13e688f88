"""What is in a file: the facts behind ``boltfix inspect`` and ``boltfix pages``."""

from __future__ import annotations

from collections import Counter
from typing import Callable, Iterator, Optional, Tuple

from boltfix import (
    ccore,
    commits,
    containerd,
    docker,
    etcd,
    etcdkeys,
    k8s,
    raftboltdb,
    secrets,
    vault,
)
from boltfix import structs as S
from boltfix.etcdkeys import KEY, KEY_BUCKET, decode_revision
from boltfix.findings import Collector
from boltfix.leaves import InlineRun, Leaves
from boltfix.navigate import top_level_names
from boltfix.pagemap import FREELIST, FREELIST_RUN, META, OVERFLOW, REACHED, UNREACHED, PageMap
from boltfix.reader import DB, Page
from boltfix.resident import TRIM_BYTES, drop
from boltfix.structs import bucket_sequence
from boltfix.text import name_text
from boltfix.walk import Walker


def describe(db: DB, progress: Optional[Callable[[int], None]] = None) -> dict:
    """Everything ``inspect`` shows, as JSON-ready data; never raises on file data.

    An etcd file gets ``etcd`` facts; a HashiCorp raft-boltdb store
    (:func:`boltfix.raftboltdb.looks_like_raft`) gets ``"application":
    "raft-boltdb"`` and ``raft`` facts (:meth:`boltfix.raftboltdb.RaftFacts.to_json`)."""
    problems = Collector(limit=20)
    walker = Walker(db, problems, progress)
    tree, etcd_facts, hidden, top_hidden = _bucket_tree(db, walker)
    pm = PageMap(db, walker)  # once, after the walk
    free = _free_pages(db, pm)
    info = {
        "file": {
            "path": db.filename,
            "size": db.size,
            "page_size": db.page_size,
            "page_size_source": db.page_size_source,
            "pages_in_file": db.pages_in_file,
            "hwm": db.meta.pgid if db.meta else None,
            "truncated": bool(db.meta and db.pages_in_file < db.meta.pgid),
        },
        "metas": [m.to_json() for m in db.metas],
        "trees": _trees(db, walker, problems),
        "meta_in_use": db.meta.index if db.meta else None,
        "meta_reason": db.meta_source,
        "freelist": free,
        "page_types": _page_types(db, walker, pm),
        "buckets": tree,
        "problems": {
            "total": problems.total,
            "counts": dict(problems.counts),
            "first": [f.to_json() for f in problems.findings],
        },
    }
    if hidden:
        info["buckets_not_shown"] = hidden
        info["top_level_buckets_not_shown"] = top_hidden
    if etcd_facts is not None:
        info["etcd"] = etcd_facts
        kube = _kubernetes(db)
        if kube is not None:
            etcd_facts["kubernetes"] = kube
    elif raftboltdb.looks_like_raft(top_level_names(db)):
        # HashiCorp raft-boltdb (Consul, Nomad, Vault): by its buckets, a walk of its own
        info["application"] = raftboltdb.APPLICATION
        info["raft"] = raftboltdb.scan(db).to_json()
    elif containerd.looks_like_containerd(top_level_names(db)) \
            and (version := containerd.recognise(db)) is not None:
        # containerd's meta.db: by v1/version, a walk of its own
        info["application"] = containerd.name(version)
        info["containerd"] = containerd.scan(db, version).to_json()
    elif docker.kind_of(top_level_names(db)) is not None \
            and (kind := docker.recognise(db)) is not None:
        # Docker's volume store or libnetwork's local-kv.db: its one bucket
        info["application"] = docker.name(kind)
        info["docker"] = docker.scan(db, kind).to_json()
    elif vault.looks_like_vault(top_level_names(db)):
        # Vault's integrated-storage FSM: data (barrier-encrypted) and config
        info["application"] = vault.APPLICATION
        info["vault"] = vault.scan(db).to_json()
    return info


def _trees(db: DB, walker: Walker, problems: Collector) -> list:
    """The health of each valid meta's tree (:mod:`boltfix.commits`): the one
    in use from the walk just made, the other walked here."""
    mine = commits.of_check(db, walker, problems.counts, {})
    out = []
    for m in commits.valid_metas(db):
        j = mine if mine is not None and mine.candidate.meta is m else \
            commits.judge(db, commits.meta_candidate(m))
        out.append(j.to_json())
    if mine is not None:
        mine.reached = None
    return out


#: buckets inspect describes one by one (in walk order: depth first, in key
#: order); the others are counted, in their parent's ``more_buckets`` and in
#: ``buckets_not_shown``.  Bounds inspect's memory and time on a file of
#: hundreds of thousands of buckets (``boltfix buckets`` lists them all).
BUCKETS_SHOWN = 10_000


def _bucket_tree(db: DB, walker: Walker):
    """Nested bucket summaries, plus etcd facts gathered on the same walk:
    (top-level nodes, etcd facts or None, buckets not shown)."""
    root = {"buckets": []}
    nodes = {(): root}
    shown = hidden = 0
    opened = []  # (node, Bucket): stats are final only once the walk is done
    top = top_level_names(db)
    facts = EtcdFacts() if etcd.looks_like_etcd(top) else None
    # a page (or a run of clean pages) at a time: only etcd's top-level
    # buckets need their records one by one, for the facts
    for bucket, leaves in walker.walk_leaves(inline_runs=True):
        parent = nodes.get(bucket.path)
        if type(leaves) is InlineRun:  # small sub-buckets, nothing wrong in them
            n = _run_nodes(parent, leaves, BUCKETS_SHOWN - shown)
            shown += n
            rest = len(leaves) - n
            if rest:
                hidden += rest
                if parent is not None:
                    parent["more_buckets"] = parent.get("more_buckets", 0) + rest
            continue
        rec = leaves.bucket_entry
        if rec is not None and (parent is None or shown >= BUCKETS_SHOWN):
            hidden += 1
            if parent is not None:
                parent["more_buckets"] = parent.get("more_buckets", 0) + 1
            continue
        if parent is None:
            continue  # the keys of a bucket not shown
        if rec is not None:
            shown += 1
            node = {"name": _name(rec.key), "keys": 0, "buckets": []}
            parent["buckets"].append(node)
            if rec.child is not None:
                nodes[rec.child.path] = node
                opened.append((node, rec.child))
            else:
                node["unreadable"] = True
            continue
        parent["keys"] = parent.get("keys", 0) + leaves.count
        if facts is None or len(bucket.path) != 1:
            continue
        if bucket.path == KEY_BUCKET:
            facts.see_revisions(revision_stats(leaves))
            continue
        for batch in leaves.batches():
            for key, value in zip(batch.keys, batch.values):
                facts.see(bucket.path[0], key, value)
    for node, b in opened:
        node.update(inline=b.is_inline, root_page=b.root, sequence=b.sequence,
                    depth=b.depth, pages=b.pages)
    return root["buckets"], (facts.to_json() if facts else None), hidden, root.get(
        "more_buckets", 0)


def _run_nodes(parent: Optional[dict], run: InlineRun, room: int) -> int:
    """The first ``room`` sub-buckets of a run as nodes of ``parent``: what
    a walk a bucket at a time gives a clean inline bucket (its records
    counted, depth 1, no pages); how many."""
    if parent is None or room <= 0:
        return 0
    n = min(room, len(run))
    parent["buckets"].extend(
        {"name": _name(key), "keys": count, "buckets": [], "inline": True, "root_page": 0,
         "sequence": bucket_sequence(value), "depth": 1, "pages": 0}
        for key, value, count in zip(run.keys[:n], run.values[:n], run.counts[:n]))
    return n


def revision_stats(leaves: Leaves) -> Tuple[int, int, Optional[int], Optional[int]]:
    """For leaves of etcd's ``key`` bucket: (keys that are revisions,
    tombstones among them, first and last main revision or None)."""
    fast = ccore.fast("etcd_revision_stats")
    if leaves.pages is not None and fast is not None:
        return ccore.call(fast, leaves.walker.buf, leaves.walker.page_size, leaves.pages)
    revisions = tombstones = 0
    first = last = None
    for keys in leaves.key_lists():
        for key in keys:
            rev = decode_revision(key)
            if rev:
                revisions += 1
                tombstones += bool(rev["tombstone"])
                if first is None:
                    first = rev["main"]
                last = rev["main"]
    return revisions, tombstones, first, last


def _kubernetes(db: DB) -> Optional[dict]:
    """Kubernetes objects per resource in etcd's ``key`` bucket (a walk of
    its own, quiet: the main walk's findings are already reported)."""
    w = Walker(db)
    root = w.root_bucket()
    rec = w.find(root, KEY) if root is not None else None
    bucket = w.open_bucket(root, rec) if rec is not None and rec.is_bucket else None
    if bucket is None:
        return None

    def records():
        for b, batch in w.walk_batches(bucket):
            if b is bucket and batch.bucket_entry is None:
                yield from zip(batch.keys, batch.values)

    return k8s.inventory(records())


def _name(raw: bytes):
    return name_text(raw)


class EtcdFacts:
    """Facts about an etcd db picked up while its buckets are walked."""

    def __init__(self):
        self.meta = {}
        self.first_rev = None
        self.last_rev = None
        self.revisions = 0
        self.tombstones = 0
        self.members = []
        self.auth_enabled = None
        self.users = 0
        self.leases = 0

    def see(self, bucket: bytes, key: bytes, value) -> None:
        """One record of etcd's top-level ``bucket``."""
        if bucket == KEY:
            rev = decode_revision(key)
            if rev:
                self.revisions += 1
                self.tombstones += bool(rev["tombstone"])
                if self.first_rev is None:
                    self.first_rev = rev["main"]
                self.last_rev = rev["main"]
        elif bucket == etcdkeys.META:
            self.meta[key] = etcd.decode_meta(key, bytes(value))
        elif bucket == b"members":
            self.members.append(etcd.decode_record(b"members", key, bytes(value)))
        elif bucket == b"auth" and key == b"authEnabled":
            self.auth_enabled = bytes(value) == b"\x01"
        elif bucket == b"authUsers":
            self.users += 1
        elif bucket == b"lease":
            self.leases += 1

    def see_revisions(self, stats) -> None:
        """What :meth:`see` counts for keys of the ``key`` bucket, from
        :meth:`Leaves.revision_stats`."""
        revisions, tombstones, first, last = stats
        if revisions:
            self.revisions += revisions
            self.tombstones += tombstones
            if self.first_rev is None:
                self.first_rev = first
            self.last_rev = last

    def _storage_version(self) -> Optional[bytes]:
        """``meta/storageVersion``'s value (3.6+), None when absent or bad."""
        got = self.meta.get(b"storageVersion")
        if isinstance(got, dict) and isinstance(got.get("value"), (bytes, bytearray)):
            return bytes(got["value"])
        return None

    def to_json(self) -> dict:
        """The facts as ``inspect --json``'s ``etcd`` member."""
        def meta_value(name):
            got = self.meta.get(name)
            if not isinstance(got, dict) or "error" in got:
                return got
            return got.get("value", got)

        return {
            "version": etcd.guess_etcd_version(list(self.meta),
                                               self._storage_version()),
            "consistent_index": meta_value(b"consistent_index"),
            "term": meta_value(b"term"),
            "scheduled_compact_revision": meta_value(b"scheduledCompactRev"),
            "finished_compact_revision": meta_value(b"finishedCompactRev"),
            "revisions": {"records": self.revisions, "tombstones": self.tombstones,
                          "first": self.first_rev, "last": self.last_rev},
            "members": self.members,
            "auth_enabled": self.auth_enabled,
            "users": self.users,
            "leases": self.leases,
        }


def _free_pages(db: DB, pm: PageMap) -> dict:
    m = db.meta
    if m is None:
        return {"mode": "unknown", "free_pages": None}
    fl = pm.freelist
    if fl is None:
        return {"mode": "not synced (free pages are the ones the tree does not reach)",
                "synced": False, "free_pages": pm.count(UNREACHED, 0, pm.limit)}
    return {"mode": "synced", "synced": True, "page": fl.pgid, "free_pages": fl.count,
            "problems": [f.code for f in fl.findings]}


def _page_types(db: DB, walker: Walker, pm: PageMap) -> dict:
    """Counts of reached pages by type (overflow pages counted on their own).

    The two bytes of every page's flags are read as strided slices of the
    map and counted with the reachability map in one C pass (Counter over
    zip), not a Page object per page.
    """
    counts = Counter()
    # the walk reaches nothing at or past the high-water mark: pages past it
    # are never read (a 300 GB sparse file took 90 s and 14 GB of page cache)
    n = min(db.pages_in_file, walker.hwm)
    ps = db.page_size
    # a window of TRIM_BYTES at a time, the map dropped from RSS after each
    # (boltfix.resident): every page's header is touched
    step = max(TRIM_BYTES // ps, 1)
    seen = Counter()
    for start in range(0, n, step):
        buf = db.buf[start * ps: min(n, start + step) * ps]
        seen.update(zip(walker.reached[start:start + step], buf[8::ps], buf[9::ps]))
        buf.release()
        drop(walker.raw)
    for (state, lo, hi), k in seen.items():
        if state == OVERFLOW:
            counts["overflow"] += k
        elif state:
            counts[S.page_type_name(lo | hi << 8)] += k
    counts["meta"] = 2
    # the freelist page's own claim (its header's run), as inspect always
    # showed it; the page map bounds and type-checks that run
    fl = pm.freelist
    if fl is not None and fl.pgid < db.pages_in_file:
        counts["freelist"] += 1 + db.page(fl.pgid).overflow
    return dict(counts)


# ---------------------------------------------------------------- pages
def page_rows(db: DB, progress=None) -> Iterator[dict]:
    """One row per page (overflow continuations folded into their page)."""
    walker = Walker(db, None, progress)
    walker.count_all()
    pm = PageMap(db, walker)
    states = pm.states
    hwm = db.hwm
    step = max(TRIM_BYTES // db.page_size, 1)
    for pgid in range(db.pages_in_file):
        if pgid % step == step - 1:
            drop(walker.raw)  # every header is touched: keep RSS bounded
        s = states[pgid] & 0x7F
        if s == OVERFLOW or s == FREELIST_RUN:
            continue
        p = db.page(pgid)
        reached = s in (REACHED, META, FREELIST)
        if reached:
            state = "reachable"
        elif pgid >= hwm:
            state = "beyond-hwm"
        elif pm.is_listed(pgid) or not pm.synced:
            state = "free"
        else:
            state = "unreachable"
        row = {"id": pgid, "type": p.type if reached or p.self_id == pgid else "unknown",
               "items": p.count, "overflow": p.overflow, "state": state}
        if p.self_id != pgid:
            row["self_id"] = p.self_id
        if not reached:
            row["overflow"] = p.overflow if p.self_id == pgid else 0
        yield row
    # pages the meta says exist but the file lacks
    for pgid in range(db.pages_in_file, hwm if db.meta else 0):
        yield {"id": pgid, "type": "missing", "items": 0, "overflow": 0, "state": "past-eof"}
        if pgid - db.pages_in_file > 1_000_000:
            break


#: a leaf value longer than this is shown by ``page`` as its first
#: VALUE_PREVIEW bytes, with "truncated" and its length in "value_bytes"
VALUE_PREVIEW = 64 << 10
#: bytes of values one page view shows in all; past them (a damaged page
#: whose elements all claim one huge value) each shows SMALL_PREVIEW at most
PAGE_PREVIEW = 16 << 20
SMALL_PREVIEW = 64


def page_view(db: DB, pgid: int, mask: Optional[Callable] = None) -> dict:
    """A decoded view of one page (raises BoltError if it is not in the file).

    ``mask(value, n)``: the first ``n`` bytes of a leaf value as shown
    (masked); it sees the whole value (a view of the map), so a secret is
    masked as the whole value says, also in a preview."""
    p = db.page(pgid)
    view = {"id": pgid, "self_id": p.self_id, "type": p.type, "flags": p.flags,
            "count": p.count, "overflow": p.overflow,
            "run_complete": p.run_complete}
    if pgid in (0, 1) or p.flags == S.META_PAGE_FLAG:
        view["meta"] = p.meta().to_json()
    elif p.flags == S.FREELIST_PAGE_FLAG:
        fl = p.freelist_ids()
        ids = list(_take(fl.ids(db), 10000))
        view["freelist"] = {"count": fl.count, "ids": ids, "shown": len(ids),
                            "problems": [f.message for f in fl.findings]}
    elif p.flags in (S.BRANCH_PAGE_FLAG, S.LEAF_PAGE_FLAG):
        view["elements"] = els = []
        left = PAGE_PREVIEW
        for el in p.elements():
            els.append(_element_json(el, p.flags, mask,
                                     max(SMALL_PREVIEW, min(VALUE_PREVIEW, left))))
            left -= len(els[-1].get("value") or b"")
        problem = p.count_problem()
        if problem:
            view["count_problem"] = problem
    return view


def _take(it, n):
    for i, x in enumerate(it):
        if i >= n:
            return
        yield x


def _preview_end(value, limit: int) -> int:
    """How many bytes of a value ``page`` shows: all up to ``limit``; past
    it ``limit``, less the start of a UTF-8 character it would cut (so a
    long text stays text: the one rule, text.as_text, sees the preview)."""
    n = len(value)
    if n <= limit:
        return n
    n = limit
    while n > limit - 3 and value[n] & 0xC0 == 0x80:
        n -= 1
    return n


def _element_json(el, flags, mask=None, limit: int = VALUE_PREVIEW) -> dict:
    out = {"index": el.index, "pos": el.pos, "ksize": el.ksize}
    if el.problem:
        out["problem"] = el.problem
    if flags == S.BRANCH_PAGE_FLAG:
        out["child"] = el.child
        out["key"] = el.key
    else:
        value = el.value
        if value is not None:
            n = _preview_end(value, limit)
            value = (mask(value, n, el.ksize, el.key, el.is_bucket) if mask
                     else bytes(value[:n]))
        out.update(flags=el.flags, vsize=el.vsize, key=el.key,
                   bucket=el.is_bucket, value=value)
        if value is not None and len(value) < len(el.value):
            # never built whole: a 200 MB value's text took 1-2 GB
            out.update(truncated=True, value_bytes=len(el.value))
        if el.is_bucket and el.value is not None and len(el.value) >= 16:
            root, seq = S.BUCKET_HEADER.unpack_from(el.value, 0)
            out["bucket_root"] = root
            out["bucket_sequence"] = seq
    return out


def masked_page_view(db: DB, p: Page, pgid: int, app=None) -> dict:
    """:func:`page_view` with secrets masked in each value shown
    (:class:`boltfix.secrets.PreviewMask`), unless the page is not a leaf of
    its own and holds part of a secret value (an overflow
    page): then its "header" and "elements" would be the secret's bytes,
    and only a note is shown.  ``app``: the file's application's rule
    (:data:`boltfix.secrets.AppRule`)."""
    if (p.self_id == pgid and p.flags == S.LEAF_PAGE_FLAG) or \
            not secrets.file_secret_spans(db.buf, db.page_size, p.offset, p.run_end, app=app):
        return page_view(db, pgid, mask=secrets.PreviewMask(app))
    return {"id": pgid, "self_id": pgid, "type": "masked", "flags": 0, "count": 0,
            "overflow": 0, "run_complete": True,
            "masked": "this page holds part of a secret value (a Kubernetes Secret's, "
                      "or an application's) (use --show-secrets)"}
