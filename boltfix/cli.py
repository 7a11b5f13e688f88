"""The ``boltfix`` command line: a thin click layer over the library.

Exit codes (every command):
  0  done; for ``check``: no problems
  1  problems found (``check``), data not recoverable (``repair``), key absent (``get``)
  2  the file could not be opened, the request was refused, or the output could
     not be written (full or read-only filesystem...); nothing written
  3  an internal error in boltfix (a bug: please report it)
  4  stopped part-way: the input changed (shrank, was rewritten) while it was
     read; output already printed is incomplete; repair wrote nothing
  130, 143  interrupted by SIGINT / SIGTERM; repair wrote nothing
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import stat
import sys
from typing import TYPE_CHECKING, Optional

import click

from boltfix import __version__

if TYPE_CHECKING:  # imported where needed: `boltfix --help` never loads them
    from boltfix.reader import DB

EXIT_OK, EXIT_PROBLEMS, EXIT_CANNOT = 0, 1, 2
#: an internal error in boltfix: a bug, never the input's fault
EXIT_BUG = 3
#: stopped part-way: the input changed while it was read (boltfix.guard)
EXIT_CHANGED = 4
EXIT_SIGINT, EXIT_SIGTERM = 130, 143  # 128 + the signal, as a shell reports it


# ---------------------------------------------------------------- shared options
def db_argument(f):
    return click.argument("db", type=click.Path(dir_okay=False, path_type=str))(f)


def json_option(f):
    return click.option("--json", "as_json", is_flag=True,
                        help="Print the result as JSON instead of tables.")(f)


def open_options(f):
    """Options that override how the file is opened."""
    f = click.option("--page-size", type=int, default=None,
                     help="Force the page size instead of reading it from the meta.")(f)
    f = click.option("--meta", "meta_index", type=click.IntRange(0, 1), default=None,
                     help="Use meta page 0 or 1 instead of bbolt's choice.")(f)
    return f


class Terminated(BaseException):
    """SIGTERM arrived: unwind (finally blocks remove temp files), exit 143."""


def _on_sigterm(signum, frame):
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the cleanup
    raise Terminated()


def _on_sigint(signum, frame):
    import signal

    # like SIGTERM: once interrupted, nothing may cut the cleanup short (a
    # SIGINT left pending while signals were held, or one during shutdown,
    # must not kill the process after its exit code is chosen)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt()


def guarded(f):
    """Map every way a command ends to one exit code and one line on stderr;
    never a traceback.  A change of the input seen at any point (even after a
    normal end) makes it exit 4: what was produced is incomplete."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        import signal

        from boltfix import guard
        from boltfix.errors import BoltError, FileChanged

        guard.start_session(lease=True)
        try:
            old_term = signal.signal(signal.SIGTERM, _on_sigterm)
            old_int = signal.signal(signal.SIGINT, _on_sigint)
        except ValueError:  # not the main thread: leave signals alone
            old_term = old_int = None
        code = EXIT_OK
        try:
            f(*args, **kwargs)
        except SystemExit as exc:
            code = exc.code
        except FileChanged as exc:
            _changed_exit(exc)
        except BoltError as exc:
            if guard.first_change() is not None:
                _changed_exit()  # the change is why the read failed
            click.echo(f"boltfix: {exc}", err=True)
            sys.exit(EXIT_CANNOT)
        except BrokenPipeError:
            # `boltfix dump db | head`: the reader went away; that is fine.
            with contextlib.suppress(Exception):
                sys.stdout = open(os.devnull, "w")
            sys.exit(EXIT_OK)
        except KeyboardInterrupt:
            click.echo(f"boltfix: interrupted (SIGINT); {_PART_WAY}", err=True)
            sys.exit(EXIT_SIGINT)
        except Terminated:
            click.echo(f"boltfix: terminated (SIGTERM); {_PART_WAY}", err=True)
            sys.exit(EXIT_SIGTERM)
        except (click.exceptions.Exit, click.ClickException):
            raise
        except Exception as exc:  # a bug in boltfix, never the user's fault
            if guard.first_change() is not None:
                _changed_exit()
            if os.environ.get("BOLTFIX_DEBUG"):
                raise
            click.echo(f"boltfix: internal error: {type(exc).__name__}: {exc} "
                       "(set BOLTFIX_DEBUG=1 for a traceback; please report it)", err=True)
            sys.exit(EXIT_BUG)
        finally:
            guard.end_session()
            if old_term is not None:
                signal.signal(signal.SIGTERM, old_term)
                if signal.getsignal(signal.SIGINT) is _on_sigint:  # not once interrupted
                    signal.signal(signal.SIGINT, old_int)
        if guard.first_change() is not None:
            _changed_exit()
        sys.exit(code)

    return wrapper


