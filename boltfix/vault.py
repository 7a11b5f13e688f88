"""Vault's integrated-storage FSM (``<raft path>/vault.db``), read in its
own terms: the content layer of issue 23.

A file is Vault's FSM by its bucket layout, never by its name
(:func:`looks_like_vault`).  The layout, read in the sources of
``github.com/hashicorp/vault``:

* ``physical/raft/fsm.go``: ``newFSM`` creates exactly two top-level
  buckets, ``data`` (``dataBucketName``) and ``config``
  (``configBucketName``).  ``Put``/``Apply``/``Restore`` put each storage
  entry under its path (``[]byte(entry.Key)``) in ``data``, the value as
  Vault's storage layer handed it down; ``config`` holds
  ``latest_indexes`` (``latestIndexKey``), ``latest_config``
  (``latestConfigKey``) and, in later releases, ``local_node_config``
  (``localNodeConfigKey``).
* ``physical/raft/types.proto``: ``IndexValue {uint64 term = 1; uint64
  index = 2}``, ``ConfigurationValue {uint64 index = 1; repeated Server
  servers = 2}``, ``Server {int32 suffrage = 1; string id = 2; string
  address = 3}`` (suffrage 0 voter, 1 nonvoter, 2 staging: raft's
  ``ServerSuffrage``); ``local_node_config`` is a message whose field 1 is
  the desired suffrage as a string.
* ``vault/barrier_aes_gcm.go``: a barrier-encrypted value is the key term
  (4 bytes, big-endian), a version byte (1 or 2: ``AESGCMVersion1/2``), the
  GCM nonce and the sealed bytes.  A seal-wrapped entry is a protobuf whose
  field 1 holds such bytes (go-kms-wrapping's ``BlobInfo.Ciphertext``).

``data`` values are encrypted by Vault's barrier: nothing of them is
decoded, only their shape is told (:func:`value_kind`), and unless
``show_secrets`` ``dump`` masks them whole (a few, such as
``core/seal-config``, are plaintext).  ``config`` is decoded: raft's
latest index and term and the cluster's membership.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Optional, Tuple

from boltfix.navigate import top_bucket_batches
from boltfix.protowire import WIRE_LEN, WIRE_VARINT, ProtoError, fields, int32, iter_fields
from boltfix.reader import DB
from boltfix.text import name_text

__all__ = ["APPLICATION", "DATA", "CONFIG", "looks_like_vault", "value_kind", "decode_record",
           "mask", "view_secret_ranges", "VaultFacts", "scan"]

APPLICATION = "vault fsm"
DATA = b"data"
CONFIG = b"config"
#: the keys Vault writes in ``config`` (``physical/raft/fsm.go``)
CONFIG_KEYS = (b"latest_indexes", b"latest_config", b"local_node_config")
SUFFRAGE = {0: "voter", 1: "nonvoter", 2: "staging"}
#: the barrier's version byte (AESGCMVersion1, AESGCMVersion2)
BARRIER_VERSIONS = (1, 2)
#: the shortest barrier value: term, version, 12-byte nonce, 16-byte tag
BARRIER_MIN = 4 + 1 + 12 + 16
#: key prefixes kept by name in the facts (all are counted)
PREFIXES_SHOWN = 50


def looks_like_vault(top_level_bucket_names: Iterable) -> bool:
    """The root holds exactly ``data`` and ``config`` (what ``newFSM`` makes)."""
    names = {n.encode("utf-8", "surrogateescape") if isinstance(n, str) else bytes(n)
             for n in top_level_bucket_names}
    return names == {DATA, CONFIG}


def _barrier(value: bytes) -> Optional[Tuple[int, int]]:
    """(key term, version) when ``value`` has the barrier's shape, else None."""
    if len(value) >= BARRIER_MIN and value[4] in BARRIER_VERSIONS:
        term = int.from_bytes(value[:4], "big")
        return (term, value[4]) if term > 0 else None
    return None


def value_kind(value) -> dict:
    """What a ``data`` value is, without decrypting anything: ``barrier``
    (with ``key_term`` and ``version``), ``seal-wrapped`` (a protobuf whose
    field 1 is barrier bytes), ``json`` (plaintext JSON), or ``other``."""
    raw = bytes(value)
    out: dict = {"length": len(raw)}
    got = _barrier(raw)
    if got is not None:
        out.update(kind="barrier", key_term=got[0], version=got[1])
        return out
    try:
        first = next(iter_fields(raw), None) if raw[:1] == b"\x0a" else None
    except ProtoError:
        first = None
    if first is not None and first[1] == WIRE_LEN:
        got = _barrier(bytes(first[2]))
        if got is not None:
            out.update(kind="seal-wrapped", key_term=got[0], version=got[1])
            return out
    if raw[:1] in (b"{", b"[") and raw[-1:] in (b"}", b"]"):
        out["kind"] = "json"
    else:
        out["kind"] = "other"
    return out


def _uint(msg: bytes, names: dict) -> dict:
    """The varint fields of ``msg`` named by ``names`` (number -> name)."""
    out = {}
    for no, wt, v, _off in fields(msg):
        if no in names and wt == WIRE_VARINT:
            out[names[no]] = v
    return out


