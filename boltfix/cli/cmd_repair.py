"""``boltfix repair``: a valid copy of a damaged file."""

from __future__ import annotations

import sys

import click

from boltfix.cli.options import db_argument, json_option, open_options
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

    # opened once, with bbolt's meta (repair judges a forced meta itself):
    # its size is the progress bar's, and repair reads it (and closes it)
    d = open_db(db, page_size)
    with progress_bar("repairing", d.page_limit, not as_json) as cb:
        report = run_repair(d, out, force=force, dry_run=dry_run, meta=meta_index,
                            page_size=page_size, progress=cb, lost_found=lost_found,
                            beyond_tree=not no_salvage, etcd_at_risk=etcd_at_risk)
    if as_json:
        emit_json(report.to_json())
    else:
        render_repair(console(), report)
    sys.exit(EXIT_PROBLEMS if report.lost_data else EXIT_OK)