def _changed_exit(exc=None) -> None:
    """Exit 4: the input changed while it was read (see boltfix.guard)."""
    from boltfix import guard

    if exc is None:
        path, reason = guard.first_change()
        what = f"{path} changed while it was being read: {reason}"
    else:
        what = exc.message
    click.echo(f"boltfix: {what}; {_PART_WAY} (run again on a copy nothing writes to)",
               err=True)
    sys.exit(EXIT_CHANGED)


_PART_WAY = "stopped part-way: any output is incomplete, and repair wrote nothing"


def open_db(path: str, page_size: Optional[int] = None, meta_index: Optional[int] = None,
            need_root: bool = True) -> DB:
    from boltfix.errors import BoltError
    from boltfix.reader import DB

    d = DB(path, page_size=page_size, meta=meta_index)
    if need_root and meta_index is not None and not 2 <= d.meta.root < d.pages_in_file:
        # a forced meta whose root is no page (a zeroed meta says root 0,
        # which the walk would take for an inline bucket): nothing to follow
        problems = ", ".join(d.meta.problems) or "no problems"
        d.close()
        raise BoltError(f"{path}: meta {meta_index} cannot be used: its root page "
                        f"{d.meta.root} is not a page of the file ({problems}); try --meta "
                        f"{1 - meta_index}, or `boltfix repair`, which looks for the root")
    return d


def emit_json(data) -> None:
    # json.dumps' text, streamed without recursion (a deep bucket tree)
    from boltfix import jsonout

    jsonout.dump(data, sys.stdout, default=_json_default)
    sys.stdout.flush()


def _json_default(obj):
    if isinstance(obj, (bytes, bytearray, memoryview)):
        from boltfix.render import name_text

        return name_text(bytes(obj))
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@contextlib.contextmanager
def progress_bar(description: str, total: Optional[int], enabled: bool = True):
    """A rich progress bar on stderr, only when stderr is a terminal, and only
    once the work has run for a second (short runs stay quiet).

    Yields a callback taking the number of pages done so far; it also stops
    the work (FileChanged) at the first batch after the input changed.
    """
    from boltfix.guard import batch_boundary

    if not enabled or not sys.stderr.isatty():
        yield batch_boundary  # no bar, but still stop at the first batch after a change
        batch_boundary()  # and before the result is shown
        return
    import time

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    count = ("{task.completed:,}/{task.total:,} pages" if total is not None
             else "{task.completed:,} pages")
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn(count),
                   TimeElapsedColumn(), console=Console(stderr=True), transient=True)
    task = bar.add_task(description, total=total)
    show_after = time.monotonic() + 1.0
    shown = False

    def update(done: int) -> None:
        nonlocal shown
        batch_boundary()
        if not shown:
            if time.monotonic() < show_after:
                return
            bar.start()
            shown = True
        bar.update(task, completed=done)

    try:
        yield update
        batch_boundary()
    finally:
        if shown:
            bar.stop()


def _stdout_is_a_file() -> bool:
    """True when stdout is redirected to a regular file (not a terminal or pipe)."""
    try:
        return stat.S_ISREG(os.fstat(sys.stdout.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):
        return False


def console():
    from rich.console import Console

    return Console()


# ---------------------------------------------------------------- group
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="boltfix")
def main():
    """Inspect, check, dump and repair bbolt files (etcd's member/snap/db).

    The input file is only ever opened read-only.
    """


