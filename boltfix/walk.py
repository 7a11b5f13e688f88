"""Walk a bbolt tree safely: every record in key order, every problem reported.

The walk is the one place that follows pointers.  Before it follows a child
it checks, in order: not a meta page, below the high-water mark, inside the
file, not on the current path (a cycle), not already reached (a double
reference), its self-id, its type and its overflow run.  A bad pointer is
reported and pruned; its siblings are still walked.  A bad element is
reported and skipped; the rest of its page is kept.  Keys must rise strictly
across a whole bucket and stay inside the range their ancestors' branch
keys allow; a key that does not is reported and not yielded, so consumers
(dump, repair) only ever see a sorted, unique stream.

Everything is iterative: deep trees and long bucket chains never meet
Python's recursion limit, and memory is one byte per page of the file for
the reachability map plus the walk's stack.
"""

from __future__ import annotations

from itertools import chain, repeat
from typing import Callable, Iterator, Optional, Sequence, Tuple, Union

from boltfix import ccore
from boltfix import findings as F
from boltfix import structs as S
from boltfix.errors import BoltError
from boltfix.findings import ERROR, WARNING, Finding
from boltfix.leaves import (
    KEY_BYTES_PER_PAGE,
    Batch,
    Bucket,
    InlineRun,
    Leaves,
    PageRecords,
    Record,
    Tree,
    ascending,
    clean_inline,
    fast_batch,
    inline_run,
    leaf_page,
    page_key_refs,
    sure_increasing,
)
from boltfix.reader import DB, branch_elements, elements_end, leaf_elements
from boltfix.resident import TRIM_BYTES, drop

Report = Callable[[Finding], None]

#: leaf pages per call into the C core: small enough that the first records
#: of a dump appear at once and progress moves, large enough to amortise it
RUN_LEAVES = 1024

#: levels of nested buckets the walk opens.  bbolt sets no limit (a chain of
#: buckets costs it a page per level), but every open bucket carries its
#: path from the top, so depth d costs d*d/2 names: 2,048 levels cost 16 MB,
#: the 20,000 levels of nested inline buckets a 1 MB file can hold cost 1.6 GB.
#: A bucket entry deeper than this is reported (bucket-too-deep) and not
#: opened; etcd nests none, Kubernetes' etcd never more than one.
MAX_BUCKET_DEPTH = 2048
#: whether a walk asked for :class:`InlineRun` items gives them (tests turn
#: it off to hold check and repair to the walk a sub-bucket at a time)
INLINE_RUNS = True

# reachability map values: a page's first page, and the rest of its run
UNSEEN, REACHED, OVERFLOW = 0, 1, 2


