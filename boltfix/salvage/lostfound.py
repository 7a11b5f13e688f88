"""The lost+found file: the evidence salvage could not place, as a
separate, valid bbolt file (never the repaired output)."""

from __future__ import annotations

import json
import os
import tempfile

from boltfix import structs as S
from boltfix.errors import BoltError
from boltfix.reader import DB, leaf_elements
from boltfix.salvage.plan import MAX_EVIDENCE_RECORDS, Evidence, Plan
from boltfix.writer import BoltWriter


def write_lost_found(db: DB, plan: Plan, out_path: str, force: bool = False) -> dict:
    """The evidence as a separate, valid bbolt file: one bucket per orphan
    subtree or page, ``page-NNNNNNNN-<state>``, holding ``provenance`` (JSON)
    and a ``records`` sub-bucket with its records as they lie in the file
    (sorted, a repeated key kept once).  Written to a temp file beside
    ``out_path``, fsynced, then moved into place."""
    out_path = os.fspath(out_path)
    if os.path.lexists(out_path) and (not force or not os.path.isfile(out_path)
                                      or os.path.islink(out_path)):
        raise BoltError(f"{out_path} exists; lost+found is written only to a new file "
                        "(or over a regular file with --force)")
    directory = os.path.dirname(os.path.abspath(out_path))
    fd, tmp = tempfile.mkstemp(prefix=".boltfix-lost-found-", suffix=".tmp", dir=directory)
    total = 0
    try:
        with os.fdopen(fd, "w+b", buffering=0) as raw:
            w = BoltWriter(raw, db.page_size)
            names = set()
            named = sorted((f"page-{e.page:08d}-{e.state}".encode(), i, e)
                           for i, e in enumerate(plan.evidence))  # the writer's key order
            for name, _, ev in named:
                if name in names:
                    continue
                names.add(name)
                recs = evidence_records(db, ev)
                recs = recs[:max(0, MAX_EVIDENCE_RECORDS - total)]
                total += len(recs)
                w.begin_bucket(name)
                prov = dict(ev.to_json(), records=len(recs))
                w.put(b"provenance", json.dumps(prov, sort_keys=True).encode())
                w.begin_bucket(b"records")
                for k, v in recs:
                    if isinstance(v, list):  # an inline sub-bucket, with its records
                        w.begin_bucket(k)
                        for k2, v2 in v:
                            w.put(k2, v2)
                        w.end_bucket()
                    else:
                        w.put(k, v)
                w.end_bucket()
                w.end_bucket()
            stats = w.close()
            raw.flush()
            os.fsync(raw.fileno())
        if force:
            os.replace(tmp, out_path)
        else:
            os.link(tmp, out_path)  # fails if it appeared meanwhile: no clobber
    except FileExistsError as exc:
        raise BoltError(f"{out_path} appeared while writing lost+found; nothing replaced") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return {"path": out_path, "subtrees": len(plan.evidence), "records": total,
            "pages": stats.as_dict().get("pages") if hasattr(stats, "as_dict") else None}


def evidence_records(db: DB, ev: Evidence) -> list[tuple[bytes, object]]:
    """(key, value) of the evidence, sorted, a repeated key kept once; an
    inline sub-bucket's value is the list of its own records (its records
    live inside its value, so they are evidence too)."""
    recs = list(ev.records)
    ps = db.page_size
    for pg in ev.leaves:
        _pid, _flags, count, overflow = S.PAGE_HEADER.unpack_from(db.buf, pg * ps)
        end = min((pg + 1 + overflow) * ps, db.size)
        for _, f, k, v, t in leaf_elements(db.buf, pg * ps, count, end):
            if not t:
                inline = _inline_records(v) if f & S.BUCKET_LEAF_FLAG else None
                recs.append((k, bytes(v) if inline is None else inline))
    out, last = [], None
    for k, v in sorted(recs, key=lambda kv: kv[0]):
        if k != last and 0 < len(k) <= S.MAX_KEY_SIZE and len(v) <= S.MAX_VALUE_SIZE:
            out.append((k, v))
            last = k
    return out


def _inline_records(value) -> list[tuple[bytes, bytes]] | None:
    """The plain records of an inline bucket's value (bucket header with
    root 0, then a leaf page), in key order as the checked decoder reads
    them; None when it is not one (a paged sub-bucket: its pages are
    evidence of their own)."""
    if len(value) < S.BUCKET_HEADER_SIZE + S.PAGE_HEADER_SIZE or \
            S.BUCKET_HEADER.unpack_from(value, 0)[0] != 0:
        return None
    inline = bytes(value[S.BUCKET_HEADER_SIZE:])
    _, flags, count, _ = S.PAGE_HEADER.unpack_from(inline, 0)
    if flags != S.LEAF_PAGE_FLAG:
        return None
    out, last = [], None
    for _, f, k, v, t in leaf_elements(inline, 0, count, len(inline)):
        if not t and not f and 0 < len(k) <= S.MAX_KEY_SIZE and (last is None or k > last):
            out.append((k, bytes(v)))
            last = k
    return out


