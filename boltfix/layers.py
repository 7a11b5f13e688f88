"""boltfix's layers: which module lives on which floor.  The one table of it.

Imports point down only: a module may import modules of its own layer (as
long as no import circle forms) and of the layers below, never above.
``tests/unit/test_layers.py`` walks every module's imports (with ``ast``) and
fails on an upward import, a circle, a module missing from this table, or a
function-local import of a boltfix module outside the front layer (where
``boltfix --help`` deliberately loads nothing it does not need).

A package (``salvage``, ``cli``) is listed once: all its modules share its
layer.  A new module goes into the table, on the lowest floor whose
modules are all it needs:

* etcd's WAL and raft snapshots (``wal``, ``snap``): bytes in, records out
  -> content, beside ``etcd`` (the wire format is ``protowire``, bucket
  names and revision keys ``etcdkeys``);
* application decoders: content, beside ``k8s`` (``raftboltdb``: HashiCorp
  raft-boltdb's ``raft.db``; more of them (containerd, docker, vault, nomad)
  may become a content package ``apps``, one module per application);
* an etcd data-dir analysis (db + WAL + snapshots together) -> operations,
  beside ``served``;
* a crash-consistent choice of the tree repair writes -> operations, beside
  ``repair`` (a piece that only reads pages and follows pointers -> tree).
"""

from __future__ import annotations

#: (layer, its modules), bottom first
LAYERS = (
    # what everything stands on: the on-disk layout, errors, the one
    # text-or-hex rule (a finding's JSON names buckets by it), findings and
    # their registry, the optional C core's loader
    ("foundation", ("__init__", "layers", "structs", "errors", "text", "findings", "ccore")),
    # bytes of the file: the only place that unpacks pages, the input guard,
    # RSS bounds of the map
    ("pages", ("resident", "guard", "reader")),
    # following pointers: what a walk yields, the walk, finding a bucket or
    # key, the page map, the pages the tree does not reach
    ("tree", ("leaves", "walk", "navigate", "pagemap", "unreached")),
    # bytes in, values out (never the tree): huge values, the protobuf wire
    # format, JSON rendering of bytes, etcd's keys, Kubernetes, every masking
    # rule, the dump line format, etcd's records
    ("content", ("bigbytes", "protowire", "bigrecord", "etcdkeys", "k8s", "secrets", "record",
                 "etcd", "raftlog", "raftboltdb", "containerd",
                 "vault", "docker")),
    # what the commands do
    ("operations", ("served", "treecheck", "commits", "check", "browse", "describe", "dump",
                    "writebehind", "writer", "salvage", "repair", "wal", "walapply",
                    "datadir", "rewind", "members")),
    # for people
    ("presentation", ("jsonout", "render", "verdict", "views", "pagemapview")),
    # the command line: one command's life, and the click commands
    ("front", ("session", "cli", "__main__")),
)

#: module (top-level name under boltfix) -> its layer's index in LAYERS
LEVEL = {name: i for i, (_, names) in enumerate(LAYERS) for name in names}

#: the layers whose functions may import boltfix modules lazily
LAZY_IMPORTS_ALLOWED = ("front",)