class TreeChecks:
    """What the walk checks on every pointer and every page, and how it
    reports what fails: the reachability map, the pointer checks before a
    page is followed (:meth:`_follow`), a branch page's children with the
    key range each may hold, a damaged leaf read element by element.
    :class:`Walker` walks with them.
    """

    tree: Optional[Tree] = None
    #: pages walked between two drops of the map from RSS (boltfix.resident)
    _trim_pages = TRIM_BYTES // 4096
    #: pages, overflow included, walked since the last drop
    _untrimmed = 0

    def __init__(self, db: DB, report: Optional[Report] = None,
                 progress: Optional[Callable[[int], None]] = None,
                 tree: Optional[Tree] = None):
        self.db = db
        self.buf = db.buf
        # slices of the mmap are bytes: keys are copied out in one step
        self.raw = db._mm if getattr(db, "_mm", None) is not None else bytes(db.buf)
        self.page_size = db.page_size
        self.tree = Tree.of(db.meta) if tree is None else tree
        self.hwm = self.tree.hwm if self.tree is not None else db.pages_in_file
        self.pages_in_file = db.pages_in_file
        # a byte per page the walk can reach: none at or past the high-water
        # mark (a 300 GB sparse file has 78 million pages past it)
        self.reached = bytearray(min(self.pages_in_file, self.hwm))
        self.report = report or (lambda f: None)
        self.progress = progress
        self.pages_walked = 0
        self.records_yielded = 0
        self._trim_pages = max(TRIM_BYTES // self.page_size, 1)

    def _count_walked(self, n: int) -> None:
        before = self.pages_walked
        self.pages_walked += n
        if self.progress is not None and before >> 10 != self.pages_walked >> 10:
            self.progress(self.pages_walked)

    def _touched(self, n: int) -> None:
        """``n`` more pages (overflow included) of the map were read."""
        self._untrimmed += n
        if self._untrimmed >= self._trim_pages:
            self._untrimmed = 0
            drop(self.raw)

    def _zero_count(self, pgid, flags, off, end, pages, path) -> int:
        """A branch page, or a leaf below a branch, whose count is 0.

        bbolt never writes either (rebalance removes empty nodes; only a
        bucket's root leaf may be empty), so the count itself is damaged.
        Element 0's ``pos`` is ``count * 16`` in bbolt's layout: when it
        gives a plausible count, the elements are read with it (each still
        checked); otherwise the page's contents are lost.
        """
        leaf = flags == S.LEAF_PAGE_FLAG
        base = off + S.PAGE_HEADER_SIZE
        fit = (end - base) // S.LEAF_ELEMENT_SIZE
        pos0 = S.U32.unpack_from(self.buf, base + (4 if leaf else 0))[0] if fit else 0
        n = pos0 // S.LEAF_ELEMENT_SIZE
        if pos0 % S.LEAF_ELEMENT_SIZE == 0 and 0 < n <= fit:
            self._finding(F.ELEMENT_COUNT_CORRUPT,
                          f"{'leaf' if leaf else 'branch'} page {pgid} has count 0, but element "
                          f"0 says {n} elements precede the data: read with count {n}",
                          pgid, pages, path, detail={"count": n})
            return n
        if leaf:
            self._finding(F.LEAF_EMPTY,
                          f"leaf page {pgid} below a branch has no elements; bbolt never "
                          "writes one (its count may be damaged)", pgid, pages, path,
                          severity=WARNING)
        else:
            # its cursor panics on it, and in a file without a synced
            # freelist nothing else would show that the children were lost
            self._finding(F.BRANCH_EMPTY,
                          f"branch page {pgid} has no elements (its children are lost)",
                          pgid, pages, path)
        return 0

    def _branch_children(self, off, count, end, lo, hi, pages, path):
        """Children of a branch page as frames, with the key range each may hold.

        A branch element with a bad key is reported but its child is still
        followed (the pointer is checked on its own); such a key simply does
        not narrow the range, so the child's records are judged by their
        neighbours' keys and by the bucket-wide order.
        """
        pgid = pages[-1]
        own = self._own_branch_key(pages, lo)
        if own is not None and self._not_the_child(
                [key for _, key, _, problem in branch_elements(self.buf, off, count, end)
                 if not problem], own, hi, pgid, pages, path):
            return []
        children = []  # (child page, key or None when the key cannot be trusted)
        prev = None
        held = 0
        for idx, key, child, problem in branch_elements(self.buf, off, count, end):
            if problem:
                self._element_problem(problem, pgid, pages, path, idx, "branch")
                if problem not in (F.ELEMENT_COUNT_OVERFLOW, F.ELEMENT_COUNT_CORRUPT):
                    children.append((child, None))
                continue
            held += len(key)
            if held > KEY_BYTES_PER_PAGE:
                # keys sharing their bytes (bbolt's branch keys fit a page):
                # past the budget a key is not kept, so it narrows no range
                children.append((child, None))
                continue
            if prev is not None and key <= prev:
                self._key_order(key, prev, pgid, pages, path, "branch", idx)
                children.append((child, None))
                continue
            if idx == 0 and own is not None and key != own:
                # rule 6 for a branch: element 0's key is damaged (the
                # child's own first key still bounds it from below)
                self._finding(F.KEY_OUT_OF_RANGE,
                              f"branch key[0]={_hex(key)} on page {pgid} is not its parent's "
                              f"branch key {_hex(own)} (bbolt sets a branch key to its "
                              "child's first key)", pgid, pages, path, detail={"index": idx})
                children.append((child, None))
                continue
            if (lo is not None and key < lo) or (hi is not None and key >= hi):
                self._finding(F.KEY_OUT_OF_RANGE,
                              f"branch key[{idx}]={_hex(key)} on page {pgid} is outside the "
                              f"range [{_hex(lo)}, {_hex(hi)}) its ancestors allow",
                              pgid, pages, path, detail={"index": idx})
                children.append((child, None))
                continue
            children.append((child, key))
            prev = key
        # lower bound: the child's own key, else the last trusted one before it;
        # upper bound: the next trusted key after it, else the parent's bound.
        frames = [None] * len(children)
        upper = hi
        for i in range(len(children) - 1, -1, -1):
            child, key = children[i]
            frames[i] = [child, None, upper, pages]
            if key is not None:
                upper = key
        lower = lo
        for i, (child, key) in enumerate(children):
            if key is not None:
                lower = key
            frames[i][1] = lower
        return [tuple(f) for f in frames]

    def _follow(self, pgid, parents, path, lo, hi):
        """Check a pointer before following it; (flags, count, run end) or None."""
        reached = self.reached
        if not (2 <= pgid < self.hwm and pgid < self.pages_in_file) or reached[pgid]:
            self._bad_pointer(pgid, parents, path, lo, hi)
            return None
        reached[pgid] = REACHED
        self._count_walked(1)
        pid, flags, count, overflow = S.PAGE_HEADER.unpack_from(self.buf, pgid * self.page_size)
        if flags != S.BRANCH_PAGE_FLAG and flags != S.LEAF_PAGE_FLAG:
            retyped = self._retype(pgid, pid, flags, count, overflow, parents, path, lo, hi)
            if retyped is not None:
                flags = retyped
        elif flags == S.BRANCH_PAGE_FLAG and parents and count \
                and _branch_broken(self, pgid, count, overflow):
            # a leaf whose type byte alone says branch (the same proof)
            retyped = self._retype(pgid, pid, flags, count, overflow, parents, path, lo, hi)
            if retyped is not None:
                flags = retyped
        if flags != S.BRANCH_PAGE_FLAG and flags != S.LEAF_PAGE_FLAG:
            where, rng = _where(pgid, parents, lo, hi)
            self._finding(F.INVALID_PAGE_TYPE,
                          f"{where} has type {S.page_type_name(flags)}, expected branch or leaf",
                          pgid, parents, path,
                          detail=dict(rng, flags=flags,
                                   bbolt=f"page {pgid}: invalid type: {S.page_type_name(flags)}"))
            return None
        if pid != pgid:
            self._finding(F.PAGE_ID_MISMATCH,
                          f"page {pgid} identifies itself as page {pid}",
                          pgid, parents, path, detail=_where(pgid, parents, lo, hi)[1])
        if count == 0 and (parents or flags == S.BRANCH_PAGE_FLAG):
            # before the overflow check: the run a page needs depends on its count
            ps = self.page_size
            claimed_end = min((pgid + 1 + overflow) * ps, self.pages_in_file * ps)
            count = self._zero_count(pgid, flags, pgid * ps, claimed_end,
                                     parents + (pgid,), path)
        if overflow:
            overflow = self._needed_overflow(pgid, flags, count, overflow, parents, path)
            return flags, count, self._mark_overflow(pgid, overflow, parents, path)
        return flags, count, (pgid + 1) * self.page_size

    def _retype(self, pgid, pid, flags, count, overflow, parents, path, lo, hi):
        """A page whose type alone is wrong: the leaf (or branch) flag, when
        the page reads as exactly the child its parent's element names --
        its own id, every element in bounds, keys strictly ascending, the
        first key the parent's branch key (bbolt sets a branch key to its
        child's first key) and the last below the next one.  A page that
        reads as both, or as neither, stays invalid."""
        if pid != pgid or not parents or not count or lo is None:
            return None
        if self._own_branch_key(parents + (pgid,), lo) is None:
            return None
        ps = self.page_size
        off = pgid * ps
        end = min((pgid + 1 + overflow) * ps, self.pages_in_file * ps, len(self.buf))
        fits = []
        for kind in (S.LEAF_PAGE_FLAG, S.BRANCH_PAGE_FLAG):
            if kind == S.LEAF_PAGE_FLAG:
                page = leaf_page(self.buf, self.raw, off, count, end)
                keys = page[1] if page is not None else None
            else:
                els = list(branch_elements(self.buf, off, count, end))
                keys = None if any(e[3] for e in els) else [bytes(e[1]) for e in els]
            if keys and keys[0] == lo and (hi is None or keys[-1] < hi) and ascending(keys):
                fits.append(kind)
        if len(fits) != 1:
            return None
        self._finding(F.PAGE_TYPE_RECOVERED,
                      f"page {pgid} has type {S.page_type_name(flags)}, but reads as the "
                      f"{S.page_type_name(fits[0])} its parent's element names (its first key "
                      "is the branch key, its keys fit the range): read as one",
                      pgid, parents, path, detail={"flags": flags, "read_as": fits[0]})
        return fits[0]

    def _needed_overflow(self, pgid, flags, count, overflow, parents, path) -> int:
        """The overflow run the page's own elements need, when that is shorter.

        bbolt allocates exactly ``ceil(size / page_size)`` pages for a node,
        so a longer run is damage; trusting it would claim the pages after it
        (live siblings) and prune their real pointers.
        """
        ps = self.page_size
        off = pgid * ps
        end = min((pgid + 1 + overflow) * ps, self.pages_in_file * ps)
        used = elements_end(self.buf, off, flags, count, end) - off
        needed = max(0, -(-used // ps) - 1)
        if needed < overflow:
            self._finding(F.PAGE_OVERFLOW_TOO_LARGE,
                          f"page {pgid} claims {overflow} overflow pages but its elements "
                          f"need {needed}; the extra pages are not claimed",
                          pgid, parents, path, severity=WARNING,
                          detail={"overflow": overflow, "needed": needed})
            return needed
        return overflow

    def _bad_pointer(self, pgid, parents, path, lo, hi):
        """Report why a pointer cannot be followed (meta page, past the
        high-water mark or the file, a cycle, or a second reference)."""
        where, rng = _where(pgid, parents, lo, hi)
        if pgid < 2:
            self._finding(F.INVALID_PAGE_TYPE, f"{where} points at meta page {pgid}",
                          pgid, parents, path, detail=dict(rng, bbolt="invalid type: meta"))
        elif pgid >= self.hwm:
            self._finding(F.PAGE_OUT_OF_BOUNDS,
                          f"{where} is at or above the high-water mark {self.hwm}",
                          pgid, parents, path,
                          detail=dict(rng, bbolt=f"page {pgid}: out of bounds: {self.hwm}"))
        elif pgid >= self.pages_in_file:
            self._finding(F.PAGE_PAST_EOF,
                          f"{where} is past the end of the file ({self.pages_in_file} pages); "
                          "bbolt dies with SIGBUS here", pgid, parents, path, detail=rng)
        elif pgid in parents:
            self._finding(F.PAGE_CYCLE, f"{where} points back at an ancestor: a cycle",
                          pgid, parents, path, detail=rng)
        else:
            self._finding(F.MULTIPLE_REFERENCES, f"{where} is referenced more than once",
                          pgid, parents, path,
                          detail=dict(rng, bbolt=f"page {pgid}: multiple references"))

    def _mark_overflow(self, pgid, overflow, parents, path) -> int:
        """Mark the overflow run reached; returns the usable end offset."""
        last = pgid + overflow
        if last >= self.hwm or last >= self.pages_in_file:
            limit = min(self.hwm, self.pages_in_file)
            code = F.PAGE_OUT_OF_BOUNDS if last >= self.hwm else F.PAGE_PAST_EOF
            past = ("the high-water mark" if code == F.PAGE_OUT_OF_BOUNDS
                    else "the end of the file")
            self._finding(code,
                          f"page {pgid}'s overflow run ({overflow} pages) ends at page {last}, "
                          f"past {past}", pgid, parents, path, detail={"overflow": overflow})
            last = limit - 1
        if last > pgid:
            hit = _first_nonzero(self.reached, pgid + 1, last + 1)
            if hit != -1:
                self._finding(F.MULTIPLE_REFERENCES,
                              f"page {pgid}'s overflow run overlaps page {hit}, reached elsewhere",
                              hit, parents + (pgid,), path,
                              detail={"bbolt": f"page {hit}: multiple references"})
                last = hit - 1
            self.reached[pgid + 1: last + 1] = b"\x02" * (last - pgid)
        return (last + 1) * self.page_size

    def _own_branch_key(self, pages, lo) -> Optional[bytes]:
        """``lo`` when it is the key of the parent branch element pointing
        at the page (pages[-1]), else None (no parent, or the range's lower
        bound came from another element).  The parent's elements are
        indexed once by child (offsets only), for the last parent asked."""
        if lo is None or len(pages) < 2:
            return None
        parent, child = pages[-2], pages[-1]
        cache = getattr(self, "_parent_index", None)
        if cache is None or cache[0] != parent:
            index: dict = {}
            ps = self.page_size
            _, flags, count, overflow = S.PAGE_HEADER.unpack_from(self.buf, parent * ps)
            end = min((parent + 1 + overflow) * ps, len(self.buf))
            for i, _key, c, trouble in branch_elements(self.buf, parent * ps, count, end):
                if not trouble:
                    index.setdefault(c, []).append(
                        parent * ps + S.PAGE_HEADER_SIZE + i * S.BRANCH_ELEMENT_SIZE)
            cache = self._parent_index = (parent, index)
        for eoff in cache[1].get(child, ()):
            pos, ksize, _ = S.BRANCH_ELEMENT.unpack_from(self.buf, eoff)
            if ksize == len(lo) and self.buf[eoff + pos:eoff + pos + ksize] == lo:
                return lo
        return None

    def _damaged_leaf(self, bucket: Bucket, pgid, pages, off, count, end, lo, hi, last):
        """A leaf page with something wrong, one element at a time: each
        problem reported in place, each good record yielded on its own;
        returns the last key yielded (``last`` when none)."""
        buf, raw = self.buf, self.raw
        keep = sure_increasing(page_key_refs(buf, raw, off, count, end, last))
        own = self._own_branch_key(pages, lo)
        if own is not None and self._not_the_child(
                [key for _, _, key, _, problem in leaf_elements(buf, off, count, end)
                 if not problem], own, hi, pgid, pages, bucket.path):
            return last
        rank = 0
        for idx, eflags, key, value, problem in leaf_elements(buf, off, count, end):
            if problem:
                self._element_problem(problem, pgid, pages, bucket.path, idx, "leaf")
                continue
            if last is None or key > last:
                rank += 1
                if rank - 1 not in keep:
                    # out of order on its page, and not in every longest
                    # increasing run of its keys: it may carry another
                    # key's value (two keys swapped), so it is dropped
                    self._key_order(key, last if last is not None else key, pgid,
                                    pages, bucket.path, "leaf", idx)
                    continue
            if idx == 0 and own is not None and key != own:
                # rule 6: bbolt writes a branch element's key as its
                # child's first key (node.go spill: parent.put(key,
                # node.inodes[0].key, ...)), so element 0 is damaged
                self._finding(F.KEY_OUT_OF_RANGE,
                              f"key {_hex(key)} is element 0 of leaf page {pgid}, but its "
                              f"parent's branch key is {_hex(own)} (bbolt sets a branch "
                              "key to its child's first key)", pgid, pages, bucket.path,
                              detail={"index": idx})
                continue
            if (lo is not None and key < lo) or (hi is not None and key >= hi):
                self._finding(F.KEY_OUT_OF_RANGE,
                              f"key {_hex(key)} on leaf page {pgid} is outside the range "
                              f"[{_hex(lo)}, {_hex(hi)}) its ancestors allow",
                              pgid, pages, bucket.path, detail={"index": idx})
                continue
            if last is not None and key <= last:
                self._key_order(key, last, pgid, pages, bucket.path, "leaf", idx)
                continue
            last = key
            self.records_yielded += 1
            yield pgid, (idx,), (eflags,), (key,), (value,)
        return last

    def _not_the_child(self, keys, own, hi, pgid, pages, path) -> bool:
        """A page whose first key is not its parent's branch key (bbolt sets
        a branch key to its child's first key) and that holds a key outside
        the element's range [own, hi) is not the child the element names: a
        stale page (a lost write left an older page at this position) or a
        misdirected one.  Nothing on it is placed (its range is pruned, for
        salvage to fill where a rule proves it); True then.  With every key
        in the range, only element 0 is damaged (rule 6, the caller's)."""
        if not keys or keys[0] == own:
            return False
        outside = sum(1 for k in keys if k < own or (hi is not None and k >= hi))
        if not outside:
            return False
        where, rng = _where(pgid, pages[:-1], own, hi)
        self._finding(F.CHILD_KEY_MISMATCH,
                      f"{where} starts with key {_hex(keys[0])}, not its parent's branch key "
                      f"{_hex(own)}, and {outside} of its {len(keys)} keys lie outside the "
                      "range the element allows: it is not the child the element names (a "
                      "stale or misdirected page); its records are not placed",
                      pgid, pages[:-1], path, detail=dict(rng, keys=len(keys)))
        return True

    # ------------------------------------------------------------ findings
    def _finding(self, code, message, page, pages, path, *, severity=ERROR, detail=None):
        self.report(Finding(code, message, severity, page, tuple(pages), tuple(path),
                            detail or {}))

    def _element_problem(self, problem, pgid, pages, path, idx, kind):
        text = {
            F.KEY_EMPTY: "has a zero-length key",
            F.ELEMENT_OUT_OF_BOUNDS: "runs past its page",
            F.ELEMENT_COUNT_OVERFLOW: "and those after it do not fit: the page's "
                                      "element count runs past its run",
            F.ELEMENT_COUNT_CORRUPT: "is where the page's data starts: its element count "
                                     "is damaged (elements read up to there)",
        }[problem]
        self._finding(problem, f"{kind} element {idx} on page {pgid} {text}", pgid, pages, path,
                      detail={"index": idx})

    def _key_order(self, key, last, pgid, pages, path, kind, idx=None):
        self._finding(F.KEY_ORDER,
                      f"key {_hex(key)} on {kind} page {pgid} is not greater than the "
                      f"previous key {_hex(last)}", pgid, pages, path,
                      detail={"index": idx} if idx is not None else {})


def _branch_broken(w: "TreeChecks", pgid: int, count: int, overflow: int) -> bool:
    """Some element of page ``pgid`` read as a branch's lies out of bounds:
    then a page saying branch may be a leaf whose type byte alone is wrong
    (``TreeChecks._retype`` decides whether it reads as exactly the leaf its
    parent's element names)."""
    ps = w.page_size
    end = min((pgid + 1 + overflow) * ps, w.pages_in_file * ps, len(w.buf))
    return any(e[3] for e in branch_elements(w.buf, pgid * ps, count, end))


def _zeros(buf, start: int, end: int, chunk: int = 1 << 20) -> bool:
    """Only zero bytes in ``buf[start:end]`` (read a chunk at a time)."""
    return not any(bytes(buf[i:min(i + chunk, end)]).strip(b"\0")
                   for i in range(start, end, chunk))


def laid_out_header(db: DB, rec: Record) -> Optional[bytes]:
    """The 16-byte header of a bucket entry (of a bucket with its own
    root page) whose value size is short, when the page proves the
    value's real size is 16: bbolt never writes a bucket value shorter
    than its header, and ``node.write`` lays each element's key and
    value back to back, in element order, in a page buffer that is
    zeroed before use (``tx.write`` zeroes a page it returns to the
    pool; a longer run is a new, zeroed buffer).  So the value ends
    where the next element's key starts, or for the last element where
    the page's zeros start.  Else None: the size is not proven."""
    ps = db.page_size
    off = rec.page * ps
    if len(rec.value) < 8 or off + S.PAGE_HEADER_SIZE > db.size:
        return None
    _, flags, count, overflow = S.PAGE_HEADER.unpack_from(db.buf, off)
    end = min(off + (overflow + 1) * ps, db.size)
    eoff = off + S.PAGE_HEADER_SIZE + rec.index * S.LEAF_ELEMENT_SIZE
    if flags != S.LEAF_PAGE_FLAG or rec.index >= count or \
            eoff + S.LEAF_ELEMENT_SIZE > end:
        return None
    _, pos, ksize, vsize = S.LEAF_ELEMENT.unpack_from(db.buf, eoff)
    v = eoff + pos + ksize
    if vsize != len(rec.value) or bytes(db.buf[v - ksize:v]) != rec.key or \
            v + S.BUCKET_HEADER_SIZE > end:
        return None  # not this page's element (an inline bucket's)
    if rec.index + 1 < count:
        npos = S.LEAF_ELEMENT.unpack_from(db.buf, eoff + S.LEAF_ELEMENT_SIZE)[1]
        if eoff + S.LEAF_ELEMENT_SIZE + npos != v + S.BUCKET_HEADER_SIZE:
            return None
    elif not _zeros(db.buf, v + S.BUCKET_HEADER_SIZE, end):
        return None
    header = bytes(db.buf[v:v + S.BUCKET_HEADER_SIZE])
    return header if S.BUCKET_HEADER.unpack_from(header, 0)[0] != 0 else None


class Walker(TreeChecks):
    """Walks one tree of a DB, sharing one reachability map across all its buckets.

    ``tree``: the tree to walk (default: the one the meta in use names; None
    when there is no valid meta, then nothing is walked).
    """

    #: pages the C core took (of pages_walked): tests hold it near 100%
    pages_in_c = 0

    # ------------------------------------------------------------ buckets
    def root_bucket(self) -> Optional[Bucket]:
        """The root bucket of the tree, or None when there is no tree."""
        tree = self.tree
        if tree is None:
            return None
        return Bucket(path=(), root=tree.root, sequence=tree.sequence)

    def open_bucket(self, parent: Bucket, rec: Record) -> Optional[Bucket]:
        """Decode a bucket entry's value; None (and a finding) when malformed."""
        if len(parent.path) >= MAX_BUCKET_DEPTH:
            self._finding(F.BUCKET_TOO_DEEP,
                          f"bucket entry {_hex(rec.key)} is {len(parent.path) + 1} levels deep; "
                          f"boltfix opens {MAX_BUCKET_DEPTH} levels of buckets at most",
                          rec.page, (), parent.path, detail={"depth": len(parent.path) + 1})
            return None
        path = parent.path + (rec.key,)
        value = rec.value
        header = laid_out_header(self.db, rec) if len(value) < S.BUCKET_HEADER_SIZE else None
        if header is not None:
            value = header
            self._finding(F.BUCKET_VALUE_SIZE_RECOVERED,
                          f"bucket value is {len(rec.value)} bytes, but its element's bytes "
                          "hold the whole 16-byte header where bbolt laid it out: read as one",
                          rec.page, (), path, detail={"vsize": len(rec.value)})
        if len(value) < S.BUCKET_HEADER_SIZE:
            self._finding(F.BUCKET_VALUE_SHORT,
                          f"bucket value is {len(value)} bytes, needs at least 16",
                          rec.page, (), path)
            return None
        root, sequence = S.BUCKET_HEADER.unpack_from(value, 0)
        if root != 0:
            return Bucket(path, root, sequence, None, rec.page)  # positional: the hot path
        inline = value[S.BUCKET_HEADER_SIZE:]
        if len(inline) < S.PAGE_HEADER_SIZE:
            self._finding(F.INLINE_BUCKET_MALFORMED,
                          f"inline bucket value is {len(value)} bytes, shorter than a page header",
                          rec.page, (), path)
            return None
        _, flags, count, _ = S.PAGE_HEADER.unpack_from(inline, 0)
        if flags != S.LEAF_PAGE_FLAG:
            self._finding(F.INLINE_BUCKET_MALFORMED,
                          f"inline bucket page has type {S.page_type_name(flags)}, not leaf",
                          rec.page, (), path, detail={"flags": flags})
            return None
        return Bucket(path, 0, sequence, inline, rec.page)

    def walk(self) -> Iterator[Tuple[Bucket, Record]]:
        """Every record of every bucket, depth first, a bucket's records right
        after its own entry (pre-order), keys ascending within each bucket."""
        for bucket, batch in self.walk_batches():
            yield from zip(repeat(bucket), batch.records())

    def walk_batches(self, start: Optional[Bucket] = None, prefix: Optional[bytes] = None
                     ) -> Iterator[Tuple[Bucket, Batch]]:
        """:meth:`walk_leaves` a page at a time: (bucket, :class:`Batch`)."""
        for bucket, leaves in self.walk_leaves(start, prefix):
            for batch in leaves.batches():
                yield bucket, batch

    def walk_leaves(self, start: Optional[Bucket] = None, prefix: Optional[bytes] = None,
                    inline_runs: bool = False) -> Iterator[Tuple[Bucket, Leaves]]:
        """:meth:`walk`'s stream, grouped: (bucket, :class:`Leaves`) per run of
        plain records (one page, or many clean pages the C core took), and
        one per bucket entry, whose sub-bucket's leaves follow it at once.

        ``start``: walk that bucket and below instead of the whole tree.
        ``prefix``: only the keys of ``start`` itself that begin with it (a
        matching sub-bucket comes whole); the walk stops at the first key
        past them.  Keys that do not match are dropped before anything looks
        at them: a non-matching bucket entry is not opened, a non-matching
        plain key of the root bucket is not reported.
        ``inline_runs``: consecutive entries of small sub-buckets below the
        top level come as one (bucket, :class:`InlineRun`) instead (for a
        consumer that takes them whole; its :meth:`InlineRun.expand` gives
        what would have come).

        One explicit stack of open buckets, each with its own stream and the
        rest of the page that held its last sub-bucket entry: a bucket with
        many sub-buckets costs no deeper chain of iterators than one.
        """
        top = self.root_bucket() if start is None else start
        if top is None:
            return
        items = self._items(top)
        if prefix is not None:
            items = _prefixed(items, prefix, self._page_leaves)
        # frames: [bucket, its stream, the rest of a page still to do or None]
        stack = [[top, items, None]]
        while stack:
            frame = stack[-1]
            bucket = frame[0]
            rest, frame[2] = frame[2], None
            for leaf in chain((rest,), frame[1]) if rest is not None else frame[1]:
                if type(leaf) is Leaves:
                    yield bucket, leaf
                    continue
                flags = leaf[2]
                if not flags:
                    continue  # the empty rest of a page after a sub-bucket
                if bucket.path and not any(map(S.BUCKET_LEAF_FLAG.__and__, flags)):
                    # the common case: no bucket entries
                    yield bucket, Leaves(self, len(flags), leaf[3][-1], Batch(*leaf))
                    continue
                child, rest = yield from self._split(bucket, leaf, inline_runs)
                if child is not None:
                    # walk the sub-bucket, then the rest of this page, then on
                    frame[2] = rest
                    stack.append([child, self._items(child), None])
                    break
            else:
                stack.pop()

    def _split(self, bucket: Bucket, leaf: PageRecords, inline_runs: bool = False):
        """Yield a page's records up to and including its first bucket entry
        that opens; returns (that sub-bucket, the rest of the page) or
        (None, None) when the page ran out.  Plain keys of the root bucket
        are reported and dropped."""
        page, idxs, flags, keys, values = leaf
        start = 0
        is_root = not bucket.path
        bucket_flag = S.BUCKET_LEAF_FLAG
        # no runs in the root (its sub-buckets' records are what check's
        # etcd rules read) nor where open_bucket refuses the depth
        runs = (inline_runs and INLINE_RUNS and not is_root
                and len(bucket.path) < MAX_BUCKET_DEPTH)
        inline_max = self.page_size // 4
        i, n = 0, len(flags)
        while i < n:
            f = flags[i]
            if not (f & bucket_flag or is_root):
                i += 1
                continue
            if start < i:
                yield bucket, Leaves(self, i - start, keys[i - 1], Batch(
                    page, idxs[start:i], flags[start:i], keys[start:i], values[start:i]))
            if runs:
                stop, counts = inline_run(flags, keys, values, i, inline_max)
                if stop > i:
                    self.records_yielded += sum(counts)
                    yield bucket, InlineRun(page, idxs[i:stop], keys[i:stop],
                                            values[i:stop], counts)
                    start = i = stop
                    continue
            start = i + 1
            rec = Record(keys[i], values[i], f, page, idxs[i])
            i += 1
            if not f & S.BUCKET_LEAF_FLAG:
                self._finding(F.ROOT_ENTRY_NOT_BUCKET,
                              "the root bucket holds a plain key; bbolt allows only buckets "
                              "there", page, (), (rec.key,))
                continue
            child = yield from self.entry_items(bucket, rec)
            if child is not None:
                rest = (page, idxs[start:], flags[start:], keys[start:], values[start:])
                return child, rest
        if start < len(keys):
            yield bucket, Leaves(self, len(keys) - start, keys[-1], Batch(
                page, idxs[start:], flags[start:], keys[start:], values[start:]))
        return None, None

    def entry_items(self, bucket: Bucket, rec: Record, count: bool = True):
        """Yield a bucket entry and, when its sub-bucket is a clean inline
        one, that bucket's records; returns the sub-bucket when its records
        are still to walk (its own frame), else None.  ``count``: add the
        inline records to records_yielded (an :class:`InlineRun` did)."""
        rec.child = child = self.open_bucket(bucket, rec)
        yield bucket, Leaves(self, 1, rec.key, fast_batch(
            Batch, (rec.page, (rec.index,), (rec.flags,), (rec.key,), (rec.value,), rec)))
        if child is None:
            return None
        if child.inline is not None and not child.root:
            # an inline sub-bucket with nothing wrong (the common small
            # bucket): its records right here, as its own frame would yield
            # them, without opening one
            inline = clean_inline(child.inline)
            if inline is not None:
                child.depth = 1
                if count:
                    self.records_yielded += len(inline)
                cpage = child.page
                for el in inline:
                    yield child, Leaves(self, 1, el[2], fast_batch(
                        Batch, (cpage, (el[0],), (el[1],), (el[2],), (el[3],), None)))
                return None
        return child

    def find(self, bucket: Bucket, key: bytes) -> Optional[Record]:
        """The record for ``key`` in ``bucket``, descending the tree (O(depth)).

        Every page on the way passes the same checks as in a walk.  Children
        whose key range may hold ``key`` are all tried (a damaged branch key
        widens ranges).
        """
        if bucket.is_inline:
            for rec in self.records(bucket):
                if rec.key >= key:
                    return rec if rec.key == key else None
            return None
        stack = [(bucket.root, None, None, ())]
        while stack:
            pgid, lo, hi, parents = stack.pop()
            header = self._follow(pgid, parents, bucket.path, lo, hi)
            if header is None:
                continue
            flags, count, end = header
            pages = parents + (pgid,)
            off = pgid * self.page_size
            if flags == S.BRANCH_PAGE_FLAG:
                stack.extend(fr for fr in reversed(self._branch_children(
                    off, count, end, lo, hi, pages, bucket.path))
                    if (fr[1] is None or key >= fr[1]) and (fr[2] is None or key < fr[2]))
                continue
            for idx, eflags, k, value, problem in leaf_elements(self.buf, off, count, end):
                if problem is None and k == key:
                    return Record(k, value, eflags, pgid, idx)
        return None

    def records(self, bucket: Bucket) -> Iterator[Record]:
        """The bucket's own records (sub-bucket entries included, not entered)."""
        for page, idxs, flags, keys, values in self._leaves(bucket):
            yield from map(Record, keys, values, flags, repeat(page), idxs)

    def key_lists(self, bucket: Bucket) -> Iterator[Sequence[bytes]]:
        """The bucket's own keys (sub-bucket names included), a page at a
        time: :meth:`records` without a Record per element."""
        for leaf in self._items(bucket):
            if type(leaf) is Leaves:
                yield from leaf.key_lists()
            else:
                yield leaf[3]

    def count_all(self) -> None:
        """Walk everything, for the reachability map and the findings only."""
        for _ in self.walk_leaves():
            pass

    def page_batches(self, pages) -> Iterator[Batch]:
        """Pages the C core took, as batches."""
        for page, idxs, flags, keys, values in self._page_leaves(pages):
            yield Batch(page, idxs, flags, keys, values)

    def _items(self, bucket: Bucket) -> Iterator[Union[PageRecords, Leaves]]:
        """The bucket's own valid records: a page (or a single record) at a
        time, or clean pages taken by the C core as :class:`Leaves`."""
        if bucket.is_inline:
            return self.inline_records(bucket)
        return self._tree_items(bucket)

    def _leaves(self, bucket: Bucket) -> Iterator[PageRecords]:
        """:meth:`_items` with the C core's pages read: a page at a time."""
        for item in self._items(bucket):
            if type(item) is Leaves:
                yield from self._page_leaves(item._pages)
            else:
                yield item

    def _tree_leaves(self, bucket: Bucket) -> Iterator[PageRecords]:
        """:meth:`_leaves` of a paged bucket."""
        return self._leaves(bucket)

    def inline_records(self, bucket: Bucket) -> Iterator[PageRecords]:
        """The records of an inline bucket, each checked, each problem reported."""
        page = bucket.inline
        bucket.depth = 1
        _, _, count, _ = S.PAGE_HEADER.unpack_from(page, 0)
        last = None
        for el in leaf_elements(page, 0, count, len(page)):
            idx, flags, key, value, problem = el
            if problem:
                self._element_problem(problem, bucket.page, (), bucket.path, idx,
                                      "inline bucket")
                continue
            if last is not None and key <= last:
                self._key_order(key, last, bucket.page, (), bucket.path, "inline bucket")
                continue
            if flags & S.BUCKET_LEAF_FLAG:
                self._finding(F.INLINE_BUCKET_NESTED,
                              "inline bucket holds a sub-bucket; bbolt never writes that",
                              bucket.page, (), bucket.path, severity=WARNING)
            last = key
            self.records_yielded += 1
            yield bucket.page, (idx,), (flags,), (key,), (value,)

    # ------------------------------------------------------------ trees
    def _tree_items(self, bucket: Bucket) -> Iterator[Union[PageRecords, Leaves]]:
        """In-order walk of a paged bucket; only valid, ordered records.

        With the C core, the clean frames on top of the stack are taken in C
        (:func:`_speedups.advance` makes exactly the checks below and takes a
        page only when all of them pass); a frame it leaves is handled here,
        one at a time, and then C goes on.  The root bucket is always walked
        here: its records are bucket entries, which need Python anyway.

        A leaf page with nothing wrong is checked in one tight pass
        (:func:`~boltfix.leaves.leaf_page`, then its keys' order by
        :func:`~boltfix.leaves.ascending`) and
        comes whole.  A
        page with any problem is walked element by element, each problem
        reported in place and each good record coming on its own, right
        after the findings before it -- the same interleaving as a walk one
        element at a time.
        """
        buf = self.buf
        raw = self.raw
        ps = self.page_size
        last: Optional[bytes] = None
        # frames: (page id, low bound, high bound, page ids of its parents)
        stack = [(bucket.root, None, None, ())]
        fast = ccore.speedups if bucket.path else None
        while stack:
            if fast is not None:
                leaves, last, walked, npages, depth, records, more = ccore.call(
                    fast.advance, stack, buf, self.reached, ps, self.hwm, self.pages_in_file,
                    last, RUN_LEAVES, self._trim_pages)
                if walked:
                    self._count_walked(walked)
                    self.pages_in_c += walked
                    bucket.pages += npages
                    self._touched(npages)
                    bucket.depth = max(bucket.depth, depth)
                    self.records_yielded += records
                if leaves:
                    yield Leaves(self, records, last, pages=leaves)
                if more or not stack:
                    continue
            pgid, lo, hi, parents = stack.pop()
            header = self._follow(pgid, parents, bucket.path, lo, hi)
            if header is None:
                continue
            flags, count, end = header
            pages = parents + (pgid,)
            off = pgid * ps
            bucket.pages += (end - off) // ps
            self._touched((end - off) // ps)
            if len(pages) > bucket.depth:
                bucket.depth = len(pages)
            if count == 0 and flags == S.BRANCH_PAGE_FLAG:
                continue  # reported by _follow: the children are lost
            if flags != S.BRANCH_PAGE_FLAG:
                page = leaf_page(buf, raw, off, count, end)
                if page is not None:
                    eflags, keys, values = page
                    if not keys:
                        continue
                    first, final = keys[0], keys[-1]
                    # bbolt's branch key is its child's first key (node.spill:
                    # parent.put(key, node.inodes[0].key, ...)): a first key
                    # above a trusted own key means damage or a stale page
                    if ((last is None or first > last)
                            and (lo is None or first == lo
                                 or (first > lo and self._own_branch_key(pages, lo) is None))
                            and (hi is None or final < hi) and ascending(keys)):
                        last = final
                        self.records_yielded += len(keys)
                        yield pgid, range(len(keys)), eflags, keys, values
                        continue
                # something on this page is wrong: one element at a time
                last = yield from self._damaged_leaf(bucket, pgid, pages, off, count, end, lo, hi,
                                                     last)
            else:
                stack.extend(reversed(self._branch_children(off, count, end, lo, hi,
                                                            pages, bucket.path)))

    def _page_leaves(self, leaves) -> Iterator[PageRecords]:
        """The records of pages the C core took, sliced as _leaf_page does."""
        buf, raw, ps = self.buf, self.raw, self.page_size
        for pgid, count, end in leaves:
            page = leaf_page(buf, raw, pgid * ps, count, end)
            if page is None:  # it passed in C a moment ago
                raise BoltError(f"leaf page {pgid} changed while it was read",
                                page=pgid, offset=pgid * ps)
            flags, keys, values = page
            yield pgid, range(count), flags, keys, values
def self_id_ok(db: DB, batch) -> bool:
    """Rule 5 (:mod:`boltfix.salvage`): the batch's page (not an inline
    bucket's parent page) holds its own position in its header id.  bbolt
    asserts it on every page it reads (``Page expected to be: N, but self
    identifies as M``); dump and repair keep such a page's records apart."""
    pg = batch.page
    if pg < 2 or pg >= db.pages_in_file:
        return True
    return S.U64.unpack_from(db.buf, pg * db.page_size)[0] == pg


def _prefixed(leaves, prefix: bytes, expand) -> Iterator[PageRecords]:
    """The keys of an ascending leaf stream that start with ``prefix``.

    They are one contiguous run: keys below ``prefix`` are skipped (the C
    core's :class:`Leaves` whose last key is below it without slicing a key;
    others through ``expand``), and the first key past the run ends the
    stream (no further leaf is read).
    """
    for item in leaves:
        if type(item) is not Leaves:
            pages = (item,)
        elif item.last < prefix:
            continue
        else:
            pages = expand(item._pages)
        for leaf in pages:
            piece, past = _prefix_cut(leaf, prefix)
            if piece is not None:
                yield piece
            if past:
                return


def _prefix_cut(leaf: PageRecords, prefix: bytes) -> Tuple[Optional[PageRecords], bool]:
    """(the page's keys that start with ``prefix`` or None, whether a key
    past them is on this page)."""
    page, idxs, flags, keys, values = leaf
    n = len(keys)
    i = 0
    while i < n and keys[i] < prefix:
        i += 1
    j = i
    while j < n and keys[j].startswith(prefix):
        j += 1
    if i == j:
        piece = None
    elif i == 0 and j == n:
        piece = leaf
    else:
        piece = (page, idxs[i:j], flags[i:j], keys[i:j], values[i:j])
    return piece, j < n

def _where(pgid, parents, lo, hi):
    """How a finding names a pointer, and the key range it was followed with."""
    role = "bucket root" if not parents else "child"
    where = f"{role} page {pgid}" + (f" (from page {parents[-1]})" if parents else "")
    rng = {"key_range": [_hex(lo), _hex(hi)]} if (lo is not None or hi is not None) else {}
    return where, rng


def _first_nonzero(data: bytearray, start: int, end: int) -> int:
    """Index of the first non-zero byte in data[start:end], or -1.
    (lstrip does the scan inside CPython, with no bytecode per byte.)"""
    stripped = data[start:end].lstrip(b"\x00")
    return -1 if not stripped else end - len(stripped)


def _hex(key) -> str:
    if key is None:
        return "-"
    key = bytes(key)
    return key.hex() if len(key) <= 32 else key[:32].hex() + "…"
