"""Crash-consistent commit choice (:mod:`boltfix.commits`) on crashes mixed
from real bbolt commits, never from hand-built damage.

The invariant tested: **commit N never overwrites a page of commit N-1's
tree.**  bbolt 1.3.6 allocates N's pages only from the pages free when N
began (or past the high-water mark); the pages a commit frees wait in
``pending[txid]`` until a later writer's ``freePages``/``release``, and N-1's
tree is reachable when N begins, so none of its pages is free.  Then it
writes the meta page ``txid % 2``, leaving the other meta naming N-1's tree.
So whatever part of commit N did not reach the disk, N-1's tree is whole,
and repair must give either N-1's records exactly (rolled back) or, when
N's tree happens to be whole, N's records exactly: never a record set that
is neither.

Each history is a short series of real bbolt write transactions
(``support.oracle.put`` / ``delete_keys``: one commit each) on a committed
file; the file's bytes are captured after every commit.  ``blobs``: one
bucket, values that split leaves and need overflow runs, overwrites and
deletes (synced freelist); ``nested``: nested and new sub-buckets, deleted
keys and buckets (NoFreelistSync); ``page16k``: 16 KB pages; ``etcd``: a real
etcd 3.5 db, revisions and ``meta/consistent_index`` put (NoFreelistSync).
For every commit N the crash file is mixed from captures N-1 and N:

* ``lost``: every page N wrote holds N-1's bytes (zeros past N-1's end),
  N's meta page is in (a write cache that lied);
* ``partial-even`` / ``partial-odd``: every other page N wrote is lost;
* ``torn`` / ``torn-tree``: one page N wrote holds N-1's bytes from a
  512-byte boundary on (a torn sector write): a page chosen in turn, or
  N's branch or leaf page with the most elements, torn at 512;
* ``zeroed``: the pages N wrote read as zeros (an unwritten extent);
* ``meta-zeroed`` / ``meta-old-sector``: N's meta page zeroed, or its
  first sector still N-2's meta: bbolt itself opens N-1.
* ``live-copy``: the first half of the file (metas included) N-1's, the
  rest N's (``cp`` reading while bbolt wrote): N-1's tree, which N never
  wrote over, is whole;
* ``lost-growth``: N's file cut to N-1's length, at every commit N that
  grew the file (one test per history runs them all, and fails if the
  history has none: each history ends with a value bigger than its file,
  so that the file grows at least once).

(The mixing is :mod:`support.crashmix`'s.)  Expected: ``lost``, ``zeroed``: rolled back (``commits.rule`` is
``rolled-back``), the output's records equal capture N-1's; the meta cases:
N-1's records (its meta is the newest valid one); ``live-copy``: N-1's
records (N's, when a tree proven newer is kept); ``lost-growth``,
``partial-*`` and
``torn*``: N-1's or N's records exactly.  One exception is stated, not
hidden: a torn page whose torn part holds only bytes of values (an
overflow page of a big value, the data end of a leaf page) changes no
structure, and bbolt pages carry no checksum, so no reader can tell the
value is half old; there boltfix must read what bbolt reads.  Every output
passes the real ``tx.Check``; a rollback says what it passed over
(``commits.passed_over``, ``newer_commit``).
"""

from __future__ import annotations

import json
from typing import Optional

import pytest

from boltfix.repair import repair
from support import oracle
from support.bbolthistory import (  # the histories, shared with test_surgery
    GROWTH,
    HISTORIES,
    KINDS,
    KNOWN,
    History,
    _ident,
    bbolt_view,
    history,
    loss_counts,
    records_of,
)
from support.cli import invoke
from support.crashmix import applies, crash, meta_txids, page_size


def _cases():
    out = []
    for name, (_, ops) in HISTORIES.items():
        for n in range(1, len(ops) + 1):
            for kind in KINDS:
                marks = ()
                if (name, n, kind) in KNOWN:
                    marks = (pytest.mark.xfail(strict=True, reason=KNOWN[(name, n, kind)]),)
                out.append(pytest.param(name, n, kind, marks=marks, id=f"{name}-{n:02d}-{kind}"))
    return out


# ---------------------------------------------------------------- the tests
@pytest.mark.parametrize("name,n,kind", _cases())
def test_crash_keeps_a_whole_commit(name, n, kind, tmp_path, tmp_path_factory):
    """A crash in commit ``n`` of a real history: repair keeps commit n-1's
    records exactly, or (when n's tree is whole) commit n's, and says so."""
    oracle.boltgen_path()
    h = history(name, tmp_path_factory)
    assert applies(h.captures[n - 1], h.captures[n], kind), "every commit writes a page"
    check_crash(h, n, kind, tmp_path)


