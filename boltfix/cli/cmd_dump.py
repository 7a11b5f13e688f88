"""``boltfix dump``: every record, streamed (the format: :mod:`boltfix.record`)."""

from __future__ import annotations

import os
import sys

import click

from boltfix.cli.options import db_argument, include_list, open_options, report_damage
from boltfix.session import (
    EXIT_CANNOT,
    EXIT_OK,
    EXIT_PROBLEMS,
    guarded,
    open_db,
    progress_bar,
    stdout_gone,
    stdout_is_a_file,
)


@click.command()
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
@click.option("--decode", type=click.Choice(["auto", "none", "etcd", "raft", "containerd",
                                                 "vault", "docker"]),
              default="auto", show_default=True,
              help="Add etcd's (or a HashiCorp raft-boltdb store's, containerd's "
              "metadata's, Vault's FSM's, Docker's) meaning of each record (auto: when the "
              "top-level buckets look like etcd's, raft-boltdb's logs and conf, containerd's "
              "v1 with its version, Vault's data and config, or Docker's volumes or "
              "libnetwork).")
@click.option("--include", default="live", show_default=True, callback=include_list,
              help="Comma-separated: live (the tree), free (free pages), "
                   "orphan (pages neither reachable nor free, and past the high-water mark).")
@click.option("--limit", type=click.IntRange(1), default=None, help="Stop after N records.")
@click.option("--show-secrets", is_flag=True,
              help="Do not redact etcd password hashes, Kubernetes Secret data and "
                   "raft log Data.")
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
    from boltfix.dump import DumpOptions
    from boltfix.dump import dump as run_dump
    from boltfix.record import ORPHAN

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
    with progress_bar("dumping", d.page_limit, stdout_is_a_file()) as cb:
        opts = DumpOptions(bucket=buckets, prefix=pfx, fmt=fmt, encoding=encoding,
                           decode=decode, include=include, limit=limit,
                           show_secrets=show_secrets, k8s_object=k8s_object, progress=cb)
        try:
            result = run_dump(d, opts)
        except BrokenPipeError:
            stdout_gone()
            raise
    report_damage(result)
    if "free" in include or "orphan" in include:
        r = result.records
        click.echo(f"boltfix dump: {r['free']} free record(s) from {result.free_pages_scanned} "
                   f"free page(s), {r['orphan']} orphan record(s) from "
                   f"{result.orphan_pages_scanned} orphan page(s)", err=True)
    sys.exit(EXIT_PROBLEMS if result.damaged or (d.meta is None) else EXIT_OK)
