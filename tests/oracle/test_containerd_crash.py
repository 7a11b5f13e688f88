"""Crashes of containerd's ``meta.db``, mixed from real commits, and the
crafted damage kinds aimed at its content blobs.

``containerdgen gen OUT --capture-dir DIR`` (containerd v2.4.2's own
``core/metadata``) copies the file after every operation it asks of
containerd: creating a namespace, a lease, content blobs, an image, a
snapshot, a container.  Two consecutive captures whose newest metas' txids
differ by one are exactly one bbolt commit apart; each such pair is mixed
the ways a crash mixes them (:mod:`support.crashmix`: lost writes, every
other page lost, a torn tree page, zeroed pages, the newest meta zeroed, a
copy made while containerd wrote, the last growth lost).  Nothing is
hand-built: every page of a crash file is one containerd's bbolt wrote.

For each case:

* the repaired file passes the real bbolt's ``tx.Check``;
* its records are exactly those of one of the two commits, as the real
  bbolt dumps them (a tear inside value bytes alone, which no structure
  shows, is the stated limit: then they are what bbolt itself reads);
* a rolled-back commit is reported as lost, with what it added, changed or
  deleted;
* containerd's own package opens the repaired file and lists its images and
  containers, never one that was not written.

The damage kinds of :mod:`support.damage` that apply to any paged bucket
are aimed at ``v1/default/content/blob`` of a 60-image file: the repaired
copy passes the real check, holds no record the intact file did not hold
in the same bucket, reports what it lost (a whole blob in containerd's
terms), and containerd lists it.
"""

from __future__ import annotations

import subprocess
from typing import List

import pytest

from boltfix.repair import repair
from support import containerdgen, damage, oracle
from support.bbolthistory import records_of, repair_crash
from support.crashmix import applies, meta_txids, page_size

#: the crash kinds mixed per commit pair (``torn`` at a page chosen by the
#: pair's number is covered by ``torn-tree``, which tears the fullest page)
KINDS = ("lost", "partial-even", "torn-tree", "zeroed", "meta-zeroed", "live-copy",
         "lost-growth")
#: how many single-commit pairs are tried (spread over the history)
PAIRS = 6


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """containerd's captures, and the single-commit pairs among them:
    ``(captures, records, pairs)``."""
    gen = containerdgen.gen_path()
    d = tmp_path_factory.mktemp("containerd-history")
    caps = d / "captures"
    caps.mkdir()
    proc = subprocess.run([str(gen), "gen", str(d / "meta.db"), "--images", "2",
                           "--capture-dir", str(caps)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = sorted(caps.glob("*.db"))
    captures = [f.read_bytes() for f in files]
    txids = [max(meta_txids(c, page_size(c))) for c in captures]
    single = [i for i in range(1, len(captures)) if txids[i] == txids[i - 1] + 1]
    grew = [i for i in single if len(captures[i]) > len(captures[i - 1])]
    # spread over the history; a lost growth needs a commit that grew the file
    step = max(1, len(single) // PAIRS)
    chosen = single[::step][:PAIRS]
    records = {i: records_of(files[i]) for n in chosen + grew for i in (n - 1, n)}
    return captures, records, chosen, grew


def _cases() -> List[tuple]:
    return [(k, kind) for k in range(PAIRS) for kind in KINDS]


@pytest.mark.parametrize("k,kind", _cases())
def test_a_crash_keeps_a_whole_commit_containerd_lists(k, kind, history, tmp_path):
    """A crash of one containerd commit: repair keeps one whole commit, says
    so, and containerd lists what it holds."""
    captures, records, chosen, grew = history
    assert len(chosen) == PAIRS, f"only {len(chosen)} single-commit pairs"
    n = chosen[k]
    if kind == "lost-growth":  # the commits that grew the file, in turn
        assert grew, "no single commit grew the file"
        n = grew[k % len(grew)]
        assert applies(captures[n - 1], captures[n], kind)
    _rep, out, _got = repair_crash(captures[n - 1], captures[n], records[n - 1], records[n],
                                   kind, n, tmp_path)
    listed = containerdgen.read(out)["namespaces"]
    wrote = containerdgen.read(_capture(tmp_path, captures[n]))["namespaces"]
    for ns, objs in listed.items():
        assert set(objs["images"]) <= set(wrote.get(ns, {}).get("images", {})), ns
        assert set(objs["containers"]) <= set(wrote.get(ns, {}).get("containers", {})), ns


def _capture(tmp_path, data: bytes):
    """A capture's bytes as a file containerd can open."""
    p = tmp_path / "capture.db"
    p.write_bytes(data)
    return p


def test_captures_are_what_containerd_wrote(history, tmp_path):
    """The last capture is the file containerdgen finished: containerd
    lists the images it reported writing."""
    captures = history[0]
    last = _capture(tmp_path, captures[-1])
    listed = containerdgen.read(last)["namespaces"]
    assert set(listed["default"]["images"]) == {f"docker.io/library/app{i}:latest"
                                                for i in range(2)}


# ---------------------------------------------------------------- damage kinds
#: bucket blob of namespace default: 60 images' blobs fill several leaves
BLOBS = (b"v1", b"default", b"content", b"blob")
#: damage.KINDS that apply to a paged bucket of any bbolt file, aimed at BLOBS
DAMAGE = ("zeroed-page", "page-self-id-mismatch", "branch-to-self", "branch-past-pgid",
          "branch-past-eof", "branch-duplicate-child", "branch-count-too-large",
          "leaf-count-zero", "leaf-count-too-large", "leaf-count-and-pos-damaged",
          "leaf-pos-out-of-page", "leaf-ksize-out-of-page", "leaf-vsize-out-of-page",
          "zero-length-key", "keys-swapped", "key-outside-ancestor-range")


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A meta.db of 60 images in namespace default: (path, what containerd
    wrote, real bbolt's records of it)."""
    path = tmp_path_factory.mktemp("containerd-big") / "meta.db"
    wrote = containerdgen.make(path, "--images", "60")
    return path, wrote, records_of(path)


@pytest.mark.parametrize("kind", DAMAGE)
def test_damage_to_the_blobs_keeps_only_what_was_there(kind, big, tmp_path):
    """A damage kind in the content blobs' bucket: the repaired copy passes
    bbolt's check, holds only records the intact file held (in their own
    buckets), reports the loss (in containerd's terms when a whole object
    went), and containerd lists it."""
    path, wrote, intact = big
    src = damage.copy_fixture(str(path), tmp_path, "damaged.db")
    damage.KINDS[kind].fn(src, BLOBS)
    out = tmp_path / "fixed.db"
    rep = repair(src, out).to_json()
    res = oracle.oracle_check(out)
    assert res.ok, (res.status, res.messages[:5])
    got = records_of(out)
    placed = {(r[0], r[1]): r for r in intact}
    stray = [r for r in got if placed.get((r[0], r[1])) != r]
    assert not stray, stray[:3]
    missing = len(intact) - len(got)
    if missing:
        assert rep["lost_data"], rep["dropped_counts"]
        gone = {r[0][:5] for r in intact if r not in got and len(r[0]) >= 5}
        if gone:  # whole blobs' buckets went: said in containerd's terms
            assert {"namespace": "default", "object": "blob"} in rep["containerd"]["lost"]["kinds"]
    listed = containerdgen.read(out)["namespaces"]
    for ns, objs in listed.items():
        assert set(objs["images"]) <= set(wrote["namespaces"][ns]["images"]), ns
        assert set(objs["containers"]) <= set(wrote["namespaces"][ns]["containers"]), ns
