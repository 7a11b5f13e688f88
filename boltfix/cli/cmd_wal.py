"""``boltfix wal``, and the ``--data-dir`` view shared by ``inspect`` and
``check``: the click layer over :mod:`boltfix.wal`, :mod:`boltfix.datadir`
and :mod:`boltfix.walapply`."""

from __future__ import annotations

import json
import os
import sys
from typing import Optional

import click

from boltfix.session import EXIT_CANNOT, EXIT_OK, EXIT_PROBLEMS, guarded

#: entry types and request kinds ``--type`` takes
ENTRY_TYPES = ("normal", "conf_change", "conf_change_v2")


def _type_list(ctx, param, value):
    from boltfix.raftlog import REQUEST_NAMES

    if value is None:
        return None
    allowed = set(ENTRY_TYPES) | set(REQUEST_NAMES) | {"empty", "v2_request", "unknown"}
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise click.BadParameter(f"unknown type(s) {', '.join(bad) or '(none)'}; choose from "
                                 f"{', '.join(sorted(allowed))}")
    return frozenset(items)


@click.command("wal")
@click.argument("directory", type=click.Path(file_okay=False, path_type=str))
@click.option("--wal-dir", default=None, type=click.Path(file_okay=False, path_type=str),
              help="The WAL directory, when it is not DIR/member/wal (etcd's --wal-dir).")
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text",
              show_default=True, help="One line per entry, or one JSON object per entry.")
@click.option("--start-index", type=click.IntRange(0), default=None,
              help="Only entries with index >= N (etcd-dump-logs' --start-index N shows "
                   "those > N).")
@click.option("--end-index", type=click.IntRange(0), default=None,
              help="Only entries with index <= N.")
@click.option("--type", "types", default=None, callback=_type_list,
              help="Comma-separated entry types (normal, conf_change, conf_change_v2) or "
                   "request kinds (put, delete_range, txn, compaction, lease_grant, "
                   "lease_revoke, auth_user_add, empty, v2_request, ...): only those.")
@click.option("--revisions", is_flag=True,
              help="Add the main revision and the user keys each entry above the db's "
                   "consistent_index writes (etcd's apply rules replayed on member/snap/db).")
@click.option("--show-secrets", is_flag=True,
              help="Do not mask auth passwords, tokens and Kubernetes Secret data.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Stop after N entries.")
@guarded
def wal(directory, wal_dir, fmt, start_index, end_index, types, revisions, show_secrets,
        limit):
    """Dump the raft entries of an etcd WAL, like etcd-dump-logs.

    DIR is an etcd data dir, its member/ directory or a WAL directory.  Every
    entry of the final log (after raft's overwrites) from the first segment
    on, each request decoded.  Damage (a torn tail, a CRC mismatch, a
    missing segment) is reported on stderr with its code.  Exit 0 when the
    WAL reads cleanly (a torn tail etcd repairs is only a warning), 1 when
    it holds damage that stops etcd, 2 when DIR cannot be read.
    """
    from boltfix import datadir as D
    from boltfix import wal as W

    dd = D.open_data_dir(directory, wal_dir)
    res = W.read_wal(dd.wal_dir)
    if not res.segments:
        for f in res.findings:
            click.echo(f"boltfix wal: {f.code}: {f.message}", err=True)
        sys.exit(EXIT_CANNOT)
    replay = _replay(dd, res) if revisions else None
    out = sys.stdout
    if fmt == "text":
        out.write(_text_header(res))
    shown = 0
    for item in _entries(res, start_index, end_index, types, show_secrets, replay):
        out.write(_jsonl(item) if fmt == "jsonl" else _text(item))
        shown += 1
        if limit is not None and shown >= limit:
            break
    out.flush()
    _report(res, replay)
    sys.exit(EXIT_PROBLEMS if res.fatal() else EXIT_OK)


