#!/usr/bin/env python3
"""Benchmark boltfix against the real bbolt on one big file.

    python benchmarks/bench.py                      # default: 20 MB, best of 3
    python benchmarks/bench.py --size-mb 200
    python benchmarks/bench.py --size-mb 2048 --runs 1
    python benchmarks/bench.py --keys 100000 --value-size 1024
    python benchmarks/bench.py --scaling            # 200 MB and 2 GB, side by side
    python benchmarks/bench.py --smoke              # tiny, one run, for CI
    python benchmarks/bench.py --shape etcd-big --size-mb 1024   # an etcd-shaped file
    python benchmarks/bench.py --shape subs --keys 300000        # 300,000 sub-buckets
    python benchmarks/bench.py --only raft          # a 100 MB raft-boltdb store only
    python benchmarks/bench.py --only containerd    # a 100 MB containerd meta.db only

The test file is written by the real bbolt (``boltgen make big``: one bucket
``bench`` of N 8-byte keys with 1 KB values, fill 100%; or with ``--shape
etcd-big`` etcd's ``key`` bucket of revision keys holding mvccpb.KeyValue
messages, plus ``meta``, which boltfix decodes and checks record by record;
or with ``--shape subs`` bucket ``parent`` of N sub-buckets, most of them
small and inline, some empty, paged or nested, plain keys between them).  Then, on that same
file and best of ``--runs``:

    boltfix check                                   vs  boltgen check   (tx.Check())
    boltfix dump --format jsonl --encoding hex      vs  boltgen dump    (stdout -> /dev/null)
    boltfix repair --out NEW                        vs  boltgen compact SRC NEW

For each command it records the wall time, the peak RssAnon (anonymous
memory: the process's own heap, sampled from /proc/PID/status) and the peak
VmHWM (resident set including the file's mapped pages, from wait4's
ru_maxrss).  Both tools read the file through mmap, so VmHWM grows with the
file for both; RssAnon is what each tool itself allocates.

With ``raft`` in ``--only`` (the default), a HashiCorp raft-boltdb store of
``--app-mb`` (100 MB; 2 MB with ``--smoke``) is written by the real
raft-boltdb (``fixtures/raftgen``: logs of 1 KB of Data, StoreLogs in
batches of 10) and, on it, ``boltfix dump`` (each ``logs`` record decoded as
a ``raft.Log``) is timed against ``boltfix dump --decode none``, the runs
alternated, every run reported: the issue's target is ``dump`` within 2x of
``dump --decode none``.  With ``containerd`` (the default too), the same
on a containerd ``meta.db`` of that size written by containerd's own
``core/metadata`` (``fixtures/containerdgen``).  Without Go, these pairs are
skipped with a message.

The page cache is warm for every run (the file was just written, and the
first run of each command reads it again), so these are CPU times of the
tools, not disk times.

Files go to a temporary directory (or ``--workdir``) and are deleted
afterwards, unless ``--keep FILE`` names the test file: an existing FILE is
reused as is, a missing one is made there and kept.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # tests/support

#: bytes of file per key with 1 KB values (3 records per 4 KB leaf, measured)
BYTES_PER_KEY_1K = 1366
DEFAULT_SIZE_MB = 20
SMOKE_KEYS = 20_000
#: bytes of raft-boltdb file per log with 1 KB of Data (raftgen, measured)
BYTES_PER_RAFT_LOG_1K = 2126
DEFAULT_APP_MB = 100
RAFT_DATA_SIZE = 1024
#: bytes of containerd meta.db per image per namespace (containerdgen --images,
#: measured: 2,000 -> 48 MB, 4,165 -> 80 MB)
BYTES_PER_CONTAINERD_IMAGE = 20_140
SMOKE_APP_MB = 2
#: the issue's target: dump of a raft or containerd file within this factor of --decode none
APP_TARGET = 2.0
SAMPLE_INTERVAL = 0.005


# ---------------------------------------------------------------- measuring
@dataclass
class Measure:
    seconds: float  # wall clock
    cpu: float  # user + system CPU seconds (less sensitive to a busy machine)
    rss_anon_kb: int  # peak RssAnon seen while sampling
    hwm_kb: int  # peak resident set (VmHWM / ru_maxrss)
    returncode: int
    stderr: str = ""
    #: every run's (wall, user CPU, system CPU) seconds, in order: the machine
    #: is noisy, so the table shows them all beside the best
    runs: List[tuple] = field(default_factory=list)
    user: float = 0.0  # user and system CPU of the run with the least CPU
    sys: float = 0.0


def _status_kb(pid: int, fields=("RssAnon:", "VmHWM:")) -> dict:
    out = {}
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                for name in fields:
                    if line.startswith(name.encode()):
                        out[name] = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    return out


def run_measured(argv: List[str], stdout=subprocess.DEVNULL) -> Measure:
    """Run argv; wall time, peak RssAnon (sampled) and peak RSS (exact)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.PIPE)
    peak = {"RssAnon:": 0, "VmHWM:": 0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            for k, v in _status_kb(proc.pid).items():
                if v > peak[k]:
                    peak[k] = v
            done.wait(SAMPLE_INTERVAL)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    err_chunks = []
    reader = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True)
    reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    done.set()
    sampler.join()
    reader.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    hwm = max(peak["VmHWM:"], usage.ru_maxrss)  # ru_maxrss is in KB on Linux
    cpu = usage.ru_utime + usage.ru_stime
    return Measure(elapsed, cpu, peak["RssAnon:"], hwm, proc.returncode,
                   b"".join(err_chunks).decode(errors="replace"),
                   user=usage.ru_utime, sys=usage.ru_stime)


