"""boltfix repair against the manual route with bbolt 1.5.0's own CLI.

For every crafted damage kind (tests/support/damage.py) and every crash case
mixed from real bbolt commits (tests/oracle/test_crash_commits.py: the same
histories, captures and crash kinds), this compares:

(a) ``boltfix repair`` (no page id given by a person), then ``bbolt check``
    on its output;
(b) what a maintainer can do with bbolt 1.5.0's CLI, at its best: the
    damaged file as is when ``bbolt check`` passes it, ``bbolt surgery
    revert-meta-page`` (the previous commit), ``bbolt surgery freelist
    rebuild`` and ``freelist abandon`` on the file and on the reverted copy;
    of those ``bbolt check`` passes, the one bbolt reads most records from.
    Page-level surgery (``clear-page-elements``, ``copy-page``) needs a
    page id and an element index a person reads off ``bbolt check``'s
    messages; it is not tried here, and a case where no
    tried step passes is shown as ``none``.

"kept": how many of the intact file's records (bucket path, key, value,
sequence; bucket entries count) the output holds, read by the real bbolt
1.5.0; for a crash case the intact file is the better of commits N-1 and N
(capture N-1 and N of the real history).  "=": the record set the output
equals exactly ("intact", "N-1", "N"), blank when it equals none (a commit
that deletes keys leaves N-1 with more records than N: both are whole).
The summary counts, per family, the outputs that are whole: boltfix's, the
damaged file as is where ``bbolt check`` passes it (what a person who trusts
that check keeps), and the surgery's best.  The surgery column is chosen
knowing the intact records, which no person has: it is the bar, generously.

    python3 benchmarks/surgery_compare.py [--cases damage|crash|all] [--crash-every K]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # tests/support
sys.path.insert(0, str(REPO / "tests" / "oracle"))  # the crash histories

import test_crash_commits as crashes  # noqa: E402

from boltfix.repair import repair  # noqa: E402
from support import damage, oracle  # noqa: E402

VERSION = oracle.CLI_VERSION
TIMEOUT = 5


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


def records(path) -> Optional[set]:
    """The records bbolt 1.5.0 reads from ``path`` (None: it cannot)."""
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.run([str(oracle.boltgen_path(VERSION)), "dump", str(path)],
                                  stdout=out, stderr=subprocess.DEVNULL, timeout=TIMEOUT,
                                  preexec_fn=crashes._view_limits)
        except subprocess.TimeoutExpired:
            return None
        if proc.returncode != 0:
            return None
        out.seek(0)
        return {(tuple(e["path"]), e["key"], e["type"], e["value"], e.get("sequence"))
                for e in oracle.parse_dump(out.read())}


def surgery(src: Path, work: Path, score) -> tuple:
    """The manual route at its best: of the file as is (when ``bbolt
    check`` passes it) and every surgery output ``bbolt check`` passes, the
    one that keeps the most intact records (``score``), as (step, output);
    ("none", None) when none passes."""
    candidates = []
    if bbolt_check(src) == "ok":
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
    def score(path):
        got = records(path) if path is not None else None
        if got is None:
            return None, ""
        whole = next((n for n, r in intact.items() if got == r), "")
        return max(len(got & r) for r in intact.values()), whole

    fixed = work / "boltfix.db"
    try:
        repair(src, fixed)
        ours = {"check": bbolt_check(fixed), **dict(zip(("kept", "whole"), score(fixed)))}
    except Exception as exc:  # noqa: BLE001 - a row, not a crash of the table
        ours = {"check": f"repair failed: {exc}"[:40], "kept": None, "whole": ""}
    step, out = surgery(src, work, score)
    theirs = {"step": step, "check": bbolt_check(out) if out else "-",
              **dict(zip(("kept", "whole"), score(out)))}
    damaged = bbolt_check(src)
    as_is = dict(zip(("kept", "whole"), score(src) if damaged == "ok" else (None, "")))
    return {"damaged": damaged, "boltfix": ours, "surgery": theirs, "as_is": as_is,
            "intact": max(len(r) for r in intact.values())}


def damage_cases(root: Path):
    """(name, damaged file, [intact records]) for every damage kind."""
    for name, k in damage.KINDS.items():
        d = root / name
        d.mkdir()
        src = damage.copy_fixture(k.shape, d, "damaged.db")
        k.apply(src)
        yield name, src, {"intact": records(oracle.fixture(k.shape))}


class _Dirs:
    """Enough of pytest's tmp_path_factory for test_crash_commits.history."""

    def __init__(self, root: Path):
        self.root = root

    def mktemp(self, name: str) -> Path:
        """A new directory ``name`` under the root."""
        d = self.root / name
        d.mkdir()
        return d