def _replay(dd, res):
    """(consistent_index, store, summary) from the data dir's db, or exit 2."""
    from boltfix import walapply as A
    from boltfix.errors import BoltError
    from boltfix.reader import DB

    if not dd.db_path:
        raise BoltError("--revisions needs the data dir's member/snap/db")
    with DB(dd.db_path) as db:
        from boltfix.datadir import judge_db

        ci = judge_db(dd.db_path, full_check=False).get("consistent_index") or 0
        st = A.Store.from_db(db)
    return {"ci": ci, "store": st, "summary": A.Replay()}


def _entries(res, lo: Optional[int], hi: Optional[int], types, show: bool, replay):
    from boltfix import raftlog as R
    from boltfix import wal as W
    from boltfix import walapply as A

    for rec, e in W.iter_entries(res):
        idx = e["index"]
        if hi is not None and idx > hi and replay is None:
            return
        payload = R.decode_entry_payload(e, show)
        applied = None
        if replay is not None and idx > replay["ci"]:
            # replayed on the unmasked request: a Secret's value is never shown,
            # but compares must see it
            full = payload if show else R.decode_entry_payload(e, True)
            applied = next(A.replay(replay["store"], [(e, full)], replay["ci"],
                                    replay["summary"]), None)
        if (lo is not None and idx < lo) or (hi is not None and idx > hi):
            continue
        etype = R.ENTRY_TYPES.get(e["type"], str(e["type"]))
        if types is not None and etype not in types and payload.get("kind") not in types:
            continue
        yield {"rec": rec, "entry": e, "etype": etype, "payload": payload,
               "applied": applied, "ci": replay["ci"] if replay else None}


def _request_json(payload: dict) -> dict:
    from boltfix.bigrecord import jsonable as _jsonable

    return _jsonable({k: v for k, v in payload.items() if k != "kind"})


def _record(item) -> dict:
    e = item["entry"]
    out = {"index": e["index"], "term": e["term"], "type": item["etype"],
           "kind": item["payload"].get("kind"),
           "segment": item["rec"].segment.name, "offset": item["rec"].offset,
           "request": _request_json(item["payload"])}
    if item["ci"] is not None:
        a = item["applied"]
        if a is None:
            out["applied"] = "in_db"
        else:
            j = a.to_json()
            out["revision"] = j["revision"]
            out["changes"] = j["changes"]
            if "error" in j:
                out["apply_error"] = j["error"]
    return out


def _jsonl(item) -> str:
    return json.dumps(_record(item), ensure_ascii=False) + "\n"


def _text(item) -> str:
    r = _record(item)
    # JSON text: control characters come out escaped, never raw; bytes that
    # are not printable text are {"hex": ...} (boltfix.record.as_text)
    body = json.dumps(r["request"], ensure_ascii=False, separators=(",", ":"))
    line = f"{r['term']:>4} {r['index']:>10} {r['type']:<14} {r['kind'] or '-':<24} {body}"
    if "revision" in r:
        line += f"  rev={r['revision'] if r['revision'] is not None else '-'}"
        if r.get("apply_error"):
            line += f" ({r['apply_error']})"
    elif r.get("applied"):
        line += "  (in db)"
    return line + "\n"


def _text_header(res) -> str:
    md = res.metadata
    hs = res.hard_state or {}
    lines = []
    if md:
        lines.append(f"WAL metadata: member {md['node_id']:x} cluster {md['cluster_id']:x}")
    lines.append(f"HardState: term {hs.get('term', '-')} vote {hs.get('vote', 0):x} "
                 f"commit {hs.get('commit', '-')}")
    lines.append(f"entries: {res.first_index}..{res.last_index} in {len(res.segments)} "
                 f"segment(s)" + (f", {res.overwritten} overwritten" if res.overwritten else ""))
    lines.append(f"{'term':>4} {'index':>10} {'type':<14} {'kind':<24} request")
    return "\n".join(lines) + "\n"


