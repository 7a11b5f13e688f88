#!/usr/bin/env python3
"""Record what every boltfix command prints, to prove a refactoring changed nothing.

    python3 scripts/record_outputs.py OUTDIR [--quick]
    BOLTFIX_PURE_PYTHON=1 python3 scripts/record_outputs.py OUTDIR2
    diff -r OUTDIR OUTDIR2

Runs every command (inspect, pages, page, check, repair, dump in its main
option sets, buckets, keys, get), with ``--json`` and without where it has
one, on every file in ``fixtures/`` and on every crafted damage kind of
``tests/support/damage.py`` (applied to a copy of the fixture it names), in this one
process through click's test runner (stderr is not a terminal there, so no
progress bar).  Each case becomes one file ``OUTDIR/<file>/<case>``: the exit
code, stdout and stderr, and for repair the sha256 of the file written.
Temporary paths are replaced by ``<TMP>``, so two runs compare with
``diff -r``.  ``--quick`` takes a few files only (for the test suite).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from click.testing import CliRunner  # noqa: E402

from boltfix.cli import main  # noqa: E402
from support import damage  # noqa: E402

QUICK_FIXTURES = ("bbolt/nested.db", "etcd/etcd-13406.db")
QUICK_KINDS = ("branch-past-eof", "freelist-leak", "leaf-count-too-large",
               "both-metas-invalid", "inline-bad-flags")

ENCODINGS = ("auto", "utf8", "hex", "base64")
DUMPS = [[]]
DUMPS += [["--format", fmt, "--encoding", enc] for fmt in ("jsonl", "text") for enc in ENCODINGS]
DUMPS += [
    ["--include", "live,free,orphan"],
    ["--include", "free,orphan", "--encoding", "hex"],
    ["--include", "free,orphan", "--format", "text"],
    ["--decode", "none"],
    ["--decode", "etcd"],
    ["--limit", "5"],
    ["--show-secrets"],
]


def _first_buckets(buckets_json: str):
    """A top-level bucket path and, when there is one, a nested one."""
    try:
        tree = json.loads(buckets_json)
    except ValueError:
        return []

    def name(b):
        return "0x" + b["name"] if b.get("name_encoding") == "hex" else b["name"]

    paths = []
    if tree:
        paths.append([name(tree[0])])
    for top in tree:
        if top.get("buckets"):
            paths.append([name(top), name(top["buckets"][0])])
            break
    return paths


class Recorder:
    def __init__(self, outdir: Path, tmp: Path):
        self.outdir = outdir
        self.tmp = tmp
        self.runner = CliRunner()

    def run(self, label: str, case: str, args) -> str:
        res = self.runner.invoke(main, [str(a) for a in args], catch_exceptions=True)
        out = res.stdout_bytes
        err = res.stderr_bytes
        text = [f"exit {res.exit_code}\n".encode()]
        if res.exception is not None and not isinstance(res.exception, SystemExit):
            text.append(f"exception {type(res.exception).__name__}: {res.exception}\n".encode())
        text += [b"--- stdout\n", out, b"\n--- stderr\n", err]
        data = b"".join(text).replace(str(self.tmp).encode(), b"<TMP>")
        dest = self.outdir / label / re.sub(r"[^A-Za-z0-9._,=-]+", "_", case)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        return out.decode("utf-8", "replace")

    def file_cases(self, label: str, path: Path) -> None:
        p = str(path)
        for j in ((), ("--json",)):
            s = "-json" if j else ""
            self.run(label, f"inspect{s}", ["inspect", *j, p])
            self.run(label, f"pages{s}", ["pages", *j, p])
            self.run(label, f"page-0-1-2-3{s}", ["page", *j, p, 0, 1, 2, 3])
            self.run(label, f"check{s}", ["check", *j, p])
            self.run(label, f"check-max2{s}", ["check", *j, "--max-findings", 2, p])
            buckets = self.run(label, f"buckets{s}", ["buckets", *j, p])
        self.run(label, "page-2-hex", ["page", "--hex", p, 2])
        self.run(label, "page-3-hex", ["page", "--hex", p, 3])
        for name, extra in (("repair", []), ("repair-json", ["--json"]),
                            ("repair-dry", ["--dry-run"]),
                            ("repair-dry-json", ["--dry-run", "--json"])):
            out = self.tmp / f"{label}-{name}.db"
            self.run(label, name, ["repair", *extra, p, "--out", out])
            digest = hashlib.sha256(out.read_bytes()).hexdigest() if out.exists() else "none"
            (self.outdir / label / f"{name}.sha256").write_text(digest + "\n")
        for args in DUMPS:
            self.run(label, "dump" + "".join(args), ["dump", *args, p])
        for bpath in _first_buckets(buckets):
            b = "-".join(bpath)
            bucket_args = sum((["--bucket", n] for n in bpath), [])
            self.run(label, f"dump--bucket-{b}", ["dump", *bucket_args, p])
            keys = ""
            for enc in ENCODINGS + ("raw",):
                out = self.run(label, f"keys-{b}-{enc}", ["keys", "--encoding", enc, p, *bpath])
                if enc == "hex":
                    keys = out
            first = keys.split("\n", 1)[0]
            if first:
                for enc in ENCODINGS + ("raw",):
                    self.run(label, f"get-{b}-{enc}",
                             ["get", "--encoding", enc, p, *bpath, "0x" + first])
                self.run(label, f"dump--bucket-{b}--prefix-hex",
                         ["dump", *sum((["--bucket", n] for n in bpath), []),
                          "--prefix-hex", first[: max(2, len(first) // 2 // 2 * 2)], p])
            self.run(label, f"get-{b}-missing", ["get", p, *bpath, "no-such-key-here"])


def main_(argv) -> int:
    quick = "--quick" in argv
    argv = [a for a in argv if a != "--quick"]
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    outdir = Path(argv[0])
    if outdir.exists():
        shutil.rmtree(outdir)
    outdir.mkdir(parents=True)
    fixtures = sorted(str(p.relative_to(REPO / "fixtures"))
                      for p in (REPO / "fixtures").glob("*/*.db"))
    kinds = sorted(damage.KINDS)
    if quick:
        fixtures = [f for f in fixtures if f in QUICK_FIXTURES]
        kinds = [k for k in kinds if k in QUICK_KINDS]
    with tempfile.TemporaryDirectory(prefix="boltfix-rec-") as tmp:
        tmp = Path(os.path.realpath(tmp))
        rec = Recorder(outdir, tmp)
        for f in fixtures:
            rec.file_cases(f.replace("/", "_"), REPO / "fixtures" / f)
        for kind in kinds:
            k = damage.KINDS[kind]
            work = tmp / "damaged"
            work.mkdir(exist_ok=True)
            path = damage.copy_fixture(k.shape, work, name=f"{kind}.db")
            k.apply(path)
            rec.file_cases(f"damage_{kind}", path)
            path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main_(sys.argv[1:]))
