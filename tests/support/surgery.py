"""boltfix repair beside the manual route with bbolt's own CLI (1.5.0):
the comparison ``benchmarks/surgery_compare.py`` tabulates and
``tests/oracle/test_surgery.py`` holds repair to.

(a) ``boltfix repair`` (no page id given by a person), then ``bbolt check``
    on its output;
(b) what a maintainer can do with bbolt 1.5.0's CLI, at its best: the
    damaged file as is when ``bbolt check`` passes it, ``bbolt surgery
    revert-meta-page`` (the previous commit), ``bbolt surgery freelist
    rebuild`` and ``freelist abandon`` on the file and on the reverted copy;
    of those ``bbolt check`` passes, the one bbolt reads most records from
    (chosen knowing the intact records, which no person has: the bar, set
    generously).

"kept": how many of the intact file's records (bucket path, key, value,
sequence; bucket entries count) the output holds, read by the real bbolt
1.5.0; for a crash case the intact file is the better of commits N-1 and N.
"whole": the name of the record set the output equals exactly ("intact",
"N-1", "N"), blank when none.
"""

from __future__ import annotations

import functools
import resource
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

from boltfix.repair import repair
from support import damage, oracle
from support.crashmix import applies, crash

VERSION = oracle.CLI_VERSION
#: seconds a bbolt command gets on a damaged file (it can loop for ever)
TIMEOUT = 5
#: the most a bbolt dump may print (a damaged page can loop it)
MAX_OUTPUT = 64 << 20


def bbolt_check(path) -> str:
    """``bbolt check`` (1.5.0's CLI): ok, errors, crash or hang."""
    try:
        r = oracle.bbolt_cli("check", path, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return "hang"
    if r.returncode == 0 and r.stdout.strip().endswith("OK"):
        return "ok"
    if any(m in r.stderr for m in ("panic:", "fatal error:", "SIGBUS", "SIGSEGV")) \
            or r.returncode < 0:
        return "crash"
    return "errors"


def _limits() -> None:
    """Cap a bbolt dump's memory as ``oracle_check`` does, and its output."""
    oracle._limit_memory()
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_OUTPUT, MAX_OUTPUT))


def records(path) -> Optional[set]:
    """The records bbolt 1.5.0 reads from ``path`` (None: it cannot)."""
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.run([str(oracle.boltgen_path(VERSION)), "dump", str(path)],
                                  stdout=out, stderr=subprocess.DEVNULL, timeout=TIMEOUT,
                                  preexec_fn=_limits)
        except subprocess.TimeoutExpired:
            return None
        if proc.returncode != 0:
            return None
        out.seek(0)
        return {(tuple(e["path"]), e["key"], e["type"], e["value"], e.get("sequence"))
                for e in oracle.parse_dump(out.read())}


