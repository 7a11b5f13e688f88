"""The repair stream with the plan merged in, and rule 5 applied to it."""

from __future__ import annotations

from collections import deque

from boltfix import findings as F
from boltfix import structs as S
from boltfix.etcdkeys import KEY_BUCKET
from boltfix.findings import Collector, Finding
from boltfix.leaves import Batch, Bucket, Record
from boltfix.reader import DB
from boltfix.salvage.plan import RULE3, RULE3_ROOT, Placed, Plan
from boltfix.walk import Walker, self_id_ok


class Seen:
    """What the first writing pass saw: every bucket path, the last key of
    etcd's ``key`` bucket (its highest committed revision), and the pages
    whose records rule 5 kept out."""

    def __init__(self, report=None):
        self.paths = set()
        self.key_last: bytes | None = None
        self.bad_pages: dict[int, tuple] = {}  # page -> bucket path
        self.report = report

    def observe(self, stream, db: DB):
        """The repair stream ``(bucket, item, etcd check, whole)`` (see
        ``repair._batches``) through rule 5, noting what it holds."""
        for bucket, item, check, whole in rule_5(stream, db, self._drop):
            self.paths.add(bucket.path)
            if whole:
                leaves, _start, stop = item
                if bucket.path == KEY_BUCKET and stop == len(leaves.pages):
                    self.key_last = leaves.last  # else a batch of its last page follows
            else:
                entry = item.bucket_entry
                if entry is not None and entry.child is not None:
                    self.paths.add(entry.child.path)
                if bucket.path == KEY_BUCKET and item.keys:
                    self.key_last = item.keys[-1]
            yield bucket, item, check, whole

    def _drop(self, bucket, batch) -> None:
        if batch.page not in self.bad_pages and self.report is not None:
            self.report(Finding(
                F.PAGE_RECORDS_NOT_PLACED,
                f"page {batch.page} identifies itself as another page (a misdirected "
                "write or a copied page): its records are kept out of the output "
                "(rule 5) and go to lost+found", page=batch.page, bucket=bucket.path))
        self.bad_pages.setdefault(batch.page, bucket.path)


def rule_5(stream, db: DB, on_drop=None):
    """The repair stream without the batches of pages whose header id is
    not their position, nor anything under a bucket entry on such a page.
    Whole pages pass: the C core takes a page only when its header id is
    its position (``_speedups.c``: else the walk reads it in Python)."""
    skip = None
    ok = None  # the last page that passed: a page's records come in a row
    for bucket, item, check, whole in stream:
        if skip is not None:
            if bucket.path[:len(skip)] == skip:
                continue
            skip = None
        if whole:
            yield bucket, item, check, whole
            continue
        if item.page == ok or self_id_ok(db, item):
            ok = item.page
            yield bucket, item, check, whole
            continue
        if on_drop is not None:
            on_drop(bucket, item)
        entry = item.bucket_entry
        if entry is not None and entry.child is not None:
            skip = entry.child.path


def merged(stream, plan: Plan | None, db: DB | None = None):
    """The repair stream ``(bucket, item, etcd check, whole)`` with the
    plan's records merged in, in the order the writer needs (keys ascending
    per bucket, a sub-bucket's records right after its entry).  A salvaged
    key the tree already holds is dropped (the tree's record is the
    committed one); if its bytes differ, that is counted as a conflict.

    Salvaged records come as batches with ``whole`` None (never copied as a
    page: their records are not their page's).  In a bucket with salvaged
    records pending, whole clean pages are still copied, one at a time,
    when no pending key falls inside the page's key span (key order
    allows it); the rest go as batches, interleaved."""
    if plan is None or not plan.extras:
        yield from stream
        return
    pending = {path: deque(items) for path, items in plan.extras.items()}
    ctx = (pending, plan, db)
    active: list[tuple] = []
    for bucket, item, check, whole in (rule_5(stream, db) if db is not None else stream):
        path = bucket.path
        while active and active[-1] != path[:len(active[-1])]:
            yield from _flush(ctx, active.pop(), check)
        if path in pending and (not active or active[-1] != path):
            active.append(path)
        if path not in pending:
            yield bucket, item, check, whole
        elif whole:
            yield from _merge_pages(ctx, bucket, item)
        else:
            yield from _merge_batch(ctx, bucket, item, check)
        entry = None if whole else item.bucket_entry
        if entry is not None and entry.child is not None and entry.child.path in pending:
            active.append(entry.child.path)  # its records may all be salvaged ones
    while active:
        path = active.pop()
        yield from _flush(ctx, path, plan.etcd and path == KEY_BUCKET)
    if () in pending:  # the root was lost: nothing of the tree came
        yield from _flush(ctx, (), False)
    for path, items in pending.items():  # a bucket the writer never opened
        for p in items:
            plan.counts[(path, p.rule)] -= 1