def decode_config(key: bytes, value: bytes) -> dict:
    """A ``config`` record as Vault wrote it (types.proto), or its bytes."""
    try:
        if key == b"latest_indexes":
            return _uint(value, {1: "term", 2: "index"})
        if key == b"latest_config":
            out: dict = {"index": None, "servers": []}
            for no, wt, v, _off in fields(value):
                if no == 1 and wt == WIRE_VARINT:
                    out["index"] = v
                elif no == 2 and wt == WIRE_LEN:
                    out["servers"].append(_server(bytes(v)))
            return out
        if key == b"local_node_config":
            for no, wt, v, _off in fields(value):
                if no == 1 and wt == WIRE_LEN:
                    return {"desired_suffrage": name_text(bytes(v))}
            return {}
    except ProtoError as exc:
        return {"error": str(exc)[:200]}
    return {"value": name_text(value)}


def _server(msg: bytes) -> dict:
    """One ``Server`` of a ``ConfigurationValue``."""
    out = {"id": "", "address": "", "suffrage": "voter"}
    for no, wt, v, _off in fields(msg):
        if no == 1 and wt == WIRE_VARINT:
            out["suffrage"] = SUFFRAGE.get(int32(v), str(int32(v)))
        elif no == 2 and wt == WIRE_LEN:
            out["id"] = name_text(bytes(v))
        elif no == 3 and wt == WIRE_LEN:
            out["address"] = name_text(bytes(v))
    return out


def decode_record(path: Tuple[bytes, ...], key, value, show_secrets: bool = False
                  ) -> Optional[dict]:
    """The ``vault`` member of a dump line: a ``data`` value's kind (never
    decrypted), a ``config`` value decoded; None elsewhere or for a bucket
    entry.  Never raises."""
    if len(path) != 1 or value is None or path[0] not in (DATA, CONFIG):
        return None
    try:
        if path[0] == DATA:
            return {"path": name_text(bytes(key)), **value_kind(value)}
        return {"key": name_text(bytes(key)), **decode_config(bytes(key), bytes(value))}
    except Exception as exc:  # never raise on file bytes
        return {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}


def view_secret_ranges(key, value) -> list:
    """For ``page`` and ``page --hex`` of a Vault FSM, where a value's bucket
    is unknown: every value whole but those under ``config``'s own keys
    (:data:`CONFIG_KEYS`), as ``dump`` masks every ``data`` value."""
    n = len(value)
    return [] if not n or bytes(key) in CONFIG_KEYS else [(0, n)]


def mask(path, key, value) -> Tuple[bytes, bool]:
    """A ``data`` value masked whole (``*`` bytes, the same length); whether masked."""
    if len(path) == 1 and path[0] == DATA and len(value):
        return b"*" * len(value), True
    return value, False


class VaultFacts:
    """Facts about a Vault FSM, one record at a time (bounded memory)."""

    def __init__(self):
        self.entries = 0
        self.kinds: Counter = Counter()
        self.key_terms: Counter = Counter()
        self.prefixes: Counter = Counter()
        self.config: dict = {}

    def see_data(self, key: bytes, value: bytes) -> None:
        """One ``data`` record."""
        self.entries += 1
        k = value_kind(value)
        self.kinds[k["kind"]] += 1
        if "key_term" in k:
            self.key_terms[k["key_term"]] += 1
        prefix = key.split(b"/", 1)[0]
        if prefix in self.prefixes or len(self.prefixes) < PREFIXES_SHOWN:
            self.prefixes[prefix] += 1

    def see_config(self, key: bytes, value: bytes) -> None:
        """One ``config`` record (at most 100 kept)."""
        if len(self.config) < 100:
            self.config[name_text(key)] = decode_config(key, value)

    def to_json(self) -> dict:
        """The facts as ``inspect --json``'s ``vault`` member."""
        latest = self.config.get("latest_indexes", {})
        conf = self.config.get("latest_config", {})
        return {
            "application": APPLICATION,
            "data": {"entries": self.entries, "encrypted": "barrier (Vault's keyring): "
                     "nothing decoded", "kinds": dict(sorted(self.kinds.items())),
                     "key_terms": {str(k): v for k, v in sorted(self.key_terms.items())},
                     "prefixes": {name_text(k): v for k, v in sorted(self.prefixes.items())}},
            "latest_index": latest.get("index"),
            "latest_term": latest.get("term"),
            "configuration_index": conf.get("index"),
            "servers": conf.get("servers", []),
            "config_keys": sorted(self.config),
            "config": self.config,
        }


def scan(db: DB, tree=None) -> VaultFacts:
    """Walk ``data`` and ``config`` (a walk of each, quiet), a page at a time."""
    facts = VaultFacts()
    for name, batch in top_bucket_batches(db, (DATA, CONFIG), tree):
        for key, value in zip(batch.keys, batch.values):
            if name == DATA:
                facts.see_data(bytes(key), bytes(value))
            else:
                facts.see_config(bytes(key), bytes(value))
    return facts

