"""boltfix against the bbolt versions people run: 1.3.6 (Debian, what the
other oracle tests use), 1.4.3 (etcd 3.6's) and 1.5.0, each built from its
own module (``support.oracle.BBOLT_VERSIONS``).

* files written by each version (synced freelist, NoFreelistSync, the
  hashmap freelist) are read exactly: check finds nothing, dump equals that
  version's own read, inspect its page size, txid and freelist mode;
* boltfix's repaired copy of each, and of every crafted damage kind, passes
  every version's ``tx.Check`` and reads the same in each;
* every problem 1.4.3's and 1.5.0's ``tx.Check`` report on the damage kinds,
  boltfix reports too (1.5.0 recovers panics into messages: those name a
  page, and boltfix must name it).
"""

from __future__ import annotations

import struct
from concurrent.futures import ThreadPoolExecutor

import pytest

from boltfix.repair import repair
from support import damage, oracle
from support.checks import explain_any, fmt, run_check
from support.cli import hexdump_records, inspect_json, live

VERSIONS = oracle.BBOLT_VERSIONS
NEWER = tuple(v for v in VERSIONS if v != oracle.DEFAULT_VERSION)
NO_FREELIST = 0xFFFFFFFFFFFFFFFF

#: file name -> boltgen make arguments: each shape as the version writes it
#: by default, and the freelist variants bbolt has on disk
WRITTEN = {
    "nested": ("nested",),
    "overflow": ("overflow",),
    "freed": ("freed",),
    "nofreelist": ("nofreelist",),
    "page16k": ("page16k",),
    "freed-hashmap": ("freed", "--freelist", "map"),
    "freed-hashmap-nofreelist": ("freed", "--freelist", "map", "--nofreelist"),
    "page16k-nofreelist": ("page16k", "--nofreelist"),
}

#: seconds a version's check gets on a damaged file before it counts as a hang
ORACLE_TIMEOUT = 5


@pytest.mark.parametrize("version", VERSIONS)
def test_boltgen_links_the_version(version):
    """The module file chose the version (Debian's source has no module
    version: it is built in GOPATH mode)."""
    want = "" if version == "1.3.6" else "v" + version
    assert oracle.linked_version(version) == want


@pytest.mark.parametrize("shape", oracle.SHAPES)
@pytest.mark.parametrize("version", NEWER)
def test_committed_fixture_reads_the_same_in_newer_bbolt(version, shape, oracle_dumps):
    """The committed (1.3.6-written) fixtures: the newer check passes them
    and boltfix's dump equals the newer version's read too."""
    path = oracle.fixture(shape)
    assert oracle.oracle_check(path, version=version).ok
    recs, _ = hexdump_records(path)
    assert live(recs) == oracle.oracle_dump(path, version=version) == oracle_dumps[shape]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """(version, name) -> a file written by that bbolt version."""
    root = tmp_path_factory.mktemp("written")
    cache = {}

    def get(version, name):
        if (version, name) not in cache:
            shape, *args = WRITTEN[name]
            out = root / f"{version}-{name}.db"
            cache[version, name] = oracle.make_shape(shape, out, *args, version=version)
        return cache[version, name]
    return get


def _active_freelist(path) -> int:
    """The freelist field of the meta with the higher txid, from the bytes."""
    data = path.read_bytes()
    ps = struct.unpack_from("<I", data, 24)[0]
    metas = [struct.unpack_from("<QQ", data, i * ps + 16 + 32) for i in (0, 1)]  # freelist, pgid
    txids = [struct.unpack_from("<Q", data, i * ps + 16 + 48)[0] for i in (0, 1)]
    return metas[txids.index(max(txids))][0]


