"""The ``boltfix`` command line: a thin click layer over the library.

Exit codes (every command):
  0  done; for ``check``: no problems
  1  problems found (``check``), data not recoverable (``repair``), key absent (``get``)
  2  the file could not be opened or the request was refused; nothing written
  3  an internal error in boltfix (a bug: please report it)
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from typing import Optional

import click

from boltfix import __version__
from boltfix.errors import BoltError
from boltfix.reader import DB

EXIT_OK, EXIT_PROBLEMS, EXIT_CANNOT = 0, 1, 2


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


def guarded(f):
    """Turn BoltError into one line on stderr and exit 2; never a traceback."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except BoltError as exc:
            click.echo(f"boltfix: {exc}", err=True)
            sys.exit(EXIT_CANNOT)
        except BrokenPipeError:
            # `boltfix dump db | head`: the reader went away; that is fine.
            with contextlib.suppress(Exception):
                sys.stdout = open(os.devnull, "w")
            sys.exit(EXIT_OK)
        except (KeyboardInterrupt, SystemExit, click.exceptions.Exit, click.ClickException):
            raise
        except Exception as exc:  # a bug in boltfix, never the user's fault
            if os.environ.get("BOLTFIX_DEBUG"):
                raise
            click.echo(f"boltfix: internal error: {type(exc).__name__}: {exc} "
                       "(set BOLTFIX_DEBUG=1 for a traceback; please report it)", err=True)
            sys.exit(3)

    return wrapper


def open_db(path: str, page_size: Optional[int] = None, meta_index: Optional[int] = None) -> DB:
    return DB(path, page_size=page_size, meta=meta_index)


def emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=_json_default))


def _json_default(obj):
    if isinstance(obj, (bytes, bytearray, memoryview)):
        from boltfix.render import name_text

        return name_text(bytes(obj))
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@contextlib.contextmanager
def progress_bar(description: str, total: Optional[int], enabled: bool = True):
    """A rich progress bar on stderr, only when stderr is a terminal.

    Yields a callback taking the number of units done so far.
    """
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.completed:,}/{task.total:,} pages"), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done: bar.update(task, completed=done)


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
@click.option("--show-secrets", is_flag=True, help="Do not redact password hashes.")
@json_option
@open_options
@guarded
def page(db, ids, as_hex, show_secrets, as_json, page_size, meta_index):
    """Decode pages by id: header, elements, meta fields or freelist ids."""
    from boltfix.describe import page_view
    from boltfix.render import hexdump, redact_secrets
    from boltfix.views import render_page

    d = open_db(db, page_size, meta_index)
    views = []
    for pgid in ids:
        p = d.page(pgid)
        if as_hex:
            data = bytes(p.data())
            if not show_secrets:
                data = redact_secrets(data)
            click.echo(f"page {pgid} ({p.type}, {len(data)} bytes, offset {p.offset:#x})")
            click.echo(hexdump(data, p.offset))
            continue
        views.append(page_view(d, pgid))
    if as_hex:
        return
    if not show_secrets:
        views = [_redact_view(v) for v in views]
    if as_json:
        emit_json(views)
    else:
        c = console()
        for v in views:
            render_page(c, v)


def _redact_view(view: dict) -> dict:
    from boltfix.render import redact_secrets

    for el in view.get("elements", []):
        if isinstance(el.get("value"), bytes):
            el["value"] = redact_secrets(el["value"])
    return view


# ---------------------------------------------------------------- check
@main.command()
@db_argument
@json_option
@click.option("--max-findings", type=click.IntRange(1), default=10000, show_default=True,
              help="Keep at most this many findings (all are still counted).")
@open_options
@guarded
def check(db, as_json, max_findings, page_size, meta_index):
    """Find every problem in DB; never crashes or hangs on a damaged file.

    Exit 0 when clean, 1 when problems were found, 2 when DB cannot be opened.
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
    sys.exit(EXIT_OK if result.clean else EXIT_PROBLEMS)


if __name__ == "__main__":  # pragma: no cover
    main()