def best_of(runs: int, make_argv, expect=(0,), cleanup=None) -> Measure:
    """Best (lowest) times of ``runs``; memory peaks are the max over runs."""
    best: Optional[Measure] = None
    anon = hwm = 0
    cpu, user, sys_ = float("inf"), 0.0, 0.0
    every = []
    for _ in range(runs):
        if cleanup:
            cleanup()
        m = run_measured(make_argv())
        if m.returncode not in expect:
            raise SystemExit(f"command failed (exit {m.returncode}): {' '.join(make_argv())}\n"
                             f"{m.stderr[-2000:]}")
        anon, hwm = max(anon, m.rss_anon_kb), max(hwm, m.hwm_kb)
        if m.cpu < cpu:
            cpu, user, sys_ = m.cpu, m.user, m.sys
        every.append((m.seconds, m.user, m.sys))
        if best is None or m.seconds < best.seconds:
            best = m
    best.rss_anon_kb, best.hwm_kb, best.cpu = anon, hwm, cpu
    best.user, best.sys = user, sys_
    best.runs = every
    return best


# ---------------------------------------------------------------- tools
def boltgen(version: str = "1.3.6") -> str:
    """boltgen linked against bbolt ``version`` (tests/support/oracle.py
    builds it once per source and version)."""
    from support import oracle  # builds fixtures/boltgen once per main.go content

    try:
        built = oracle._build(version)
    except BaseException as exc:  # pytest.fail raises outside pytest too
        raise SystemExit(f"cannot build boltgen: {exc}")
    if isinstance(built, str):
        raise SystemExit(f"cannot build boltgen: {built}")
    return str(built)


BOLTFIX_CMD: Optional[List[str]] = None  # --boltfix


def boltfix_cmd() -> List[str]:
    if BOLTFIX_CMD:
        return BOLTFIX_CMD
    # The entry point beside this interpreter, not a shim found on PATH
    # (a pyenv shim alone adds ~0.1 s to every run).
    exe = Path(sys.executable).parent / "boltfix"
    if exe.is_file() and os.access(exe, os.X_OK):
        return [str(exe)]
    return [sys.executable, "-m", "boltfix"]


def measured() -> str:
    """Which boltfix the runs time: where the command's ``import boltfix``
    leads (``python -m boltfix`` looks in the current directory first, then
    PYTHONPATH; the default entry point in PYTHONPATH, then the installed
    package, which may be another checkout than this script's)."""
    cmd = boltfix_cmd()
    if "-m" in cmd:  # the same interpreter, the same sys.path rules as -m
        probe = subprocess.run([cmd[0], "-c", "import boltfix; print(boltfix.__file__)"],
                               capture_output=True, text=True)
        origin = probe.stdout.strip() or None
    else:
        import importlib.util

        spec = importlib.util.find_spec("boltfix")
        origin = spec.origin if spec is not None else None
    where = Path(origin).parent if origin else None
    note = "" if where == REPO / "boltfix" else f", not this script's checkout ({REPO})"
    return f"{' '.join(cmd)} (imports {where}{note})"


