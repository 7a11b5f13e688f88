"""``boltfix repair``: a valid copy of a damaged file."""

from __future__ import annotations

import sys

import click

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
@click.argument("db", required=False, type=click.Path(dir_okay=False, path_type=str))
@click.option("--out", "-o", "out", default=None, type=click.Path(dir_okay=False, path_type=str),
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
@click.option("--data-dir", "data_dir", default=None,
              type=click.Path(file_okay=False, path_type=str),
              help="An etcd data dir: write a whole new data dir to --out-data-dir (WAL and "
                   "snapshots copied, the db repaired and set back so that etcd re-applies "
                   "from the WAL what the db lost) instead of DB to --out.")
@click.option("--wal-dir", "wal_dir", default=None,
              type=click.Path(file_okay=False, path_type=str),
              help="With --data-dir: the WAL directory when it is elsewhere (copied into "
                   "--out-data-dir's member/wal).")
@click.option("--out-data-dir", "out_data_dir", default=None,
              type=click.Path(file_okay=False, path_type=str),
              help="With --data-dir: the new data dir to write (must not exist unless "
                   "--force).")
@click.option("--older-snapshot", is_flag=True,
              help="With --data-dir: when the lost revisions lie below the newest raft "
                   "snapshot and the WAL still holds them, set the newer .snap files aside "
                   "(*.snap.skipped) so that etcd starts from an older snapshot (or the WAL's "
                   "start) and re-applies them.")
@click.option("--multi-member", is_flag=True,
              help="With --data-dir: write the data dir even when the member is one of "
                   "several (the usual fix is to remove and re-add it).")
@json_option
@open_options
@guarded
def repair(db, out, force, dry_run, lost_found, no_salvage, etcd_at_risk, data_dir, wal_dir,
           out_data_dir, older_snapshot, multi_member, as_json, page_size, meta_index):
    """Write a valid copy of DB to --out, salvaging every record that can be read.

    The input is never changed.  The copy is written to a temporary file beside
    --out, fsynced, checked, then moved into place.  Exit 0: written, nothing
    lost; 1: written, some data could not be recovered (the report says what);
    2: nothing written.
    """
    from boltfix.repair import repair as run_repair
    from boltfix.views import render_repair

    if data_dir is not None or out_data_dir is not None:
        if db is not None or out is not None or data_dir is None or out_data_dir is None:
            raise click.UsageError("--data-dir goes with --out-data-dir (and neither with DB "
                                   "or --out)")
        if dry_run or lost_found or no_salvage or etcd_at_risk != "keep" or page_size \
                or meta_index is not None:
            raise click.UsageError("--data-dir takes only --wal-dir, --out-data-dir, "
                                   "--force, --older-snapshot, --multi-member and --json")
        _data_dir(data_dir, wal_dir, out_data_dir, force, multi_member, older_snapshot,
                  as_json)
    if db is None or out is None:
        raise click.UsageError("give DB and --out (or --data-dir and --out-data-dir)")
    if wal_dir is not None or multi_member or older_snapshot:
        raise click.UsageError("--wal-dir, --older-snapshot and --multi-member go with "
                               "--data-dir")
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


def _data_dir(data_dir, wal_dir, out_dir, force, multi_member, older_snapshot, as_json):
    """``repair --data-dir``: a new data dir etcd starts from (boltfix.rewind)."""
    from boltfix.rewind import repair_data_dir
    from boltfix.views import render_data_dir_repair

    rep = repair_data_dir(data_dir, wal_dir, out_dir, force=force, multi_member=multi_member,
                          older_snapshot=older_snapshot)
    if as_json:
        emit_json(rep.to_json())
    else:
        render_data_dir_repair(console(), rep)
    sys.exit(EXIT_PROBLEMS if rep.lost_data else EXIT_OK)