@pytest.mark.parametrize("name", list(WRITTEN))
@pytest.mark.parametrize("version", VERSIONS)
def test_file_written_by_version_is_read_exactly(version, name, written):
    path = written(version, name)
    assert oracle.oracle_check(path, version=version).ok
    truth = oracle.oracle_dump(path, version=version)
    result = run_check(path)
    assert result.clean, fmt(result)
    recs, r = hexdump_records(path)
    assert live(recs) == truth and r.stderr == ""
    info = inspect_json(path)
    facts = oracle.info(path, version=version)
    assert info["file"]["page_size"] == facts["page_size"]
    in_use = info["metas"][info["meta_in_use"]]
    assert in_use["txid"] == facts["txid"]
    assert in_use["freelist_synced"] == (_active_freelist(path) != NO_FREELIST)
    assert in_use["freelist_synced"] == ("--nofreelist" not in WRITTEN[name]
                                         and name != "nofreelist")
    assert info["problems"]["total"] == 0


@pytest.mark.parametrize("name", ["freed", "freed-hashmap-nofreelist", "page16k"])
@pytest.mark.parametrize("version", NEWER)
def test_repaired_copy_opens_in_every_version(version, name, written, tmp_path):
    """boltfix's copy of a newer version's file passes every version's
    check and reads as the input did."""
    src = written(version, name)
    out = tmp_path / "fixed.db"
    rep = repair(src, out).to_json()
    assert not rep["lost_data"], rep
    want = oracle.oracle_dump(src, version=version)
    for v in VERSIONS:
        res = oracle.oracle_check(out, version=v)
        assert res.ok, (v, res.status, res.messages[:5], res.stderr[-300:])
        assert oracle.oracle_dump(out, version=v) == want, v


# ---------------------------------------------------------------- damage
@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """Every damage kind applied once, and boltfix's repaired copy of each."""
    oracle.boltgen_path()
    made = {}
    for name, (path, d) in damage.apply_every_kind(tmp_path_factory.mktemp("damage-versions")).items():
        made[name] = (path, d, path.parent / "fixed.db")
        repair(path, made[name][2])
    return made


@pytest.mark.parametrize("version", NEWER)
def test_repaired_damage_passes_newer_check(version, damaged):
    """The repaired copy of every damage kind passes 1.4.3's and 1.5.0's
    ``tx.Check`` and reads there as in 1.3.6."""
    outs = {k: out for k, (_, _, out) in damaged.items()}
    with ThreadPoolExecutor(max_workers=4) as ex:
        checks = dict(zip(outs, ex.map(lambda p: oracle.oracle_check(p, 20, version),
                                       outs.values())))
    bad = {k: (c.status, c.messages[:3]) for k, c in checks.items() if not c.ok}
    assert not bad
    for kind, out in outs.items():
        assert oracle.oracle_dump(out, version=version) == oracle.oracle_dump(out), kind


@pytest.fixture(scope="module")
def newer_checks(damaged):
    """version -> kind -> that version's check of the damaged file."""
    out = {}
    with ThreadPoolExecutor(max_workers=4) as ex:
        for v in NEWER:
            futures = {k: ex.submit(oracle.oracle_check, p, ORACLE_TIMEOUT, v)
                       for k, (p, _, _) in damaged.items()}
            out[v] = {k: f.result() for k, f in futures.items()}
    return out


@pytest.mark.parametrize("version", NEWER)
def test_boltfix_reports_what_newer_bbolt_reports(version, damaged, newer_checks):
    """Whatever 1.4.3 or 1.5.0 does on a damage kind, boltfix reports it;
    where their check reports errors about the meta in use, each one is
    accounted for by a boltfix finding."""
    missing, statuses = {}, {}
    for kind, (path, d, _) in damaged.items():
        o = newer_checks[version][kind]
        statuses[o.status] = statuses.get(o.status, 0) + 1
        result = run_check(path)
        assert not result.clean, kind
        if o.status == "errors" and d.same_meta:
            lost = [m for m in o.messages if not explain_any(m, result, path)]
            if lost:
                missing[kind] = (lost[:3], fmt(result))
    assert not missing, missing
    # the kinds really exercise the newer check: it reports, and it dies
    assert statuses.get("errors", 0) >= 10, statuses