@pytest.mark.parametrize("name", list(HISTORIES))
def test_lost_growth_keeps_a_whole_commit(name, tmp_path, tmp_path_factory):
    """``lost-growth`` at every commit of a history that grew the file (at
    least one: the history's last value is bigger than its file): the
    same checks as every other crash kind, per commit."""
    oracle.boltgen_path()
    h = history(name, tmp_path_factory)
    grew = [n for n in range(1, len(h.captures))
            if applies(h.captures[n - 1], h.captures[n], GROWTH)]
    assert grew, f"no commit of {name!r} grew the file: lost-growth is not tested"
    for n in grew:
        work = tmp_path / f"commit-{n:02d}"
        work.mkdir()
        try:
            check_crash(h, n, GROWTH, work)
        except AssertionError as exc:
            raise AssertionError(f"{name} commit {n} {GROWTH}: {exc}") from exc
    print(f"{name}: lost-growth at commits {grew}")


def check_crash(h: History, n: int, kind: str, tmp_path) -> None:
    """Repair the ``kind`` crash of commit ``n`` and hold the output to
    commit n-1's or n's records (by kind), bbolt's ``tx.Check`` and the
    report's account of a rollback."""
    prev, cur = h.records[n - 1], h.records[n]
    src = tmp_path / "crashed.db"
    src.write_bytes(crash(h.captures[n - 1], h.captures[n], kind, n))
    # what bbolt itself reads (not asked of a zeroed tree: it can loop),
    # asked only where a check uses it: a crash file can send bbolt's dump
    # round a loop until VIEW_TIMEOUT
    asked: list = []

    def seen() -> Optional[list]:
        """Real bbolt's records of the crash file, read once when first used."""
        if not asked:
            asked.append(None if kind == "zeroed" else bbolt_view(src))
        return asked[0]

    out = tmp_path / "fixed.db"
    rep = repair(src, out).to_json()

    got = records_of(out)
    res = oracle.oracle_check(out)
    assert res.ok, (res.status, res.messages[:5], res.stderr[-500:])
    commits = rep["commits"]
    rule = commits["rule"]

    if kind in ("lost", "zeroed"):
        assert rule == "rolled-back", commits["reason"]
        assert got == prev, "not rolled back to commit n-1 exactly"
    elif kind == "live-copy":
        # the metas (in the first half) are n-1's, whose tree commit n never
        # wrote over; a whole tree proven newer is n's
        assert got == (cur if rule == "copied-while-written" else prev), (rule, commits["reason"])
    elif kind == "lost-growth":
        # n's metas with the pages n grew the file by lost: n-1's tree lies
        # below n-1's end, whole; n's tree is whole only if it never used them
        assert got in (prev, cur), (rule, commits["reason"])
        assert got == prev or rule == "newest"
    elif kind.startswith("meta-"):
        # bbolt itself opens n-1 (1.3.6 takes the page size from meta 0 only:
        # with meta 0 gone it cannot open a file of 16 KB pages at all)
        assert seen() == prev or (seen() is None and page_size(h.captures[n]) != 4096)
        assert rule == "newest", commits["reason"]
        assert got == prev
    else:
        # got == cur never meets the value-only tear (its view differs from
        # cur's), so bbolt is not asked then
        value_only_tear = (kind.startswith("torn") and got != cur and seen() is not None
                           and seen() != cur
                           and [_ident(r) for r in seen()] == [_ident(r) for r in cur])
        if value_only_tear and got == seen():
            # no structure torn: bbolt's pages carry no checksum (the stated limit)
            assert rule == "newest"
        else:
            assert got in (prev, cur), (rule, commits["reason"])

    if rule == "rolled-back":
        assert rep["meta_fallback"] and rep["lost_data"]
        txids = sorted(meta_txids(h.captures[n], page_size(h.captures[n])))
        assert commits["passed_over"]["txid"] == txids[1]
        assert commits["kept"]["txid"] == txids[0]
        lost = commits["newer_commit"]
        if prev != cur:  # the report says what was lost, or where it could not read
            assert lost["added"] + lost["changed"] + lost["deleted"] or lost["unread"], lost
        if not lost["unread"] and seen() is not None and seen() != prev:
            # what the passed-over tree still reads as, against what was kept
            want = loss_counts(seen(), prev)
            assert {k: lost[k] for k in want} == want, lost
        if kind == "zeroed":  # nothing of the newer tree reads: it says where
            assert lost["unread"], lost


def test_cli_says_the_commit_was_rolled_back(tmp_path, tmp_path_factory):
    """Through the command line, a lost write of a commit (commit 3 of
    ``blobs``): ``check`` exits 1 naming ``newest-commit-damaged``; ``repair
    --json`` exits 1 (a commit is lost), rolls back to commit 2 exactly and
    reports the txid it passed over."""
    oracle.boltgen_path()
    h = history("blobs", tmp_path_factory)
    src = tmp_path / "crashed.db"
    src.write_bytes(crash(h.captures[2], h.captures[3], "lost", 3))
    r = invoke("check", src, "--json", code=(1,))
    assert json.loads(r.stdout)["counts"].get("newest-commit-damaged") == 1
    out = tmp_path / "fixed.db"
    r = invoke("repair", src, "--out", out, "--json", code=(1,))
    rep = json.loads(r.stdout)
    assert rep["lost_data"] and rep["meta_fallback"]
    assert rep["commits"]["rule"] == "rolled-back"
    assert rep["commits"]["passed_over"]["txid"] == rep["commits"]["kept"]["txid"] + 1
    assert records_of(out) == h.records[2]