def core() -> str:
    """Which walk boltfix runs: its C core, or pure Python (no compiler, or
    BOLTFIX_PURE_PYTHON=1, which this script passes on)."""
    proc = subprocess.run([sys.executable, "-c", "from boltfix import ccore; "
                           "print(ccore.speedups is not None)"], capture_output=True, text=True)
    if proc.stdout.strip() == "True":
        return "C core (boltfix._speedups)"
    return "pure Python (BOLTFIX_PURE_PYTHON set, or the C core not built)"


def dump_available() -> bool:
    proc = subprocess.run(boltfix_cmd() + ["dump", "--help"], capture_output=True, text=True)
    return proc.returncode == 0 and "--encoding" in proc.stdout


# ---------------------------------------------------------------- one size
@dataclass
class Result:
    keys: int
    value_size: int
    file_bytes: int
    make_seconds: Optional[float]  # None: an existing file was reused
    pairs: dict = field(default_factory=dict)  # name -> (boltfix Measure, bbolt Measure)
    notes: List[str] = field(default_factory=list)
    floor: Optional[Measure] = None  # cp FILE NEW && sync, beside repair


def _describe(gen: str, src: Path, keys: int, value_size: int):
    """(keys, value size) of an existing file, from bbolt's own stats."""
    import json

    proc = subprocess.run([gen, "info", str(src)], capture_output=True, text=True)
    if proc.returncode != 0:
        return keys, value_size
    buckets = json.loads(proc.stdout).get("buckets", {})
    stats = [b["stats"] for b in buckets.values()]
    n = sum(s["KeyN"] for s in stats)
    inuse = sum(s["LeafInuse"] for s in stats)
    # leaf bytes in use = 16/page + (16 + 8 + value) per key
    pages = sum(s["LeafPageN"] for s in stats)
    vsize = round((inuse - 16 * pages) / n) - 24 if n else value_size
    return n, vsize


def keys_for(size_mb: float, value_size: int) -> int:
    per_key = BYTES_PER_KEY_1K * max(value_size, 1) / 1024
    return max(1, int(size_mb * (1 << 20) / per_key))