# ---------------------------------------------------------------- inspect
@main.command()
@db_argument
@json_option
@open_options
@guarded
def inspect(db, as_json, page_size, meta_index):
    """Show what is in DB: metas, page counts, freelist, bucket tree, etcd facts.

    Works on damaged files: shows what can be read and says what cannot.
    """
    from boltfix.describe import describe
    from boltfix.views import render_inspect

    d = open_db(db, page_size, meta_index)
    with progress_bar("reading", d.page_limit, not as_json) as cb:
        info = describe(d, cb)
    if as_json:
        emit_json(info)
    else:
        render_inspect(console(), info)


# ---------------------------------------------------------------- pages
@main.command()
@db_argument
@json_option
@open_options
@guarded
def pages(db, as_json, page_size, meta_index):
    """List every page: id, type, items, overflow and reachable/free/unreachable."""
    from boltfix.describe import page_rows

    d = open_db(db, page_size, meta_index)
    rows = page_rows(d)
    if as_json:
        out = sys.stdout
        out.write("[")
        for i, row in enumerate(rows):
            out.write(("\n" if i == 0 else ",\n") + json.dumps(row))
        out.write("\n]\n")
        return
    out = sys.stdout
    out.write(f"{'ID':>10}  {'TYPE':<10} {'ITEMS':>6} {'OVRFLW':>6}  STATE\n")
    out.write(f"{'-' * 10}  {'-' * 10} {'-' * 6} {'-' * 6}  {'-' * 11}\n")
    for row in rows:
        out.write(f"{row['id']:>10}  {row['type']:<10} {row['items']:>6} "
                  f"{row['overflow']:>6}  {row['state']}\n")


# ---------------------------------------------------------------- page
@main.command()
@db_argument
@click.argument("ids", nargs=-1, type=int, required=True)
@click.option("--hex", "as_hex", is_flag=True, help="Hexdump the page run instead of decoding it.")
@click.option("--show-secrets", is_flag=True,
              help="Do not redact password hashes and Kubernetes Secret data.")
@json_option
@open_options
@guarded
def page(db, ids, as_hex, show_secrets, as_json, page_size, meta_index):
    """Decode pages by id: header, elements, meta fields or freelist ids."""
    from boltfix.describe import page_view
    from boltfix.render import hexdump_range
    from boltfix.views import render_page

    d = open_db(db, page_size, meta_index, need_root=False)  # pages by id: no walk
    views = []
    for pgid in ids:
        p = d.page(pgid)
        if as_hex:
            # streamed a piece at a time; secrets masked over the whole run
            # and the bytes around it (a hash or Secret may straddle a piece)
            click.echo(f"page {pgid} ({p.type}, {p.run_end - p.offset} bytes, "
                       f"offset {p.offset:#x})")
            for text in hexdump_range(d.buf, d.page_size, p.offset, p.run_end, show_secrets):
                click.echo(text, nl=False)
            continue
        views.append(page_view(d, pgid) if show_secrets else _masked_page_view(d, p, pgid))
    if as_hex:
        return
    if as_json:
        emit_json(views)
    else:
        c = console()
        for v in views:
            render_page(c, v)


def _masked_page_view(d, p, pgid: int) -> dict:
    """page_view with secrets masked in each value shown, unless the page is
    not a leaf of its own and holds part of a Kubernetes Secret's value (an
    overflow page): then its "header" and "elements" would be the secret's
    bytes, and only a note is shown."""
    from boltfix import structs as S
    from boltfix.describe import page_view
    from boltfix.k8s import file_secret_spans

    if (p.self_id == pgid and p.flags == S.LEAF_PAGE_FLAG) or \
            not file_secret_spans(d.buf, d.page_size, p.offset, p.run_end):
        return page_view(d, pgid, mask=_ValueMask())
    return {"id": pgid, "self_id": pgid, "type": "masked", "flags": 0, "count": 0,
            "overflow": 0, "run_complete": True,
            "masked": "this page holds part of a Kubernetes Secret's value "
                      "(use --show-secrets)"}


