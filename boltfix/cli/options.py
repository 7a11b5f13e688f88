"""What the commands share: their arguments and options, and how they say
on stderr what could not be read.  (Modules of boltfix are imported inside
the functions that need them: ``boltfix --help`` loads none of them.)"""

from __future__ import annotations

import sys

import click

from boltfix.errors import BoltError
from boltfix.record import STATES
from boltfix.session import EXIT_PROBLEMS


def db_argument(f):
    """The DB argument: the input file."""
    return click.argument("db", type=click.Path(dir_okay=False, path_type=str))(f)


def json_option(f):
    """``--json``: the result as JSON instead of tables."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print the result as JSON instead of tables.")(f)


def open_options(f):
    """Options that override how the file is opened."""
    f = click.option("--page-size", type=int, default=None,
                     help="Force the page size instead of reading it from the meta.")(f)
    f = click.option("--meta", "meta_index", type=click.IntRange(0, 1), default=None,
                     help="Use meta page 0 or 1 instead of bbolt's choice.")(f)
    return f


KEY_ENCODINGS = click.Choice(["auto", "utf8", "hex", "base64", "raw"])


def include_list(ctx, param, value):
    """``--include``'s callback: a comma-separated list of record states."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in STATES]
    if bad or not items:
        raise click.BadParameter(f"choose from {', '.join(STATES)} (comma-separated)")
    return tuple(dict.fromkeys(items))


def report_damage(result, what: str = "dump") -> None:
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


def open_bucket_or_exit(d, names, what):
    """The walker, the bucket ``names`` names and the damage seen on the way
    (a :class:`~boltfix.dump.DumpResult`); exit 1 when it is not there."""
    from boltfix.dump import DumpResult
    from boltfix.navigate import open_path
    from boltfix.walk import Walker

    if d.meta is None:
        raise BoltError("both meta pages are invalid (try --meta 0 or --meta 1)")
    result = DumpResult()
    walker = Walker(d, report=result.findings.append)
    bucket, why = open_path(walker, names)
    if bucket is None:
        report_damage(result, what)
        click.echo(f"boltfix {what}: {why}", err=True)
        sys.exit(EXIT_PROBLEMS)
    return walker, bucket, result
