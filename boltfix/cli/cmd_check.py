"""``boltfix check``: every problem in a file."""

from __future__ import annotations

import sys

import click

from boltfix.cli.cmd_wal import (
    check_with_data_dir,
    data_dir_first,
    data_dir_options,
    optional_db_argument,
    render_prediction,
)
from boltfix.cli.options import json_option, open_options
from boltfix.session import (
    EXIT_OK,
    EXIT_PROBLEMS,
    console,
    emit_json,
    guarded,
    open_db,
    progress_bar,
)


@click.command()
@optional_db_argument
@json_option
@click.option("--max-findings", type=click.IntRange(1), default=10000, show_default=True,
              help="Keep at most this many findings (all are still counted).")
@click.option("--strict", is_flag=True,
              help="Exit 1 for any finding, also warnings that never stop bbolt or etcd.")
@open_options
@data_dir_options
@guarded
def check(db, as_json, max_findings, strict, page_size, meta_index, data_dir, wal_dir):
    """Find every problem in DB; never crashes or hangs on a damaged file.

    Exit 0 when clean or only warnings that never stop bbolt or etcd were
    found (shown; --strict counts them), 1 when problems were found (with
    --data-dir: also when etcd will not start on it), 2 when DB cannot be
    opened.
    """
    from boltfix.check import check as run_check
    from boltfix.views import render_check

    db, start = data_dir_first(db, data_dir, wal_dir)
    d = open_db(db, page_size, meta_index)
    with progress_bar("checking", d.page_limit, not as_json) as cb:
        result = run_check(d, max_findings=max_findings, progress=cb)
    failed = result.failed(strict)
    if as_json:
        out = result.to_json()
        if start is not None:
            out["data_dir"] = start.to_json()
        emit_json(out)
    else:
        render_check(console(), result, db)
    if start is not None:
        if not as_json:
            render_prediction(console(), start)
        failed = failed or check_with_data_dir(start, strict) != EXIT_OK
    sys.exit(EXIT_PROBLEMS if failed else EXIT_OK)
