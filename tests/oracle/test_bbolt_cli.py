"""bbolt 1.5.0's own command line (``go.etcd.io/bbolt/cmd/bbolt``, built by
``support.oracle.bbolt_cli_path``) on boltfix's repaired output: ``bbolt
check`` passes it, where it fails (or dies on) the damaged input, and bbolt's
own ``surgery`` cannot do better than repair on these kinds
(``benchmarks/surgery_compare.py`` tabulates every kind and crash case).
"""

from __future__ import annotations

import subprocess

import pytest

from boltfix.repair import repair
from support import damage, oracle
from support.checks import fmt, run_check
from support.cli import hexdump_records, live

#: kinds bbolt's check reports, crashes or hangs on, one of each family:
#: a zeroed leaf, a pointer loop, a truncated file, keys out of order, a
#: bad freelist, a damaged newest meta
KINDS = ("zeroed-page", "branch-to-self", "file-truncated", "keys-swapped",
         "freelist-duplicate", "meta-root-out-of-range")


def bbolt_check(path) -> str:
    """``bbolt check PATH``: "ok", "errors", or "dies" (a crash or a hang)."""
    try:
        r = oracle.bbolt_cli("check", path, timeout=3)
    except subprocess.TimeoutExpired:
        return "dies"
    if r.returncode == 0 and r.stdout.strip().endswith("OK"):
        return "ok"
    return "dies" if r.returncode < 0 or "fatal error" in r.stderr else "errors"


def test_cli_is_the_version_built():
    """The binary is bbolt's CLI from the 1.5.0 module (its own version
    string says 1.4.0-alpha.0: the release did not bump it), linked with the
    Go module bbolt 1.5.0, as boltgen at that version says."""
    r = oracle.bbolt_cli("version")
    assert r.returncode == 0 and r.stdout.startswith("bbolt Version:"), r.stdout
    assert oracle.linked_version(oracle.CLI_VERSION) == "v" + oracle.CLI_VERSION
    assert bbolt_check(oracle.fixture("nested")) == "ok"


@pytest.mark.parametrize("kind", KINDS)
def test_bbolt_check_passes_repaired_output(kind, tmp_path):
    k = damage.KINDS[kind]
    src = damage.copy_fixture(k.shape, tmp_path, "damaged.db")
    k.apply(src)
    assert bbolt_check(src) != "ok", "the damage must be one bbolt's check sees"
    out = tmp_path / "fixed.db"
    rep = repair(src, out).to_json()
    assert bbolt_check(out) == "ok", rep["verdict"] if "verdict" in rep else rep
    # bbolt's own surgery: revert-meta-page keeps no more than repair does
    reverted = tmp_path / "reverted.db"
    r = oracle.bbolt_cli("surgery", "revert-meta-page", src, "--output", reverted)
    if r.returncode == 0 and bbolt_check(reverted) == "ok":
        theirs = oracle.oracle_dump(reverted, version=oracle.CLI_VERSION)
        ours = oracle.oracle_dump(out, version=oracle.CLI_VERSION)
        intact = oracle.oracle_dump(oracle.fixture(k.shape), version=oracle.CLI_VERSION)
        assert sum(e in intact for e in ours) >= sum(e in intact for e in theirs)


@pytest.mark.parametrize("surgery", [("freelist", "abandon"), ("freelist", "rebuild"),
                                     ("revert-meta-page",)])
@pytest.mark.parametrize("shape", ["freed", "nofreelist"])
def test_files_bbolt_surgery_writes_are_read_exactly(shape, surgery, tmp_path):
    """What bbolt 1.5.0's surgery writes (a meta without a freelist, a
    rebuilt freelist, two metas of one txid) is a file boltfix reads as
    bbolt does, and finds clean when bbolt's check does."""
    out = tmp_path / "out.db"
    r = oracle.bbolt_cli("surgery", *surgery, oracle.fixture(shape), "--output", out)
    if surgery == ("freelist", "rebuild") and shape == "freed":
        # bbolt rebuilds only a file without a freelist (abandon first)
        assert r.returncode != 0 and "already has freelist" in r.stderr, r.stderr
        return
    assert r.returncode == 0, r.stderr
    assert bbolt_check(out) == "ok"
    result = run_check(out)
    assert result.clean, fmt(result)
    recs, _ = hexdump_records(out)
    assert live(recs) == oracle.oracle_dump(out, version=oracle.CLI_VERSION)
