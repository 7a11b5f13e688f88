"""boltfix repair against the manual route with bbolt 1.5.0's own CLI.

For every crafted damage kind (tests/support/damage.py) and every crash case
mixed from real bbolt commits (tests/oracle/test_crash_commits.py: the same
histories, captures and crash kinds), this compares (the comparison is
``tests/support/surgery.py``'s, shared with ``tests/oracle/test_surgery.py``,
which holds repair to it on every damage kind and a subset of the crash
cases):

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
that check keeps), and the surgery's best; "boltfix short": the cases where
boltfix falls short of the surgery's best by ``support.surgery.falls_short``
(the bar ``tests/oracle/test_surgery.py`` holds it to).  The surgery column is chosen
knowing the intact records, which no person has: it is the bar, generously.

    python3 benchmarks/surgery_compare.py [--cases damage|crash|all] [--crash-every K]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # tests/support

from support import bbolthistory as crashes  # noqa: E402
from support import damage  # noqa: E402
from support.surgery import compare, crash_case, damage_case, falls_short  # noqa: E402


def damage_cases(root: Path):
    """(name, damaged file, {"intact": records}) for every damage kind."""
    for name in damage.KINDS:
        yield (name, *damage_case(name, root))


class _Dirs:
    """Enough of pytest's tmp_path_factory for support.bbolthistory.history."""

    def __init__(self, root: Path):
        self.root = root

    def mktemp(self, name: str) -> Path:
        """A new directory ``name`` under the root."""
        d = self.root / name
        d.mkdir()
        return d


def crash_cases(root: Path, every: int):
    """(name, crash file, {records of N-1, of N}) for each history, every
    ``every``-th commit, every crash kind that makes a crash there."""
    dirs = _Dirs(root)
    for hist, (_, ops) in crashes.HISTORIES.items():
        h = crashes.history(hist, dirs)
        for n in range(1, len(ops) + 1, every):
            for kind in crashes.KINDS:
                name = f"{hist}-{n:02d}-{kind}"
                case = crash_case(h, n, kind, root / name)
                if case is not None:
                    yield (name, *case)


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
    """One line per case; a case where boltfix falls short of the surgery
    (``support.surgery.falls_short``) says why on the next line."""
    print(f"{'case':34s} {'bbolt check':11s} {'intact':>6s} | {'boltfix kept, =, check':27s}"
          f"| {'surgery step':34s} {'kept, =, check'}")
    for name, r in rows:
        b, s = r["boltfix"], r["surgery"]
        print(f"{name:34s} {r['damaged']:11s} {r['intact']:>6d} | {_cell(b):27s}"
              f"| {s['step']:34s} {_cell(s)}")
        short = falls_short(r)
        if short:
            print(f"    short: {short}{_known(name)}")


def _known(name: str) -> str:
    """Where a crash case is one test_crash_commits.py lists as known."""
    parts = name.split("-", 2)
    if parts[0] not in crashes.HISTORIES or len(parts) < 3 or not parts[1].isdigit():
        return ""
    return " (support.bbolthistory.KNOWN)" if (parts[0], int(parts[1]), parts[2]) in \
        crashes.KNOWN else ""


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
            "only surgery whole", "boltfix kept more", "surgery kept more", "boltfix short")
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
            "surgery kept more": (s["kept"] or 0) > (b["kept"] or 0),
            "boltfix short": falls_short(r) is not None}.items()})
    fams["all"] = sum(fams.values(), Counter())
    print("| | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for fam, t in fams.items():
        print(f"| {fam} | " + " | ".join(str(t[c]) for c in cols) + " |")


if __name__ == "__main__":
    sys.exit(main())
