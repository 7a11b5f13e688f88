"""Real bbolt commit histories for crash tests: each history is a short
series of real bbolt write transactions (``support.oracle.put`` /
``delete_keys``: one commit each) on a committed file, its bytes captured
after every commit, with real bbolt's records of each capture; and the
crash cases whose outcome is a known limit (:data:`KNOWN`, with the cause).
Used by tests/oracle/test_crash_commits.py (the commit choice on every
crash kind) and tests/oracle/test_surgery.py / benchmarks/surgery_compare.py
(against bbolt's surgery)."""

from __future__ import annotations

import resource
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Optional

from boltfix.repair import repair
from support import REPO, oracle
from support.crashmix import crash
from support.protobuf import key_value, rev_key

# ---------------------------------------------------------------- histories


def _value(i: int, size: int) -> bytes:
    """A value of ``size`` bytes that differs per ``i``."""
    unit = bytes([i % 251]) * 7 + b"v%03d" % i
    return (unit * (size // len(unit) + 1))[:size]


#: values of 60 KB (a value goes to bbolt as a command line argument, in
#: hex: at most 128 KB) put at the end of ``blobs`` and ``nested`` until
#: the file grows (at the last one), so that each history has a lost growth
#: to test
GROW_BLOBS, GROW_NESTED = 3, 2


def _growth(bucket: bytes, count: int) -> list:
    """``count`` puts of 60 KB values into ``bucket``, one commit each."""
    return [("put", [bucket], b"grow-%02d" % i, _value(200 + i, 60_000)) for i in range(count)]


def _blob_ops() -> list:
    """One bucket: values that split leaves and need overflow pages,
    overwrites and deletes (synced freelist)."""
    sizes = [3000, 900, 9000, 500, 20000, 1500, 3000, 40000, 700, 2500, 6000, 100]
    ops = [("put", [b"blobs"], b"k%03d" % i, _value(i, s)) for i, s in enumerate(sizes)]
    ops += [("put", [b"blobs"], b"k002", _value(99, 12000)),  # an overflow value rewritten
            ("delete", [b"blobs"], [b"k004", b"k007"]),  # two overflow values freed
            ("put", [b"doomed"], b"doomed-000300", b"short now")]
    return ops + _growth(b"blobs", GROW_BLOBS)


def _nested_ops() -> list:
    """Nested sub-buckets, new buckets (two in one commit), deletes of keys
    and of a bucket, in a NoFreelistSync file (as etcd runs bbolt)."""
    deep = [b"nested", b"level2", b"level3"]
    return [
        ("put", deep, b"deep-new-1", _value(1, 200)),
        ("put", deep + [b"level4"], b"deep-new-2", _value(2, 5000)),
        ("put", [b"fresh", b"sub"], b"a", _value(3, 100)),  # two new buckets
        ("put", [b"fresh", b"sub"], b"b", _value(4, 3000)),  # inline -> paged
        ("put", [b"fresh", b"sub2"], b"c", _value(5, 50)),
        ("put", [b"live"], b"live-000050", _value(6, 9000)),  # changed, now overflow
        ("delete", [b"live"], [b"live-%06d" % i for i in range(60, 140)]),
        ("put", [b"nested", b"inline-2"], b"grown", _value(7, 2000)),  # inline -> paged
        ("delete", [b"fresh"], [b"sub2"]),  # a bucket deleted
        ("put", [b"another"], b"x", _value(8, 30000)),
        ("delete", [], [b"doomed"]),  # a top-level bucket of 100 keys deleted
        ("put", [b"live"], b"live-000051", b""),
    ] + _growth(b"another", GROW_NESTED)


def _page16k_ops() -> list:
    """16 KB pages: a big bucket and its sub-bucket."""
    return [
        ("put", [b"many"], b"m-%03d" % i, _value(i, s))
        for i, s in enumerate([40000, 1000, 17000, 200, 60000])
    ] + [
        ("put", [b"many", b"many-sub"], b"s-new", _value(9, 20000)),
        ("delete", [b"many"], [b"m-001", b"m-003"]),
        ("put", [b"made", b"here"], b"k", _value(10, 100)),
    ]


#: fixtures/etcd/etcd-3.5.db (real etcd 3.5.1): its highest revision and
#: meta/consistent_index
ETCD_REVISION, ETCD_INDEX = 295, 324


def _etcd_ops() -> list:
    """A real etcd 3.5 db (NoFreelistSync): revisions put into ``key``, each
    followed by ``meta/consistent_index`` growing (etcd writes both in one
    commit; here they are two)."""
    ops = []
    for i, size in enumerate([200, 5000, 900, 12000, 3000, 30000], 1):
        rev = ETCD_REVISION + i
        kv = key_value(key=b"/crash/%d" % i, create=rev, mod=rev, value=_value(i, size))
        ops.append(("put", [b"key"], rev_key(rev), kv))
        ops.append(("put", [b"meta"], b"consistent_index", (ETCD_INDEX + i).to_bytes(8, "big")))
    return ops


#: name -> (start file, commits)
HISTORIES = {
    "blobs": (oracle.fixture("freed"), _blob_ops()),
    "nested": (oracle.fixture("nofreelist"), _nested_ops()),
    "page16k": (oracle.fixture("page16k"), _page16k_ops()),
    "etcd": (REPO / "fixtures" / "etcd" / "etcd-3.5.db", _etcd_ops()),
}

KINDS = ("lost", "partial-even", "partial-odd", "torn", "torn-tree", "zeroed",
         "meta-zeroed", "meta-old-sector", "live-copy")
#: run by test_lost_growth_keeps_a_whole_commit, on the commits that grew the file
GROWTH = "lost-growth"

# Crash cases where repair keeps neither commit N-1's nor commit N's
# records (boltfix 5ae507d).  In every one bbolt 1.3.6 itself opens the same
# records; boltfix takes them by rule 1 ("the newest commit's tree is
# whole"), and ``check`` exits 0 (1 for the two freelist cases), ``repair``
# exits 0 with ``lost_data`` false.
_OLDER_TREE = ("lost write: the pages commit N wrote still hold the pages an older commit "
               "wrote there, a well-formed tree (with, in a synced file, that commit's own "
               "freelist); meta N's tree reads as commit {k} and commits.choose keeps it by "
               "rule 1 instead of rolling back to the whole tree of meta N-1")
_STALE_SUBTREE = ("NoFreelistSync lost write: a bucket's root leaf commit N rewrote still holds "
                  "an older leaf of another bucket, records and all ({what}); it points at no "
                  "page of meta N-1's tree (every page both trees reach has the same bucket in "
                  "both), so neither a freelist (none) nor the pages both trees share prove it "
                  "stale: rule 1 keeps a tree no commit held instead of meta N-1's whole tree")
_PROMOTED = ("NoFreelistSync lost write: meta N's root page still holds an old leaf of "
             "bucket 'fresh' (bucket entries only); taken as the root, its sub-buckets 'sub' "
             "and 'sub2' become the top level: 5 of 1221 records kept, check says OK, repair "
             "exits 0, though meta N-1's tree is whole.  The page 'sub' names is fresh/sub's "
             "root in meta N-1's tree: the same bucket name under another parent, which is "
             "what bbolt 1.4's MoveBucket leaves in a healthy file; and a page the two trees "
             "share in different places does not tell which tree is the mix (a later commit "
             "that crashed before its meta, or a live copy, overwrites the pages commit N "
             "freed, leaving meta N-1's tree mixed the same way)")
_ONE_WAY = ("lost pages leave meta N's tree reaching an older leaf of 'blobs' (old values of "
            "k004, k005); its freelist disagrees one way only (unreachable-unfreed 11), which "
            "commits._stale_reach does not count as proof: judged whole, records of no commit "
            "kept")
_ETCD_OLDER = ("etcd, commit N's pages written but not its meta (the plain crash inside "
               "Commit): bbolt opens meta N-1; meta N-2's tree, whose pages commit N reused "
               "(freed by N-1), reads as commit N's whole tree with a higher consistent_index. "
               "The two trees cannot tell this from N-1's writes lost under an older tree: "
               "commits._etcd_facts_disagree takes the whole tree further on (etcd starts from "
               "either, replaying its WAL above that tree's consistent_index) and {what}")
KNOWN: Dict[tuple, str] = {
    ("etcd", 1, "meta-old-sector"): _ETCD_OLDER.format(
        what="keeps commit N's records"),
    ("etcd", 6, "meta-old-sector"): _ETCD_OLDER.format(
        what="keeps commit N's records"),
    ("blobs", 8, "lost"): _OLDER_TREE.format(k="N-2"),
    ("blobs", 9, "lost"): _OLDER_TREE.format(k="N-2"),
    ("blobs", 10, "lost"): _OLDER_TREE.format(k="N-2"),
    ("blobs", 9, "partial-even"): _ONE_WAY,
    ("nested", 5, "lost"): _OLDER_TREE.format(k="N-2"),
    ("nested", 5, "partial-even"): _OLDER_TREE.format(k="N-2"),
    ("nested", 12, "lost"): _OLDER_TREE.format(k="N-3: the bucket 'doomed' commit N-1 "
                                                  "deleted comes back, 100 records"),
    ("nested", 12, "partial-odd"): _OLDER_TREE.format(k="N-3: the bucket 'doomed' commit "
                                                         "N-1 deleted comes back"),
    ("nested", 1, "partial-even"): _STALE_SUBTREE.format(
        what="474 of 1294 records, old 'doomed' keys under 'nested'"),
    ("nested", 2, "partial-even"): _STALE_SUBTREE.format(what="479 of 1295 records"),
    ("nested", 3, "partial-even"): _STALE_SUBTREE.format(
        what="1346 records, 49 keys of 'level4' under 'fresh'"),
    ("nested", 4, "partial-odd"): _STALE_SUBTREE.format(what="1305 records, 8 keys of 'level2' "
                                                             "under 'fresh'"),
    ("nested", 8, "partial-odd"): _STALE_SUBTREE.format(
        what="430 of 1222 records, 'live' keys under 'nested'"),
    ("nested", 9, "torn-tree"): ("NoFreelistSync torn leaf: the page's bytes past 512 are "
                                 "N-1's, the leaf still reads as well formed, rule 1 keeps "
                                 "1220 records (N-1 has 1223, N 1221): neither commit"),
    ("nested", 10, "lost"): _PROMOTED,
    ("nested", 10, "partial-even"): _PROMOTED,
    # the same two limits, met again by the 60 KB puts that grow the file
    ("blobs", 18, "partial-even"): ("lost pages leave meta N's tree reaching an older "
                                    "overflow run of 'blobs' (grow-01's pages): rule 1 keeps "
                                    "385 records (N-1 has 386, N 387): neither commit"),
    ("nested", 13, "lost"): _OLDER_TREE.format(k="N-2"),
    ("nested", 13, "partial-even"): _OLDER_TREE.format(k="N-2"),
    ("nested", 13, "partial-odd"): _STALE_SUBTREE.format(what="1134 records, 13 keys of "
                                                            "older commits' pages"),
    ("nested", 14, "lost"): _OLDER_TREE.format(k="N-2"),
    ("nested", 14, "partial-even"): _OLDER_TREE.format(k="N-2"),
}


@dataclass
class History:
    """The bytes of the file after each commit (0: the start) and real
    bbolt's records of each."""

    captures: List[bytes]
    records: List[list]


_BUILT: Dict[str, History] = {}


def records_of(path) -> list:
    """Real bbolt's records of ``path``: (path, key, type, value, sequence)."""
    return [(tuple(e["path"]), e["key"], e["type"], e["value"], e.get("sequence"))
            for e in oracle.oracle_dump(path, timeout=60)]


def history(name: str, tmp_path_factory) -> History:
    """The history ``name``, committed by real bbolt once per session."""
    if name not in _BUILT:
        start, ops = HISTORIES[name]
        d = tmp_path_factory.mktemp(f"crash-{name}")
        f = d / "db"
        shutil.copyfile(start, f)
        captures = [f.read_bytes()]
        for op in ops:
            if op[0] == "put":
                oracle.put(f, op[1], op[2], op[3])
            else:
                oracle.delete_keys(f, op[1], op[2])
            captures.append(f.read_bytes())
        records = []
        for i, c in enumerate(captures):
            p = d / f"capture-{i}.db"
            p.write_bytes(c)
            records.append(records_of(p))
        _BUILT[name] = History(captures, records)
    return _BUILT[name]


#: seconds real bbolt gets to read a crash file, and the most it may print
#: (a zeroed or stale page can send its dump round a loop for ever)
VIEW_TIMEOUT = 5
VIEW_MAX_OUTPUT = 64 << 20


def _view_limits() -> None:
    """Cap a bbolt dump's memory as ``oracle_check`` does, and its output."""
    oracle._limit_memory()
    resource.setrlimit(resource.RLIMIT_FSIZE, (VIEW_MAX_OUTPUT, VIEW_MAX_OUTPUT))


def bbolt_view(path) -> Optional[list]:
    """What real bbolt reads from ``path`` (its newest valid meta), or None
    when it cannot (an error, a crash, a loop)."""
    with tempfile.TemporaryFile() as f:
        try:
            proc = subprocess.run([str(oracle.boltgen_path()), "dump", str(path)],
                                  stdout=f, stderr=subprocess.DEVNULL, timeout=VIEW_TIMEOUT,
                                  preexec_fn=_view_limits)
        except subprocess.TimeoutExpired:
            return None
        if proc.returncode != 0:
            return None
        f.seek(0)
        text = f.read()
    return [(tuple(e["path"]), e["key"], e["type"], e["value"], e.get("sequence"))
            for e in oracle.parse_dump(text)]


def _ident(r: tuple) -> tuple:
    """A record without its value: bucket path, key, type, sequence."""
    return r[0], r[1], r[2], r[4]


def loss_counts(newer: list, kept: list) -> dict:
    """Records ``newer`` adds, changes and deletes against ``kept``, by
    bucket path and key (bucket entries included)."""
    a = {r[0] + (r[1],): r[3] for r in newer}
    b = {r[0] + (r[1],): r[3] for r in kept}
    return {"added": len(a.keys() - b.keys()), "deleted": len(b.keys() - a.keys()),
            "changed": sum(1 for k in a.keys() & b.keys() if a[k] != b[k])}


def repair_crash(prev_capture: bytes, cur_capture: bytes, prev: list, cur: list, kind: str,
                 n: int, tmp_path) -> tuple:
    """Mix a crash of commit ``n`` from two real captures one commit apart
    (:func:`support.crashmix.crash`), repair it, and hold the output to the
    crash guarantees: it passes the real bbolt's check; its records are
    exactly ``prev``'s or ``cur``'s (real bbolt's records of the captures),
    or, for a tear inside value bytes alone that no structure shows, what
    bbolt itself reads; lost writes and zeroed pages roll back; a rollback
    says what the passed-over commit held.  Returns (repair's JSON report,
    the output's path, its records)."""
    src = tmp_path / "crashed.db"
    src.write_bytes(crash(prev_capture, cur_capture, kind, n))
    out = tmp_path / "fixed.db"
    rep = repair(src, out).to_json()
    res = oracle.oracle_check(out)
    assert res.ok, (res.status, res.messages[:5])
    got = records_of(out)
    rule = rep["commits"]["rule"]
    # what bbolt itself reads, only where it decides (a torn page's crash
    # file can send bbolt's dump round a loop until VIEW_TIMEOUT)
    value_only_tear = (kind.startswith("torn") and rule == "newest"
                       and [_ident(r) for r in got] == [_ident(r) for r in cur]
                       and got == bbolt_view(src))
    assert got in (prev, cur) or value_only_tear, (rule, rep["commits"]["reason"])
    if kind in ("lost", "zeroed"):
        assert rule == "rolled-back" and got == prev, rep["commits"]["reason"]
    if rule == "rolled-back" and prev != cur:
        lost = rep["commits"]["newer_commit"]
        assert lost["added"] + lost["changed"] + lost["deleted"] or lost["unread"], lost
    return rep, out, got