def _report(res, replay) -> None:
    for f in res.findings:
        click.echo(f"boltfix wal: {f.severity} {f.code}: {f.message}", err=True)
    if replay is not None and not replay["summary"].exact:
        for note in replay["summary"].notes:
            click.echo(f"boltfix wal: revisions approximate: {note}", err=True)


# ---------------------------------------------------------------- --data-dir
def data_dir_options(f):
    """``--data-dir`` and ``--wal-dir`` for inspect and check."""
    f = click.option("--wal-dir", "wal_dir", default=None,
                     type=click.Path(file_okay=False, path_type=str),
                     help="With --data-dir: the WAL directory when it is elsewhere.")(f)
    f = click.option("--data-dir", "data_dir", default=None,
                     type=click.Path(file_okay=False, path_type=str),
                     help="An etcd data dir: also say what etcd will do when started on it "
                          "(snapshots, WAL, consistent_index); DB may then be omitted.")(f)
    return f


def start_prediction(data_dir: str, wal_dir: Optional[str]):
    """Whether etcd would start from the data dir as it is (boltfix.datadir)."""
    from boltfix import datadir as D

    return D.predict_start(D.open_data_dir(data_dir, wal_dir))


def render_prediction(c, p) -> None:
    """The ``inspect --data-dir`` section."""
    from rich.markup import escape
    from rich.table import Table

    j = p.to_json()
    t = Table(title="etcd start (data dir)", title_justify="left", show_header=False)
    t.add_column("fact")
    t.add_column("value")
    snap = j.get("snapshot")
    w = j["wal"]
    hs = w["hard_state"]
    md = w.get("metadata") or {}
    ap = j["apply"]
    rows = [
        ("outcome", j["outcome"]),
        ("newest usable snapshot", f"{snap['name']} (index {snap['index']})" if snap else "none"),
        ("backend", j.get("backend") or "none"),
        ("consistent_index", j.get("consistent_index")),
        ("db term", (j.get("db") or {}).get("term")),
        ("WAL segments", len(w["segments"])),
        ("WAL entries", f"{w['first_index']} .. {w['last_index']}"),
        ("HardState", f"term {hs['term']} commit {hs['commit']}"),
        ("member / cluster", f"{md.get('member_id', '-')} / {md.get('cluster_id', '-')}"),
        ("entries etcd applies", f"{ap['count']} ({ap['from']} .. {ap['to']})"),
    ]
    if "uncommitted" in ap:
        u = ap["uncommitted"]
        rows.append(("uncommitted tail", f"{u['count']} ({u['from']} .. {u['to']})"))
    for k, v in rows:
        t.add_row(k, escape(str(v)))
    c.print(t)
    for f in p.findings:
        color = "red" if f.severity == "error" else "yellow"
        c.print(f"[{color}]{f.code}[/{color}]: {escape(f.message)}")


def check_with_data_dir(p, strict: bool = False) -> int:
    """Exit status contribution of the data dir to ``check``."""
    if p.outcome == "fails" or (strict and p.findings):
        return EXIT_PROBLEMS
    return EXIT_OK


_ = EXIT_CANNOT  # (exit codes documented in boltfix.cli)


def optional_db_argument(f):
    """DB, optional where ``--data-dir`` names it (its member/snap/db)."""
    return click.argument("db", required=False,
                          type=click.Path(dir_okay=False, path_type=str))(f)


def data_dir_first(db, data_dir, wal_dir):
    """(db path, StartPrediction or None): DB defaults to the data dir's
    member/snap/db; one of them is needed."""
    if data_dir is None:
        if wal_dir is not None:
            raise click.UsageError("--wal-dir goes with --data-dir")
        if db is None:
            raise click.UsageError("give DB (or --data-dir)")
        return db, None
    start = start_prediction(data_dir, wal_dir)
    if db is None:
        db = start.data_dir.db_path
        if not db or not os.path.lexists(db):
            from boltfix.errors import CannotOpen

            raise CannotOpen(f"{data_dir}: no member/snap/db (give DB too)")
    return db, start