class _ValueMask:
    """The first ``n`` bytes of a leaf value, its password hashes and
    Kubernetes secrets masked as the whole value says (a value shown whole
    is masked as before: hashes, then the KeyValue's secrets).  Past
    k8s.SPAN_READ_BUDGET bytes of values read for one page (a damaged page
    whose elements all claim one huge value), a preview is masked whole."""

    def __init__(self):
        from boltfix.k8s import SPAN_READ_BUDGET

        self.left = SPAN_READ_BUDGET

    def __call__(self, value, n: int) -> bytes:
        from boltfix.k8s import kv_view_secret_ranges, mask_kv
        from boltfix.render import redact_range, redact_secrets

        if len(value) > self.left:
            return b"*" * n
        self.left -= len(value)
        if n == len(value):
            data = redact_secrets(value)
            return mask_kv(data) or data  # a Kubernetes Secret's data
        data = bytearray(redact_range(value, 0, n))  # a hash cut by the preview's end too
        for a, b in kv_view_secret_ranges(value):  # the whole value, read in pieces
            a, b = max(a, 0), min(b, n)
            if a < b:
                data[a:b] = b"*" * (b - a)
        return bytes(data)


# ---------------------------------------------------------------- check
@main.command()
@db_argument
@json_option
@click.option("--max-findings", type=click.IntRange(1), default=10000, show_default=True,
              help="Keep at most this many findings (all are still counted).")
@click.option("--strict", is_flag=True,
              help="Exit 1 for any finding, also warnings that never stop bbolt or etcd.")
@open_options
@guarded
def check(db, as_json, max_findings, strict, page_size, meta_index):
    """Find every problem in DB; never crashes or hangs on a damaged file.

    Exit 0 when clean or only warnings that never stop bbolt or etcd were
    found (shown; --strict counts them), 1 when problems were found, 2 when
    DB cannot be opened.
    """
    from boltfix.check import check as run_check
    from boltfix.views import render_check

    d = open_db(db, page_size, meta_index)
    with progress_bar("checking", d.page_limit, not as_json) as cb:
        result = run_check(d, max_findings=max_findings, progress=cb)
    if as_json:
        emit_json(result.to_json())
    else:
        render_check(console(), result)
    sys.exit(EXIT_PROBLEMS if result.failed(strict) else EXIT_OK)


# ---------------------------------------------------------------- repair
@main.command()
@db_argument
@click.option("--out", "-o", "out", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="Where to write the repaired copy (a new file).")
@click.option("--force", is_flag=True, help="Replace --out if it exists (never the input).")
@click.option("--dry-run", is_flag=True, help="Plan and report, write nothing.")
@click.option("--lost-found", "lost_found", default=None,
              type=click.Path(dir_okay=False, path_type=str),
              help="Also write what was found but cannot be proven to belong anywhere "
                   "(older copies, pages of unknown buckets, pages with a wrong self-id) "
                   "to this separate bbolt file. Never mixed into --out.")
@click.option("--no-salvage", is_flag=True,
              help="Keep only what the committed tree reaches (no salvage beyond it).")
@click.option("--etcd-at-risk", type=click.Choice(["keep", "drop"]), default="keep",
              show_default=True,
              help="etcd files: keep the user keys etcd may now serve wrongly (stale or "
                   "resurrected), or drop every revision of them (absence over staleness).")
@json_option
@open_options
@guarded
def repair(db, out, force, dry_run, lost_found, no_salvage, etcd_at_risk, as_json, page_size,
           meta_index):
    """Write a valid copy of DB to --out, salvaging every record that can be read.

    The input is never changed.  The copy is written to a temporary file beside
    --out, fsynced, checked, then moved into place.  Exit 0: written, nothing
    lost; 1: written, some data could not be recovered (the report says what);
    2: nothing written.
    """
    from boltfix.repair import repair as run_repair
    from boltfix.views import render_repair

    with open_db(db, page_size) as probe:  # repair judges a forced meta itself
        total = probe.page_limit  # for the progress bar; repair opens the file itself
    with progress_bar("repairing", total, not as_json) as cb:
        report = run_repair(db, out, force=force, dry_run=dry_run, meta=meta_index,
                            page_size=page_size, progress=cb, lost_found=lost_found,
                            beyond_tree=not no_salvage, etcd_at_risk=etcd_at_risk)
    if as_json:
        emit_json(report.to_json())
    else:
        render_repair(console(), report)
    sys.exit(EXIT_PROBLEMS if report.lost_data else EXIT_OK)