def bench_one(keys: int, value_size: int, runs: int, workdir: Path, keep: Optional[Path],
              gen: str, shape: str = "big", only=("check", "dump", "repair"),
              compact: bool = True, others: Optional[dict] = None) -> Result:
    """Time boltfix against boltgen ``gen`` on one file (made, or ``keep``);
    ``others``: more bbolt versions (version -> boltgen), each timed on the
    same commands in the same run, as extra rows beside boltfix's."""
    src = keep if keep is not None else workdir / f"bench-{shape}-{keys}.db"
    t0 = time.perf_counter()
    if not src.exists():
        print(f"making {src} ({keys:,} keys x {value_size} B) with bbolt ...", flush=True)
        proc = subprocess.run([gen, "make", shape, str(src), "--keys", str(keys),
                               "--value-size", str(value_size)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"boltgen make failed: {proc.stderr}")
        made = time.perf_counter() - t0
    else:
        print(f"reusing {src}", flush=True)
        made = None
        keys, value_size = _describe(gen, src, keys, value_size)
    res = Result(keys, value_size, src.stat().st_size, made)
    bf = boltfix_cmd()
    out_bf = workdir / "repaired.db"
    out_bb = workdir / "compacted.db"

    def rm(*paths):
        return lambda: [p.unlink() for p in paths if p.exists()]

    # warm the page cache so the first timed command is not penalised
    with open(src, "rb") as f:
        while f.read(16 << 20):
            pass

    if "check" in only:
        print("  check ...", flush=True)
        res.pairs["check"] = (best_of(runs, lambda: bf + ["check", str(src)]),
                              best_of(runs, lambda: [gen, "check", str(src)]))
    if "dump" not in only:
        pass
    elif dump_available():
        print("  dump ...", flush=True)
        res.pairs["dump"] = (
            best_of(runs, lambda: bf + ["dump", "--format", "jsonl", "--encoding", "hex",
                                        str(src)]),
            best_of(runs, lambda: [gen, "dump", str(src)]))
        # boltfix's default encoding (text where printable, else hex), against
        # the same Go dump: not the pair, but what a user runs
        res.pairs["dump (auto)"] = (
            best_of(runs, lambda: bf + ["dump", "--format", "jsonl", str(src)]),
            res.pairs["dump"][1])
    else:
        res.notes.append("boltfix dump is not implemented yet: dump pair skipped")
    if "repair" in only:
        print("  repair / compact ...", flush=True)
        res.pairs["repair"] = (
            best_of(runs, lambda: bf + ["repair", str(src), "--out", str(out_bf)],
                    cleanup=rm(out_bf)),
            best_of(runs, lambda: [gen, "compact", str(src), str(out_bb)], cleanup=rm(out_bb))
            if compact else None)
        # the floor: the data movement repair needs, as a copy that lands on disk
        res.floor = best_of(runs, lambda: ["sh", "-c", f'cp "{src}" "{out_bf}" && sync'],
                            cleanup=rm(out_bf))
    for version, other in (others or {}).items():
        _other_rows(res, version, other, src, out_bb, runs, compact)
    rm(out_bf, out_bb)()
    if DAMAGED:
        for name, secs in damaged_repairs(src, workdir, runs):
            res.notes.append(f"boltfix repair of a damaged copy ({name}): {secs:.2f} s")
    if keep is None:
        src.unlink()
    return res


def _other_rows(res: Result, version: str, gen: str, src: Path, out_bb: Path, runs: int,
                compact: bool) -> None:
    """Rows ``NAME [bbolt VERSION]``: boltfix's measure of NAME beside the
    same bbolt command linked against another version."""
    def rm():
        if out_bb.exists():
            out_bb.unlink()

    commands = {"check": [gen, "check", str(src)], "dump": [gen, "dump", str(src)]}
    if compact:
        commands["repair"] = [gen, "compact", str(src), str(out_bb)]
    for name, cmd in commands.items():
        if name in res.pairs:
            print(f"  {name} with bbolt {version} ...", flush=True)
            res.pairs[f"{name} [bbolt {version}]"] = (
                res.pairs[name][0], best_of(runs, lambda c=cmd: c, cleanup=rm))


#: --damaged: also time repair (with salvage beyond the tree) on damaged copies
DAMAGED = False


def damaged_repairs(src: Path, workdir: Path, runs: int):
    """(damage, best repair seconds) for a zeroed branch near the root of the
    largest bucket and for a truncation that takes every meta's root page."""
    import shutil

    from boltfix.reader import DB
    from boltfix.walk import Walker

    with DB(src) as db:
        ps = db.page_size
        roots = sorted({m.root for m in db.metas})
        w = Walker(db)
        children = [r.child for b, r in w.walk() if r.is_bucket and r.child is not None
                    and r.child.root]  # .pages is known once the walk is done
        big = max(children, key=lambda c: c.pages, default=None)
        target = None
        if big is not None:
            # a branch one level below the bucket's root, else the root itself
            p = db.page(big.root)
            kids = [e.child for e in p.elements()] if p.type == "branch" else []
            kids = [k for k in kids if db.page(k).type == "branch"]
            target = kids[len(kids) // 2] if kids else big.root
    out = workdir / "repaired-damaged.db"
    cases = []
    if target is not None:
        cases.append((f"zeroed branch page {target} at or below the root of the largest bucket",
                      lambda f: (f.seek(target * ps), f.write(bytes(ps)))))
    cases.append((f"truncated to {roots[0] - 1} pages, below every root",
                  lambda f: f.truncate((roots[0] - 1) * ps)))
    for name, hurt in cases:
        bad = workdir / "damaged.db"
        shutil.copyfile(src, bad)
        with open(bad, "r+b") as f:
            hurt(f)
        m = best_of(runs, lambda bad=bad: boltfix_cmd() + ["repair", str(bad), "--out", str(out)],
                    expect=(0, 1, 2), cleanup=lambda: out.unlink() if out.exists() else None)
        yield name, m.seconds
        bad.unlink()
        if out.exists():
            out.unlink()


# ---------------------------------------------------------------- applications
@dataclass
class AppResult:
    """``boltfix dump`` against ``dump --decode none`` on one application's file."""

    app: str  # "raft" or "containerd": what the decoded dump decodes
    what: str  # the file, as the heading says it
    file_bytes: int
    make_seconds: float
    decoded: List[Measure] = field(default_factory=list)  # boltfix dump, in run order
    plain: List[Measure] = field(default_factory=list)  # boltfix dump --decode none
    #: dump --decode none --show-secrets: no record looked at one by one
    #: (for raft, --decode none still masks each log's Data)
    raw: List[Measure] = field(default_factory=list)
    skipped: str = ""


def _generator(module: str) -> Optional[str]:
    """The binary of ``tests/support/<module>`` (built once per source
    content), or None; why not is printed."""
    import importlib

    try:
        built = importlib.import_module(f"support.{module}")._build()
    except BaseException as exc:  # pytest's skip/fail raise outside pytest too
        print(f"{module} unavailable ({exc}): its pair skipped", flush=True)
        return None
    if isinstance(built, str):
        print(f"{module} unavailable ({built}): its pair skipped", flush=True)
        return None
    return str(built)


def _make_raft(gen: str, size_mb: float, workdir: Path) -> tuple:
    """A raft-boltdb store of about ``size_mb`` (logs of 1 KB of Data,
    StoreLogs in batches of 10): its path and what it holds."""
    logs = max(10, int(size_mb * (1 << 20) / BYTES_PER_RAFT_LOG_1K))
    src = workdir / f"bench-raft-{logs}.db"
    argv = [gen, str(src), str(logs), "--data-size", str(RAFT_DATA_SIZE)]
    return src, argv, f"raft-boltdb store: {logs:,} logs x {RAFT_DATA_SIZE} B of Data"


def _make_containerd(gen: str, size_mb: float, workdir: Path) -> tuple:
    """A containerd ``meta.db`` of about ``size_mb`` written by containerd's
    own ``core/metadata`` (containerdgen: per image a manifest and config
    blob, a layer snapshot and a container, in two namespaces)."""
    images = max(2, int(size_mb * (1 << 20) / BYTES_PER_CONTAINERD_IMAGE))
    src = workdir / f"bench-containerd-{images}.db"
    argv = [gen, "gen", str(src), "--images", str(images)]
    return src, argv, f"containerd meta.db: {images:,} images per namespace, two namespaces"


#: app -> (the generator's support module, how to make the file)
APPS = {"raft": ("raftgen", _make_raft), "containerd": ("containerdgen", _make_containerd)}


def bench_app(app: str, size_mb: float, runs: int, workdir: Path) -> AppResult:
    """``boltfix dump`` vs ``boltfix dump --decode none`` on ``app``'s file
    of about ``size_mb``, written by the application's own Go package, the
    runs alternated (decoded, none, raw, decoded, ...) so that a busy moment
    hits all alike."""
    module, make = APPS[app]
    gen = _generator(module)
    if gen is None:
        return AppResult(app, "", 0, 0.0, skipped=f"{module} unavailable (no Go): "
                                                  f"{app} pair skipped")
    src, argv, what = make(gen, size_mb, workdir)
    if src.exists():
        src.unlink()
    print(f"making {src} ({what}) ...", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{module} failed: {proc.stderr}")
    res = AppResult(app, what, src.stat().st_size, time.perf_counter() - t0)
    with open(src, "rb") as f:  # warm the page cache
        while f.read(16 << 20):
            pass
    bf = boltfix_cmd()
    print(f"  {app} dump / dump --decode none ...", flush=True)
    for _ in range(runs):
        res.decoded.append(best_of(1, lambda: bf + ["dump", str(src)]))
        res.plain.append(best_of(1, lambda: bf + ["dump", "--decode", "none", str(src)]))
        res.raw.append(best_of(1, lambda: bf + ["dump", "--decode", "none", "--show-secrets",
                                                str(src)]))
    src.unlink()
    return res


def print_app(res: AppResult) -> None:
    """The runs of one application pair, and the ratio against the target."""
    print()
    if res.skipped:
        print(f"note: {res.skipped}")
        print()
        return
    print(f"### {res.what}, {res.file_bytes / (1 << 20):,.0f} MB (written by the application's "
          f"own package in {res.make_seconds:.1f} s)")
    print()
    print("| run | boltfix dump s | dump --decode none s | ratio | dump CPU s | "
          "--decode none CPU s | CPU ratio | dump RssAnon MB | --decode none RssAnon MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for i, (d, n) in enumerate(zip(res.decoded, res.plain), start=1):
        print(f"| {i} | {d.seconds:.2f} | {n.seconds:.2f} | {d.seconds / n.seconds:.2f}x | "
              f"{d.cpu:.2f} | {n.cpu:.2f} | {d.cpu / max(n.cpu, 1e-3):.2f}x | "
              f"{_mb(d.rss_anon_kb)} | {_mb(n.rss_anon_kb)} |")
    best_d = min(m.seconds for m in res.decoded)
    best_n = min(m.seconds for m in res.plain)
    x = best_d / best_n
    verdict = "within" if x <= APP_TARGET else "NOT within"
    print()
    print(f"{res.app} dump: best {best_d:.2f} s vs --decode none best {best_n:.2f} s: "
          f"{x:.2f}x, {verdict} the {APP_TARGET:g}x target")
    if res.raw:
        best_r = min(m.seconds for m in res.raw)
        print(f"(against --decode none --show-secrets, which copies the records unread, best "
              f"{best_r:.2f} s: {best_d / best_r:.2f}x; every run: "
              + ", ".join(f"{m.seconds:.2f}" for m in res.raw) + ")")
    print()


# ---------------------------------------------------------------- reporting
BBOLT_NAME = {"check": "boltgen check (tx.Check)", "dump": "boltgen dump",
              "dump (auto)": "boltgen dump", "repair": "boltgen compact"}
BOLTFIX_NAME = {"check": "boltfix check", "dump": "boltfix dump --format jsonl --encoding hex",
                "dump (auto)": "boltfix dump --format jsonl",
                "repair": "boltfix repair --out"}


def _mb(kb: int) -> str:
    return f"{kb / 1024:,.0f}"


def print_table(res: Result) -> None:
    print()
    made = ("an existing file" if res.make_seconds is None
            else f"made by bbolt in {res.make_seconds:.1f} s")
    print(f"### {res.file_bytes / (1 << 20):,.0f} MB file: {res.keys:,} keys x "
          f"{res.value_size} B values ({made})")
    print()
    print("| command | boltfix s | bbolt s | boltfix/bbolt | boltfix CPU s | bbolt CPU s | "
          "CPU ratio | boltfix RssAnon MB | bbolt RssAnon MB | boltfix VmHWM MB | "
          "bbolt VmHWM MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, (f, b) in res.pairs.items():
        if b is None:  # --no-compact
            print(f"| {name} | {f.seconds:.2f} | | | {f.cpu:.2f} | | | {_mb(f.rss_anon_kb)} | "
                  f"| {_mb(f.hwm_kb)} | |")
            continue
        print(f"| {name} | {f.seconds:.2f} | {b.seconds:.2f} | {f.seconds / b.seconds:.2f}x | "
              f"{f.cpu:.2f} | {b.cpu:.2f} | {f.cpu / max(b.cpu, 1e-3):.2f}x | "
              f"{_mb(f.rss_anon_kb)} | {_mb(b.rss_anon_kb)} | {_mb(f.hwm_kb)} | "
              f"{_mb(b.hwm_kb)} |")
    if res.floor is not None:
        r = res.pairs["repair"]
        print(f"| floor: cp FILE NEW && sync | {res.floor.seconds:.2f} | | "
              f"repair {r[0].seconds / res.floor.seconds:.2f}x of it | {res.floor.cpu:.2f} | | "
              f"| {_mb(res.floor.rss_anon_kb)} | | {_mb(res.floor.hwm_kb)} | |")
    print()
    print("every run, wall / user + system CPU seconds (boltfix; bbolt):")
    for name, (f, b) in res.pairs.items():
        print(f"- {name}: {_runs(f)}" + (f"; {_runs(b)}" if b is not None else ""))
    if res.floor is not None:
        print(f"- floor: {_runs(res.floor)}")
    for note in res.notes:
        print(f"\nnote: {note}")
    print()


def _runs(m: Measure) -> str:
    return ", ".join(f"{w:.2f}/{u:.2f}+{s:.2f}" for w, u, s in m.runs)


def print_scaling(small: Result, big: Result) -> None:
    f = big.file_bytes / small.file_bytes
    print(f"### scaling: {small.file_bytes / (1 << 20):,.0f} MB -> "
          f"{big.file_bytes / (1 << 20):,.0f} MB (file x{f:.2f})")
    print()
    print("| command | boltfix time x | bbolt time x | boltfix CPU x (user, system) | "
          "boltfix RssAnon x | bbolt RssAnon x |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = [(name, small.pairs[name], big.pairs[name]) for name in small.pairs
            if name in big.pairs]
    if small.floor is not None and big.floor is not None:
        rows.append(("floor: cp FILE NEW && sync", (small.floor, None), (big.floor, None)))
    for name, (fs, bs), (fb, bb) in rows:
        bbolt = ("", "")
        if bs is not None and bb is not None:
            bbolt = (f"{bb.seconds / bs.seconds:.2f}",
                     f"{bb.rss_anon_kb / max(bs.rss_anon_kb, 1):.1f}")
        print(f"| {name} | {fb.seconds / fs.seconds:.2f} | {bbolt[0]} | "
              f"{fb.cpu / max(fs.cpu, 1e-3):.2f} ({fb.user / max(fs.user, 1e-3):.2f}, "
              f"{fb.sys / max(fs.sys, 1e-3):.2f}) | "
              f"{fb.rss_anon_kb / max(fs.rss_anon_kb, 1):.1f} | {bbolt[1]} |")
    print()
    if "repair" in small.pairs and "repair" in big.pairs:
        x = big.pairs["repair"][0].seconds / small.pairs["repair"][0].seconds
        verdict = "within" if x <= f * 1.15 else "NOT within"
        floor = ""
        if small.floor is not None and big.floor is not None:
            floor = f"; the floor's time x{big.floor.seconds / small.floor.seconds:.2f}"
        print(f"repair: file x{f:.2f}, best wall time x{x:.2f}: {verdict} 15% of linear "
              f"(at most x{f * 1.15:.2f}){floor}")
        print()


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--size-mb", type=float, help=f"file size to make (default "
                      f"{DEFAULT_SIZE_MB}); picks --keys")
    size.add_argument("--keys", type=int, help="number of keys to make")
    p.add_argument("--value-size", type=int, default=1024, help="value size in bytes")
    p.add_argument("--shape", choices=["big", "etcd-big", "subs"], default="big",
                   help="big: one bucket of 8-byte keys (the default); etcd-big: etcd's key "
                        "bucket of revisions holding mvccpb.KeyValue messages, and meta "
                        "(boltfix then decodes every record in dump and checks it in check); "
                        "subs: --keys sub-buckets of one bucket (--value-size unused)")
    p.add_argument("--runs", type=int, default=3, help="best of N runs per command")
    p.add_argument("--only", default="check,dump,repair,raft,containerd",
                   help="which pairs to run, comma-separated (default: check,dump,repair,raft,"
                        "containerd; raft, containerd: dump vs dump --decode none on a "
                        "raft-boltdb store, a containerd meta.db)")
    p.add_argument("--app-mb", "--raft-mb", dest="app_mb", type=float, default=None,
                   help=f"size of the raft and containerd files (default {DEFAULT_APP_MB}; "
                        f"{SMOKE_APP_MB} with --smoke)")
    p.add_argument("--keep", type=Path, help="test file: reused if it exists, else made and "
                   "kept; with --scaling a directory, keeping both files there")
    p.add_argument("--no-compact", action="store_true",
                   help="time repair (and the cp floor) without bbolt's Compact beside it")
    p.add_argument("--bbolt", default="1.3.6", metavar="V[,V...]",
                   help="bbolt versions to time against (1.3.6, 1.4.3, 1.5.0): the first makes "
                        "the file and pairs with every row, the others add rows "
                        "'NAME [bbolt V]' in the same run (e.g. --bbolt 1.5.0,1.3.6)")
    p.add_argument("--workdir", type=Path, help="where to write files (default: a temp dir)")
    p.add_argument("--damaged", action="store_true",
                   help="also time repair of damaged copies (zeroed branch, truncation)")
    p.add_argument("--smoke", action="store_true",
                   help=f"tiny and quick ({SMOKE_KEYS:,} keys, 1 run), for CI")
    p.add_argument("--scaling", nargs="*", type=float, metavar="MB",
                   help="run at two sizes (default 200 2048) and show how time and memory scale")
    p.add_argument("--boltfix", metavar="CMD",
                   help="how to run boltfix (default: the entry point beside this Python); "
                        "e.g. to time another checkout: --boltfix 'python -m boltfix' "
                        "with PYTHONPATH set to it")
    args = p.parse_args(argv)
    global DAMAGED
    DAMAGED = args.damaged
    if args.boltfix:
        import shlex

        global BOLTFIX_CMD
        BOLTFIX_CMD = shlex.split(args.boltfix)

    if args.smoke:
        sizes = [("keys", SMOKE_KEYS)]
        args.runs = 1
    elif args.scaling is not None:
        mbs = args.scaling or [200, 2048]
        if len(mbs) != 2:
            p.error("--scaling takes two sizes in MB")
        sizes = [("mb", mb) for mb in mbs]
    elif args.keys:
        sizes = [("keys", args.keys)]
    else:
        sizes = [("mb", args.size_mb or DEFAULT_SIZE_MB)]
    key_counts = [n if kind == "keys" else keys_for(n, args.value_size) for kind, n in sizes]
    keeps = [args.keep] * len(key_counts)
    if args.keep and len(sizes) > 1:  # a directory: one kept file per size
        args.keep.mkdir(parents=True, exist_ok=True)
        keeps = [args.keep / f"bench-{args.shape}-{n}.db" for n in key_counts]

    only = tuple(args.only.split(","))
    # bbolt's boltgen for the check/dump/repair pairs (the applications' need their own)
    versions = args.bbolt.split(",")
    pairs = any(name in only for name in ("check", "dump", "repair"))
    gen = boltgen(versions[0]) if pairs else None
    others = {v: boltgen(v) for v in versions[1:]} if pairs else {}
    tmp = None
    workdir = args.workdir
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="boltfix-bench-")
        workdir = Path(tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        # source + repaired + compacted, and bbolt's preallocation slack
        need = max(key_counts) * BYTES_PER_KEY_1K * max(args.value_size, 1) / 1024 * 3.5
        free = shutil.disk_usage(workdir).free
        if free < need + (1 << 30):
            print(f"not enough free disk in {workdir}: {free / (1 << 30):.1f} GB free, about "
                  f"{(need + (1 << 30)) / (1 << 30):.1f} GB needed; use --workdir or a "
                  "smaller --size-mb", file=sys.stderr)
            return 2
        results = []
        print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs "
              "(a busy machine inflates wall times; CPU times are steadier)", flush=True)
        print(f"boltfix walk: {core()}", flush=True)
        print(f"boltfix measured: {measured()}", flush=True)
        if gen is not None:
            print(f"bbolt: {versions[0]} (boltgen linked against it)"
                  + (f"; also {', '.join(others)}" if others else ""), flush=True)
            for n, keep in zip(key_counts, keeps):
                res = bench_one(n, args.value_size, args.runs, workdir, keep, gen, args.shape,
                                only=only, compact=not args.no_compact, others=others)
                results.append(res)
                print_table(res)
            if len(results) == 2:
                print_scaling(*results)
        for app in APPS:
            if app in only:
                mb = args.app_mb or (SMOKE_APP_MB if args.smoke else DEFAULT_APP_MB)
                print_app(bench_app(app, mb, args.runs, workdir))
        return 0
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