def _merge_pages(ctx, bucket: Bucket, item):
    """Whole clean pages ``(leaves, start, stop)`` of a bucket with salvaged
    records pending: each page copied whole when no pending key lies inside
    its key span, else merged record by record (no etcd check: the C core
    vouched for these pages, see ``repair._batches``)."""
    leaves, start, stop = item
    items = ctx[0][bucket.path]
    for i in range(start, stop):
        if not items:  # nothing pending any more: the rest in one go
            yield bucket, (leaves, i, stop), False, True
            return
        batch = next(leaves.batches(i, i + 1))
        if not batch.keys:
            continue
        yield from _emit_below(ctx, items, bucket.path, False, batch.keys[0])
        if not items or items[0].key > batch.keys[-1]:
            yield bucket, (leaves, i, i + 1), False, True
        else:
            yield from _merge_batch(ctx, bucket, batch, False)


def _merge_batch(ctx, bucket: Bucket, batch: Batch, check):
    pending, plan, _ = ctx
    items = pending[bucket.path]
    yield from _emit_below(ctx, items, bucket.path, check, batch.keys[0])
    if not items or items[0].key > batch.keys[-1]:
        yield bucket, batch, check, False
        return
    # salvaged keys inside this batch's span: interleave record by record
    for rec in batch.records():
        yield from _emit_below(ctx, items, bucket.path, check, rec.key)
        if items and items[0].key == rec.key:
            dup = items.popleft()
            if dup.flags != rec.flags or bytes(dup.value) != bytes(rec.value):
                plan.conflicts.append((bucket.path, rec.key))
            if not dup.new_bucket:
                plan.duplicates += 1
                plan.counts[(bucket.path, dup.rule)] -= 1
        one = Batch(rec.page, (rec.index,), (rec.flags,), (rec.key,), (rec.value,),
                    rec if rec.is_bucket else None)
        yield bucket, one, check, False


def _flush(ctx, path, check):
    items = ctx[0].get(path)
    if items:
        yield from _emit_below(ctx, items, path, check, None)


def _emit_below(ctx, items, path: tuple, check, below):
    """The pending items with keys below ``below`` (all: None), runs of
    plain records as one batch each."""
    while items and (below is None or items[0].key < below):
        if items[0].flags & S.BUCKET_LEAF_FLAG:
            yield from _emit(ctx, items.popleft(), path, check)
            continue
        run = []
        while items and not items[0].flags & S.BUCKET_LEAF_FLAG and (
                below is None or items[0].key < below) and len(run) < 1024:
            run.append(items.popleft())
        # rule 3 already held each record to etcd's loadability check
        loaded = all(p.rule in (RULE3, RULE3_ROOT) for p in run)
        yield (Bucket(path=path, root=0, sequence=0),
               Batch(run[0].page, range(len(run)), (0,) * len(run), [p.key for p in run],
                     [p.value for p in run]), check and not loaded, None)


def _emit(ctx, p: Placed, path: tuple, check):
    _pending, plan, db = ctx
    bucket = Bucket(path=path, root=0, sequence=0)
    if not p.flags & S.BUCKET_LEAF_FLAG:
        yield bucket, Batch(p.page, (0,), (0,), (p.key,), (p.value,)), check, None
        return
    child = p.child
    rec = Record(p.key, memoryview(bytes(p.value)), p.flags, p.page, 0, child)
    yield bucket, Batch(p.page, (0,), (p.flags,), (p.key,), (rec.value,), rec), check, None
    if p.new_bucket:
        yield from _flush(ctx, child.path, plan.etcd and child.path == KEY_BUCKET)
    elif child is not None and db is not None:
        # an adopted sub-bucket: its own tree, walked with every check (rule 5 too)
        walk = Walker(db, Collector(limit=0), tree=plan.tree).walk_batches(start=child)
        yield from rule_5(((b, batch, False, False) for b, batch in walk), db)
