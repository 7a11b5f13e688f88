"""The ``boltfix`` command line: a thin click layer over the library, one
module per command group (as bbolt's ``cmd/bbolt/command_*.go``):
``cmd_inspect`` (inspect, pages, page), ``cmd_check``, ``cmd_repair``,
``cmd_dump``, ``cmd_buckets``, ``cmd_keys`` (keys, get), ``cmd_wal`` (wal, and the
``--data-dir`` view of inspect and check), ``cmd_members``.  How a command
ends (its exit codes, signals, an input that changes) is
:mod:`boltfix.session`.
"""

from __future__ import annotations

import click

from boltfix import __version__
from boltfix.cli import (
    cmd_buckets,
    cmd_check,
    cmd_dump,
    cmd_inspect,
    cmd_keys,
    cmd_members,
    cmd_repair,
    cmd_wal,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="boltfix")
def main():
    """Inspect, check, dump and repair bbolt files (etcd's member/snap/db).

    The input file is only ever opened read-only.
    """


for _command in (cmd_inspect.inspect, cmd_inspect.pages, cmd_inspect.page, cmd_check.check,
                 cmd_repair.repair, cmd_dump.dump, cmd_buckets.buckets, cmd_keys.keys,
                 cmd_keys.get, cmd_wal.wal, cmd_members.members):
    main.add_command(_command)