# ---------------------------------------------------------------- dump, buckets, keys, get
def _stdout_gone() -> None:
    """The reader of stdout went away (`| head`): silence stdout for good so
    nothing (not even the flush at exit) prints a traceback."""
    with contextlib.suppress(Exception):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _report_damage(result, what: str = "dump") -> None:
    """Say on stderr what could not be read."""
    errors = result.errors
    for note in result.notes:
        click.echo(f"boltfix {what}: {note}", err=True)
    if errors:
        click.echo(f"boltfix {what}: the file is damaged: {len(errors)} problem(s) found while "
                   f"reading; records behind them are missing from this output "
                   f"(run `boltfix check` for details)", err=True)
        for f in errors[:5]:
            click.echo(f"  {f.code}: {f.message}", err=True)
        if len(errors) > 5:
            click.echo(f"  ... and {len(errors) - 5} more", err=True)


def _include_list(ctx, param, value):
    from boltfix.dump import STATES

    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in STATES]
    if bad or not items:
        raise click.BadParameter(f"choose from {', '.join(STATES)} (comma-separated)")
    return tuple(dict.fromkeys(items))


@main.command()
@db_argument
@click.option("--bucket", "buckets", multiple=True, metavar="NAME",
              help="Dump only this bucket and below; repeat for a nested path "
                   "(a name written 0x<hex> is hex when no bucket has the literal name).")
@click.option("--prefix", default=None, help="Only keys starting with this text "
              "(in the --bucket bucket; top-level bucket names without --bucket; on an "
              "etcd db a prefix starting with / selects `key` records by their etcd key, "
              "as etcdctl does).")
@click.option("--prefix-hex", default=None, help="Like --prefix, given as hex.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "text"]), default="jsonl",
              show_default=True, help="JSON lines, or one readable line per record.")
@click.option("--encoding", type=click.Choice(["auto", "utf8", "hex", "base64"]),
              default="auto", show_default=True,
              help="How names, keys and values are written in JSON.")
@click.option("--decode", type=click.Choice(["auto", "none", "etcd"]), default="auto",
              show_default=True, help="Add etcd's meaning of each record "
              "(auto: when the top-level buckets look like etcd's).")
@click.option("--include", default="live", show_default=True, callback=_include_list,
              help="Comma-separated: live (the tree), free (free pages), "
                   "orphan (pages neither reachable nor free, and past the high-water mark).")
@click.option("--limit", type=click.IntRange(1), default=None, help="Stop after N records.")
@click.option("--show-secrets", is_flag=True,
              help="Do not redact etcd password hashes and Kubernetes Secret data.")
@click.option("--k8s-object", is_flag=True,
              help="Add each Kubernetes object, decoded, to its \"k8s\" member "
                   "(protobuf fields by number, as protoc --decode_raw; JSON as JSON).")