def crash_cases(root: Path, every: int):
    """(name, crash file, [records of N-1, of N]) for each history, every
    ``every``-th commit, every crash kind."""
    dirs = _Dirs(root)
    for hist, (_, ops) in crashes.HISTORIES.items():
        h = crashes.history(hist, dirs)
        for n in range(1, len(ops) + 1, every):
            for kind in crashes.KINDS:
                d = root / f"{hist}-{n:02d}-{kind}"
                d.mkdir()
                src = d / "crashed.db"
                src.write_bytes(crashes.crash(h.captures[n - 1], h.captures[n], kind, n))
                intact = {name: set(h.records[i]) for name, i in (("N-1", n - 1), ("N", n))}
                yield f"{hist}-{n:02d}-{kind}", src, intact


def _cell(d: dict) -> str:
    """A side's kept count, the whole record set it equals, its check."""
    kept = "-" if d["kept"] is None else str(d["kept"])
    return f"{kept:>6} {d['whole']:6s} {d['check']:<7}"


def main(argv=None) -> int:
    """Print the table and the totals."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", choices=("damage", "crash", "all"), default="all")
    ap.add_argument("--crash-every", type=int, default=1,
                    help="take every K-th commit of each crash history")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="surgery-") as tmp:
        root = Path(tmp)
        gens = []
        if args.cases in ("damage", "all"):
            (root / "damage").mkdir()
            gens.append(damage_cases(root / "damage"))
        if args.cases in ("crash", "all"):
            (root / "crash").mkdir()
            gens.append(crash_cases(root / "crash", args.crash_every))
        for gen in gens:
            for name, src, intact in gen:
                work = src.parent / "work"
                work.mkdir()
                rows.append((name, compare(src, intact, work)))
    print_rows(rows)
    print()
    print_summary(rows)
    return 0


def print_rows(rows) -> None:
    """One line per case."""
    print(f"{'case':34s} {'bbolt check':11s} {'intact':>6s} | {'boltfix kept, =, check':27s}"
          f"| {'surgery step':34s} {'kept, =, check'}")
    for name, r in rows:
        b, s = r["boltfix"], r["surgery"]
        print(f"{name:34s} {r['damaged']:11s} {r['intact']:>6d} | {_cell(b):27s}"
              f"| {s['step']:34s} {_cell(s)}")


def _family(name: str) -> str:
    """``crafted damage`` or ``crash: KIND``."""
    for kind in sorted(crashes.KINDS, key=len, reverse=True):
        if name.endswith("-" + kind) and name.split("-")[0] in crashes.HISTORIES:
            return f"crash: {kind}"
    return "crafted damage"


def print_summary(rows) -> None:
    """A markdown table per family: how often each side's output is a whole
    record set (the intact file, commit N-1 or N), and who kept more."""
    cols = ("cases", "boltfix whole", "as is whole", "surgery whole", "only boltfix whole",
            "only surgery whole", "boltfix kept more", "surgery kept more")
    fams: dict = {}
    for name, r in rows:
        b, s, a = r["boltfix"], r["surgery"], r["as_is"]
        t = fams.setdefault(_family(name), Counter())
        bw, sw = bool(b["whole"]), bool(s["whole"])
        t.update({k: int(v) for k, v in {
            "cases": 1, "boltfix whole": bw, "as is whole": bool(a["whole"]),
            "surgery whole": sw, "only boltfix whole": bw and not sw,
            "only surgery whole": sw and not bw,
            "boltfix kept more": (b["kept"] or 0) > (s["kept"] or 0),
            "surgery kept more": (s["kept"] or 0) > (b["kept"] or 0)}.items()})
    fams["all"] = sum(fams.values(), Counter())
    print("| | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for fam, t in fams.items():
        print(f"| {fam} | " + " | ".join(str(t[c]) for c in cols) + " |")


if __name__ == "__main__":
    sys.exit(main())
