"""``boltfix buckets``: the bucket tree."""

from __future__ import annotations

import sys

import click

from boltfix.cli.options import db_argument, json_option, open_options, report_damage
from boltfix.errors import BoltError
from boltfix.session import EXIT_OK, EXIT_PROBLEMS, guarded, open_db, stdout_gone


@click.command()
@db_argument
@json_option
@open_options
@guarded
def buckets(db, as_json, page_size, meta_index):
    """Show the bucket tree (top-level buckets first, sub-buckets indented).

    --json gives [{"name", "name_encoding"?, "sequence", "inline", "root",
    "keys", "buckets": [...]}] with names as in dump's auto encoding.
    """
    from boltfix import jsonout
    from boltfix.browse import bucket_tree
    from boltfix.dump import DumpResult
    from boltfix.views import bucket_lines, bucket_tree_json

    d = open_db(db, page_size, meta_index)
    if d.meta is None:
        raise BoltError(f"{db}: both meta pages are invalid (try --meta 0 or --meta 1)")
    result = DumpResult()
    tree = bucket_tree(d, report=result.findings.append)
    try:
        if as_json:
            jsonout.dump(bucket_tree_json(tree), sys.stdout, ensure_ascii=False)
        else:
            lines = bucket_lines(tree)
            if lines:
                click.echo("\n".join(lines))
        sys.stdout.flush()
    except BrokenPipeError:
        stdout_gone()
        raise
    report_damage(result, "buckets")
    sys.exit(EXIT_PROBLEMS if result.damaged else EXIT_OK)