@open_options
@guarded
def dump(db, buckets, prefix, prefix_hex, fmt, encoding, decode, include, limit,
         show_secrets, k8s_object, page_size, meta_index):
    """Print every record of DB as JSON lines (or text), streaming.

    Also recovers records from free and orphaned leaf pages with --include.
    Exit 0 when everything was read, 1 when some of the file could not be
    read (what could be read is still printed; stderr says what could not),
    2 when DB cannot be opened.  The JSON line format is described in
    boltfix.dump's docstring.
    """
    from boltfix.dump import ORPHAN, DumpOptions
    from boltfix.dump import dump as run_dump

    if prefix is not None and prefix_hex is not None:
        raise click.UsageError("give --prefix or --prefix-hex, not both")
    pfx = None
    if prefix is not None:
        pfx = os.fsencode(prefix)
    elif prefix_hex is not None:
        try:
            pfx = bytes.fromhex(prefix_hex)
        except ValueError:
            raise click.BadParameter("not hex", param_hint="--prefix-hex")
    d = open_db(db, page_size, meta_index)
    if d.meta is None and ORPHAN not in include:
        click.echo(f"boltfix: {db}: both meta pages are invalid; bbolt cannot open it "
                   "(try --meta 0 or --meta 1, or --include orphan)", err=True)
        sys.exit(EXIT_CANNOT)
    # a bar only when the records go to a file (a pipe may feed a pager)
    with progress_bar("dumping", d.page_limit, _stdout_is_a_file()) as cb:
        opts = DumpOptions(bucket=buckets, prefix=pfx, fmt=fmt, encoding=encoding,
                           decode=decode, include=include, limit=limit,
                           show_secrets=show_secrets, k8s_object=k8s_object, progress=cb)
        try:
            result = run_dump(d, opts)
        except BrokenPipeError:
            _stdout_gone()
            raise
    _report_damage(result)
    if "free" in include or "orphan" in include:
        r = result.records
        click.echo(f"boltfix dump: {r['free']} free record(s) from {result.free_pages_scanned} "
                   f"free page(s), {r['orphan']} orphan record(s) from "
                   f"{result.orphan_pages_scanned} orphan page(s)", err=True)
    sys.exit(EXIT_PROBLEMS if result.damaged or (d.meta is None) else EXIT_OK)


@main.command()
@db_argument
@json_option
@open_options
@guarded
def buckets(db, as_json, page_size, meta_index):
    """Show the bucket tree (top-level buckets first, sub-buckets indented).

    --json gives [{"name", "name_encoding"?, "sequence", "inline", "root",
    "keys", "buckets": [...]}] with names as in dump's auto encoding.
    """
    from boltfix.dump import DumpResult, bucket_tree
    from boltfix.record import as_text

    d = open_db(db, page_size, meta_index)
    if d.meta is None:
        from boltfix.errors import BoltError

        raise BoltError(f"{db}: both meta pages are invalid (try --meta 0 or --meta 1)")
    result = DumpResult()
    tree = bucket_tree(d, report=result.findings.append)
    try:
        if as_json:
            from boltfix import jsonout

            def conv(n):
                text = as_text(n["name"])
                item = {"name": text if text is not None else n["name"].hex()}
                if text is None:
                    item["name_encoding"] = "hex"
                item.update({k: n[k] for k in ("sequence", "inline", "root", "keys")})
                item["buckets"] = n["buckets"]
                return item

            # in place, with a stack: a deep tree must not recurse
            stack = [tree]
            while stack:
                nodes = stack.pop()
                for i, n in enumerate(nodes):  # one at a time: the old node goes at once
                    nodes[i] = conv(n)
                stack.extend(n["buckets"] for n in nodes)
            jsonout.dump(tree, sys.stdout, ensure_ascii=False)
        else:
            from boltfix.render import name_text

            stack = [(n, 0) for n in reversed(tree)]
            lines = []
            while stack:
                n, depth = stack.pop()
                lines.append("  " * depth + name_text(n["name"]))
                stack.extend((c, depth + 1) for c in reversed(n["buckets"]))
            if lines:
                click.echo("\n".join(lines))
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_gone()
        raise
    _report_damage(result, "buckets")
    sys.exit(EXIT_PROBLEMS if result.damaged else EXIT_OK)


_KEY_ENCODINGS = click.Choice(["auto", "utf8", "hex", "base64", "raw"])


def _open_bucket_or_exit(d, names, what):
    from boltfix.dump import DumpResult, open_path
    from boltfix.walk import Walker

    if d.meta is None:
        from boltfix.errors import BoltError

        raise BoltError("both meta pages are invalid (try --meta 0 or --meta 1)")
    result = DumpResult()
    walker = Walker(d, report=result.findings.append)
    bucket, why = open_path(walker, names)
    if bucket is None:
        _report_damage(result, what)
        click.echo(f"boltfix {what}: {why}", err=True)
        sys.exit(EXIT_PROBLEMS)
    return walker, bucket, result


