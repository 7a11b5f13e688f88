"""``boltfix keys`` and ``get``: a bucket's keys, one value."""

from __future__ import annotations

import os
import sys

import click

from boltfix.cli.options import (
    KEY_ENCODINGS,
    db_argument,
    open_bucket_or_exit,
    open_options,
    report_damage,
)
from boltfix.session import EXIT_OK, EXIT_PROBLEMS, guarded, open_db, stdout_gone


@click.command()
@db_argument
@click.argument("bucket", nargs=-1, required=True)
@click.option("--encoding", type=KEY_ENCODINGS, default="auto", show_default=True,
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
    from boltfix.browse import key_lists
    from boltfix.text import format_key_lines

    d = open_db(db, page_size, meta_index)
    walker, b, result = open_bucket_or_exit(d, bucket, "keys")
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
        stdout_gone()
        raise
    report_damage(result, "keys")
    sys.exit(EXIT_PROBLEMS if result.damaged else EXIT_OK)


@click.command()
@db_argument
@click.argument("path", nargs=-1, required=True)
@click.option("--encoding", type=KEY_ENCODINGS, default="auto", show_default=True,
              help="auto: text when printable, else hex; utf8: text, control characters "
                   "escaped; raw: the bytes, no newline.")
@click.option("--show-secrets", is_flag=True,
              help="Do not redact etcd password hashes, Kubernetes Secret data and "
                   "raft log Data.")
@open_options
@guarded
def get(db, path, encoding, show_secrets, page_size, meta_index):
    """Print the value of KEY in BUCKET (PATH is BUCKET [SUB ...] KEY).

    Exit 1 when the bucket or the key is absent (or KEY names a bucket).
    """
    from boltfix import bigrecord as BIG
    from boltfix import containerd as CD
    from boltfix import docker as DK
    from boltfix import raftboltdb as RB
    from boltfix import vault as VT
    from boltfix.navigate import find_key, top_level_names
    from boltfix.secrets import get_value, mask_raft_log
    from boltfix.text import format_bytes

    if len(path) < 2:
        raise click.UsageError("give a bucket and a key")
    d = open_db(db, page_size, meta_index)
    walker, b, result = open_bucket_or_exit(d, path[:-1], "get")
    rec = find_key(walker, b, path[-1])
    report_damage(result, "get")
    if rec is None:
        click.echo("boltfix get: key not found", err=True)
        sys.exit(EXIT_PROBLEMS)
    if rec.is_bucket:
        click.echo(f"boltfix get: {path[-1]!r} is a bucket, not a key", err=True)
        sys.exit(EXIT_PROBLEMS)
    value, redacted = get_value(b.path, rec.value, show_secrets)
    if not show_secrets and tuple(b.path) == RB.LOGS_BUCKET \
            and RB.looks_like_raft(top_level_names(d)):
        # a raft-boltdb log: its Data may be Vault's or Consul's secrets
        value, masked = mask_raft_log(rec.value)
        redacted = "raft log Data redacted" if masked else None
    elif not show_secrets and b.path[:1] == (CD.V1,) and type(value) is bytes \
            and CD.looks_like_containerd(top_level_names(d)) and CD.recognise(d) is not None:
        # containerd: a credential-like label, a spec's environment values
        value, masked = CD.mask(b.path, bytes(rec.key), value)
        redacted = "containerd secret redacted" if masked else redacted
    elif not show_secrets and tuple(b.path) == (VT.DATA,) and type(value) is bytes \
            and VT.looks_like_vault(top_level_names(d)):
        # Vault: a storage entry (barrier-encrypted, a few plaintext)
        value, masked = VT.mask(b.path, bytes(rec.key), value)
        redacted = "Vault storage entry redacted" if masked else redacted
    elif not show_secrets and len(b.path) == 1 and bytes(b.path[0]) in DK.APPLICATIONS \
            and type(value) is bytes and DK.kind_of(top_level_names(d)) is not None \
            and DK.recognise(d) is not None:
        # Docker: credential-like volume options, labels, network driver options
        value, masked = DK.mask(b.path, bytes(rec.key), value)
        redacted = "Docker secret redacted" if masked else redacted
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
        stdout_gone()
        raise
    sys.exit(EXIT_PROBLEMS if result.damaged else EXIT_OK)
