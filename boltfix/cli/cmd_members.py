"""``boltfix members``: two or more members' data dirs side by side (the
click layer over :mod:`boltfix.members`)."""

from __future__ import annotations

import sys

import click

from boltfix.session import EXIT_OK, EXIT_PROBLEMS, emit_json, guarded


@click.command("members")
@click.argument("data_dirs", nargs=-1, required=True,
                type=click.Path(file_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@guarded
def members(data_dirs, as_json):
    """Compare the data dirs of two or more members of one etcd cluster.

    Says which member holds the newest intact state (HardState term and
    commit, WAL last index, db consistent_index), which members etcd will
    not start on (or whose db or WAL is damaged), and the standard recovery
    for each member: remove and re-add a bad member while the good ones are
    a quorum, else restore every member from the best one.  Nothing is
    written.  Exit 0: every member is intact; 1: some member is not (the
    commands are printed); 2: a data dir cannot be read, or the data dirs
    are not members of one cluster.
    """
    from boltfix.members import compare

    rep = compare(list(data_dirs))
    if as_json:
        emit_json(rep)
    else:
        _render(rep)
    sys.exit(EXIT_OK if rep["intact"] == len(rep["members"]) else EXIT_PROBLEMS)


def _render(rep: dict) -> None:
    """The report as text."""
    click.echo(f"cluster {rep['cluster_id']}: {rep['intact']} of {len(rep['members'])} "
               f"data dirs intact (cluster of {rep['cluster_size']}, quorum "
               f"{rep['quorum']}); newest intact state: {rep['best']}")
    for m in rep["members"]:
        hs = m["hard_state"]
        click.echo(f"  {m['status']:11s} {m['member_id']} {m['data_dir']}: etcd "
                   f"{m['outcome']}; HardState term {hs['term']} commit {hs['commit']}, WAL "
                   f"last {m['wal_last_index']}, db consistent_index "
                   f"{m['db_consistent_index']}" + (" (newest)" if m["newest"] else ""))
        for why in m["why"]:
            click.echo(f"      {why}")
    click.echo(f"recovery: {rep['route']}")
    for r in rep["recovery"]:
        click.echo(f"  {r['member_id']} ({r['data_dir']}): {r['action']}")
        for c in r["commands"]:
            click.echo(f"      {c}")