@main.command()
@db_argument
@click.argument("bucket", nargs=-1, required=True)
@click.option("--encoding", type=_KEY_ENCODINGS, default="auto", show_default=True,
              help="auto: text when printable, else hex; utf8: text, control characters "
                   "escaped; raw: the bytes as they are.")
@click.option("--prefix", default=None,
              help="Only keys starting with this text; in etcd's `key` bucket, a prefix "
                   "starting with / selects records by their etcd key, as etcdctl does.")
@open_options
@guarded
def keys(db, bucket, encoding, prefix, page_size, meta_index):
    """Print the keys of BUCKET (a nested path: BUCKET SUB ...), one per line.

    Sub-bucket names are listed too, like bbolt's `keys`.
    """
    from boltfix.dump import key_lists
    from boltfix.record import format_key_lines

    d = open_db(db, page_size, meta_index)
    walker, b, result = _open_bucket_or_exit(d, bucket, "keys")
    out = sys.stdout.buffer
    try:
        chunk, size = [], 0
        for page_keys in key_lists(walker, b, None if prefix is None else os.fsencode(prefix)):
            lines = format_key_lines(page_keys, encoding)
            chunk += lines
            size += sum(map(len, lines))
            if size >= 1 << 20:  # bytes, not lines: keys can be 32 KB (or more)
                out.write(b"".join(chunk))
                chunk, size = [], 0
        out.write(b"".join(chunk))
        out.flush()
    except BrokenPipeError:
        _stdout_gone()
        raise
    _report_damage(result, "keys")
    sys.exit(EXIT_PROBLEMS if result.damaged else EXIT_OK)


@main.command()
@db_argument
@click.argument("path", nargs=-1, required=True)
@click.option("--encoding", type=_KEY_ENCODINGS, default="auto", show_default=True,
              help="auto: text when printable, else hex; utf8: text, control characters "
                   "escaped; raw: the bytes, no newline.")
@click.option("--show-secrets", is_flag=True,
              help="Do not redact etcd password hashes and Kubernetes Secret data.")
@open_options
@guarded
def get(db, path, encoding, show_secrets, page_size, meta_index):
    """Print the value of KEY in BUCKET (PATH is BUCKET [SUB ...] KEY).

    Exit 1 when the bucket or the key is absent (or KEY names a bucket).
    """
    from boltfix import bigrecord as BIG
    from boltfix.dump import decode_name, find_in_bucket, get_value
    from boltfix.record import format_bytes

    if len(path) < 2:
        raise click.UsageError("give a bucket and a key")
    d = open_db(db, page_size, meta_index)
    walker, b, result = _open_bucket_or_exit(d, path[:-1], "get")
    rec = None
    for cand in decode_name(path[-1]):
        rec = find_in_bucket(walker, b, cand)
        if rec is not None:
            break
    _report_damage(result, "get")
    if rec is None:
        click.echo("boltfix get: key not found", err=True)
        sys.exit(EXIT_PROBLEMS)
    if rec.is_bucket:
        click.echo(f"boltfix get: {path[-1]!r} is a bucket, not a key", err=True)
        sys.exit(EXIT_PROBLEMS)
    value, redacted = get_value(b.path, rec.value, show_secrets)
    if redacted:
        click.echo(f"boltfix get: {redacted} (use --show-secrets)", err=True)
    out = sys.stdout.buffer
    try:
        if type(value) is not bytes:  # a big value, in pieces (boltfix.bigrecord)
            for piece in BIG.format_pieces(value, encoding):
                out.write(piece)
        else:
            out.write(format_bytes(value, encoding))
        out.write(b"" if encoding == "raw" else b"\n")
        out.flush()
    except BrokenPipeError:
        _stdout_gone()
        raise
    sys.exit(EXIT_PROBLEMS if result.damaged else EXIT_OK)


if __name__ == "__main__":  # pragma: no cover
    main()
