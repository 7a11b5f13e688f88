#!/usr/bin/env python3
"""Explain every difference between two ``record_outputs.py`` runs, or fail.

    python3 scripts/explain_output_diff.py OLD NEW --repo OLD_CHECKOUT NEW_CHECKOUT

``record_outputs.py`` proves a refactoring changed nothing when two runs are
byte-identical.  When a refactoring landed in one commit with named feature
changes (the re-layering, 9b0fae5, brought the commit choice of
``boltfix/commits.py`` with it), this says which differences those features
account for, and lists the rest: the refactoring's own changes, which must
be none.  Each difference is put in one class:

* ``path``: only the checkouts' paths differ (give them as ``--repo``);
* ``added``: a JSON output equal once the members and finding codes the
  feature added (:data:`ADDED_MEMBERS`, :data:`ADDED_CODES`) are removed
  from the new side;
* ``rule``: the case where the new commit choice keeps another tree than
  the newest meta's (the new ``repair --json`` says ``commits.rule`` is one
  of :data:`CHANGED_TREE`): every output of that case may differ;
* ``text-of``: a text output whose ``-json`` sibling is ``added`` (a table
  row or finding line the JSON shows the feature added);
* ``unexplained``: anything else.  The exit code is 1 when there is any.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Optional

#: JSON members the commit choice added (inspect's per-meta trees, repair's choice)
ADDED_MEMBERS = frozenset({"trees", "commits"})
#: finding codes only the commit choice emits
ADDED_CODES = frozenset({"newest-commit-damaged", "commit-freelist-lost",
                         "commit-reaches-free-page", "etcd-commit-older",
                         "file-copied-while-written"})
#: the rules by which the commit choice keeps another tree than the newest
#: meta's (``most-complete`` keeps the newest, as before)
CHANGED_TREE = frozenset({"rolled-back", "rolled-back-further", "copied-while-written"})
#: words of the text outputs' added rows that their JSON does not spell
ADDED_WORDS = ("its", "tree", "whole", "damaged", "records", "-")


def _read(path: Path, repo: str) -> str:
    """The output file with its checkout's path taken out."""
    return path.read_text(errors="replace").replace(repo, "<REPO>")


def _stdout_json(text: str) -> Optional[object]:
    """The JSON on the output's stdout section, or None."""
    try:
        body = text.split("--- stdout\n", 1)[1].split("\n--- stderr", 1)[0]
        return json.loads(body)
    except (IndexError, ValueError):
        return None


def _strip(value):
    """``value`` without the added members and findings (recursively)."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items()
                if k not in ADDED_MEMBERS and k not in ADDED_CODES}
    if isinstance(value, list):
        return [_strip(v) for v in value
                if not (isinstance(v, dict) and v.get("code") in ADDED_CODES)]
    return value


#: totals that count the added findings
TOTALS = frozenset({"problems", "problem_count", "counts", "summary", "failing", "total", "shown"})


def _without_counts(value):
    """Problem totals, which count the added findings, left out on both sides."""
    if isinstance(value, dict):
        return {k: _without_counts(v) for k, v in value.items() if k not in TOTALS}
    if isinstance(value, list):
        return [_without_counts(v) for v in value]
    return value


def _added_parts(value, out: list) -> list:
    """Everything the feature added to a JSON output: its members and findings."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k in ADDED_MEMBERS or k in ADDED_CODES:
                out.append(v)
            else:
                _added_parts(v, out)
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, dict) and v.get("code") in ADDED_CODES:
                out.append(v)
            else:
                _added_parts(v, out)
    return out


def _rule(new_dir: Path, repo: str) -> Optional[str]:
    """The commit rule the new repair took on this case."""
    f = new_dir / "repair-json"
    if not f.exists():
        return None
    data = _stdout_json(_read(f, repo))
    if isinstance(data, dict) and isinstance(data.get("commits"), dict):
        return data["commits"].get("rule")
    return None


def classify(old: Path, new: Path, old_repo: str, new_repo: str) -> str:
    """The class of one differing output file (see the module docstring)."""
    a, b = _read(old, old_repo), _read(new, new_repo)
    if a == b:
        return "path"
    rule = _rule(new.parent, new_repo)
    if rule in CHANGED_TREE:
        return "rule"
    if old.name.endswith("-json"):
        ja, jb = _stdout_json(a), _stdout_json(b)
        if ja is not None and _without_counts(_strip(ja)) == _without_counts(_strip(jb)):
            return "added"
        return "unexplained"
    sibling = old.parent / (old.name + "-json")
    if not sibling.exists() or classify(sibling, new.parent / sibling.name, old_repo,
                                        new_repo) != "added":
        return "unexplained"
    added = _stdout_json(_read(new.parent / sibling.name, new_repo))
    return "text-of" if _only_added_words(a, b, added) else "unexplained"


_COUNT = re.compile(r"x?\d+")


def _only_added_words(a: str, b: str, added_json) -> bool:
    """Whether text ``b`` holds every word of ``a`` but totals, and its other
    words are the added JSON's (a table row, a finding line, a count)."""
    wa, wb = Counter(_cells(a.splitlines())), Counter(_cells(b.splitlines()))
    vocabulary = set(_cells(json.dumps(_added_parts(added_json, [])).replace('"', " ")
                            .splitlines()))
    vocabulary |= {w for code in ADDED_CODES for w in (code,)} | set(ADDED_WORDS)
    missing, extra = wa - wb, wb - wa
    return all(_COUNT.fullmatch(w) for w in missing) and \
        all(_COUNT.fullmatch(w) or w in vocabulary for w in extra)


def _cells(lines) -> list:
    """The words of a text output (a rich table's cells, a message), without
    box drawing and punctuation, so that a re-wrapped table compares equal."""
    words = []
    for ln in lines:
        for ch in "┏┓┗┛┃━┳┻╇┡┩│─┬┴├┤┼└┘┌┐╋,;:()[]{}":
            ln = ln.replace(ch, " ")
        words.extend(w.rstrip(".") for w in ln.split())
    return [w for w in words if w]


def main(argv=None) -> int:
    """Classify every file that differs between the two runs; 1 if any is unexplained."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("old", type=Path)
    p.add_argument("new", type=Path)
    p.add_argument("--repo", nargs=2, metavar=("OLD_CHECKOUT", "NEW_CHECKOUT"), required=True)
    args = p.parse_args(argv)
    classes: Counter = Counter()
    unexplained = []
    files = sorted(f.relative_to(args.old) for f in args.old.rglob("*") if f.is_file())
    for rel in files:
        a, b = args.old / rel, args.new / rel
        if not b.exists():
            unexplained.append(f"{rel}: missing in the new run")
            continue
        if a.read_bytes() == b.read_bytes():
            classes["same"] += 1
            continue
        c = classify(a, b, *args.repo)
        classes[c] += 1
        if c == "unexplained":
            unexplained.append(str(rel))
    extra = sorted(str(f.relative_to(args.new)) for f in args.new.rglob("*")
                   if f.is_file() and not (args.old / f.relative_to(args.new)).exists())
    unexplained += [f"{x}: only in the new run" for x in extra]
    print(f"{len(files)} outputs: " + ", ".join(f"{k} {n}" for k, n in sorted(classes.items())))
    for x in unexplained:
        print(f"unexplained: {x}")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