def surgery(src: Path, work: Path, score, damaged: Optional[str] = None) -> tuple:
    """The manual route at its best: of the file as is (when ``bbolt
    check`` passes it: ``damaged``, its verdict when already known) and
    every surgery output ``bbolt check`` passes, the one that keeps the most
    intact records (``score``), as (step, output); ("none", None) when none
    passes."""
    candidates = []
    if (damaged or bbolt_check(src)) == "ok":
        candidates.append(("as is", src))
    tried = [("revert-meta-page", ["surgery", "revert-meta-page"], src)]
    for base_name, base in (("", src), ("revert-meta-page+", work / "revert-meta-page.db")):
        for step in ("rebuild", "abandon"):
            tried.append((f"{base_name}freelist {step}", ["surgery", "freelist", step], base))
    for name, args, base in tried:
        out = work / (name.replace(" ", "-").replace("+", "_") + ".db")
        if not base.exists():
            continue
        try:
            r = oracle.bbolt_cli(*args, base, "--output", out, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            continue
        if r.returncode == 0 and out.exists() and bbolt_check(out) == "ok":
            candidates.append((name, out))
    best, best_score = ("none", None), -1
    for name, out in candidates:
        k = score(out)[0]
        if (k or 0) > best_score:
            best, best_score = (name, out), k or 0
    return best


def compare(src: Path, intact: dict, work: Path) -> dict:
    """One case: what each route keeps of the intact record sets
    (``intact``: name -> records; a crash case has commits N-1 and N)."""
    scores: dict = {}

    def score(path):
        if path not in scores:
            got = records(path) if path is not None else None
            if got is None:
                scores[path] = None, ""
            else:
                whole = next((n for n, r in intact.items() if got == r), "")
                scores[path] = max(len(got & r) for r in intact.values()), whole
        return scores[path]

    fixed = work / "boltfix.db"
    try:
        repair(src, fixed)
        ours = {"check": bbolt_check(fixed), **dict(zip(("kept", "whole"), score(fixed)))}
    except Exception as exc:  # noqa: BLE001 - a row, not a crash of the table
        ours = {"check": f"repair failed: {exc}"[:40], "kept": None, "whole": ""}
    damaged = bbolt_check(src)
    step, out = surgery(src, work, score, damaged)
    theirs = {"step": step, "check": "ok" if out else "-",  # surgery() keeps only "ok"s
              **dict(zip(("kept", "whole"), score(out)))}
    as_is = dict(zip(("kept", "whole"), score(src) if damaged == "ok" else (None, "")))
    return {"damaged": damaged, "boltfix": ours, "surgery": theirs, "as_is": as_is,
            "intact": max(len(r) for r in intact.values())}


def damage_case(name: str, root: Path) -> tuple:
    """(damaged file, {"intact": records}) for damage kind ``name``, under ``root``."""
    k = damage.KINDS[name]
    d = root / name
    d.mkdir()
    src = damage.copy_fixture(k.shape, d, "damaged.db")
    k.apply(src)
    return src, {"intact": _intact(k.shape)}


@functools.lru_cache(maxsize=None)
def _intact(shape: str) -> frozenset:
    """The records of the intact fixture ``shape`` (read once)."""
    return frozenset(records(oracle.fixture(shape)))


def crash_case(h, n: int, kind: str, root: Path) -> Optional[tuple]:
    """(crash file, {"N-1": records, "N": records}) for commit ``n`` of
    history ``h`` (support.bbolthistory.History) and crash ``kind``; None
    when the kind makes no crash there (a lost growth of a file that did
    not grow)."""
    if not applies(h.captures[n - 1], h.captures[n], kind):
        return None
    root.mkdir()
    src = root / "crashed.db"
    src.write_bytes(crash(h.captures[n - 1], h.captures[n], kind, n))
    return src, {name: set(h.records[i]) for name, i in (("N-1", n - 1), ("N", n))}


#: whole record sets, oldest first (a crash case's commits; a damage case's one)
_AGE = {"N-1": 0, "N": 1, "intact": 1}


def falls_short(r: dict) -> Optional[str]:
    """Why boltfix's side of a compared case (:func:`compare`) falls short
    of the surgery's best, or None.  Its output must pass ``bbolt check``;
    be whole where the surgery's is, and then a commit at least as new
    (commit N after a commit that deleted keys holds fewer records than
    N-1, and is still the better one to keep); and where neither is whole,
    keep at least as many intact records.  A whole output beside a surgery
    output that is not is never short: records of no commit, however many,
    are not more of a commit."""
    b, s = r["boltfix"], r["surgery"]
    if b["check"] != "ok":
        return f"boltfix's output: bbolt check {b['check']}"
    if s["whole"] and not b["whole"]:
        return f"the surgery ({s['step']}) is whole ({s['whole']}), boltfix is not"
    if s["whole"] and _AGE[b["whole"]] < _AGE[s["whole"]]:
        return (f"boltfix is whole at {b['whole']}, the surgery ({s['step']}) at the newer "
                f"{s['whole']}")
    if not b["whole"] and (b["kept"] or 0) < (s["kept"] or 0):
        return f"boltfix kept {b['kept']}, the surgery ({s['step']}) {s['kept']}"
    return None
