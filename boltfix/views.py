"""Rich renderings of the library's results (the CLI's human output)."""

from __future__ import annotations

import json

from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from boltfix.describe import BUCKETS_SHOWN
from boltfix.etcdkeys import KEY_BUCKET, decode_revision
from boltfix.text import as_text, name_text
from boltfix.verdict import check_verdict, merge_rows, repair_verdict


def short(data, limit: int = 64) -> str:
    """A value shortened for tables."""
    text = name_text(data)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return str(n)


# ---------------------------------------------------------------- inspect
def render_inspect(c, info: dict) -> None:
    """``inspect``'s tables: file, metas, freelist, page types, buckets, etcd facts."""
    f = info["file"]
    c.print(f"[bold]{f['path']}[/bold]  {_fmt_bytes(f['size'])}")
    c.print(f"page size {f['page_size']} (from {f['page_size_source']}); "
            f"{f['pages_in_file']:,} pages in the file; high-water mark "
            f"{f['hwm'] if f['hwm'] is not None else 'unknown'}")
    if f["truncated"]:
        c.print(f"[red]the file is shorter than its high-water mark: "
                f"{f['hwm'] - f['pages_in_file']:,} pages are missing[/red]")

    t = Table(title="meta pages", title_justify="left")
    t.add_column("field")
    for m in info["metas"]:
        used = " (in use)" if info["meta_in_use"] == m["index"] else ""
        t.add_column(f"meta {m['index']}{used}")
    m0, m1 = info["metas"]
    for key in ("txid", "root", "freelist", "pgid", "page_size", "sequence", "checksum",
                "checksum_ok", "valid"):
        t.add_row(key, str(m0[key]), str(m1[key]))
    t.add_row("problems", ", ".join(m0["problems"]) or "-", ", ".join(m1["problems"]) or "-")
    trees = {tr["source"]: tr for tr in info.get("trees", [])}
    t.add_row("its tree", *(_tree_health(trees.get(f"meta {i}")) for i in (0, 1)))
    c.print(t)
    c.print(f"meta in use: {info['meta_in_use'] if info['meta_in_use'] is not None else 'none'}"
            f" ({info['meta_reason']})")

    fl = info["freelist"]
    c.print(f"freelist: {fl['mode']}; free pages: {fl.get('free_pages')}")
    types = info["page_types"]
    c.print("reachable pages by type: " + ", ".join(f"{k} {v:,}" for k, v in sorted(types.items())))

    tree = Tree("[bold]buckets[/bold]")
    _add_buckets(tree, info["buckets"], info.get("top_level_buckets_not_shown", 0))
    if info.get("buckets_not_shown"):
        c.print(f"{info['buckets_not_shown']:,} bucket(s) in all not shown: inspect "
                f"describes the first {BUCKETS_SHOWN:,} (boltfix buckets lists them all)")
    c.print(tree)

    if "etcd" in info:
        _render_etcd(c, info["etcd"])
    if "raft" in info:
        _render_raft(c, info["raft"])
    if "containerd" in info:
        _render_containerd(c, info["application"], info["containerd"])
    if "vault" in info:
        _render_vault(c, info["vault"])
    if "docker" in info:
        _render_docker(c, info["docker"])
    probs = info["problems"]
    if probs["total"]:
        c.print(f"[yellow]{probs['total']} problem(s) seen while reading "
                f"({', '.join(f'{k} x{v}' for k, v in probs['counts'].items())}); "
                "run `boltfix check` for all of them[/yellow]")


#: bucket levels the tree shows; deeper ones are summed up in one line
#: (rich draws 4 columns of guides per level: 1,000 levels are unreadable)
TREE_LEVELS_SHOWN = 12


def _add_buckets(tree, buckets, more=0) -> None:
    """The bucket tree as rich Tree nodes, with an explicit stack (a tree of
    a thousand levels must not recurse).  ``more``: buckets of this level
    that describe() left out (see its BUCKETS_SHOWN)."""
    # frames: (rich node, bucket nodes to add under it, their level), or
    # (rich node, a note to add under it last, None)
    stack = [(tree, _more_note(more), None), (tree, buckets, 1)]
    while stack:
        parent, nodes, level = stack.pop()
        if level is None:
            if nodes:
                parent.add(nodes)
            continue
        for b in nodes:
            node = parent.add(_bucket_line(b))
            note = _more_note(b.get("more_buckets", 0))
            if b["buckets"] and level >= TREE_LEVELS_SHOWN:
                levels, count = _subtree_size(b["buckets"])
                note = (f"[dim]… {levels:,} more level(s) with {count:,} bucket(s) not "
                        "shown (boltfix buckets lists them all)[/dim]")
            stack.append((node, note, None))
            if b["buckets"] and level < TREE_LEVELS_SHOWN:
                stack.append((node, b["buckets"], level + 1))


def _more_note(more: int) -> str:
    return (f"[dim]… {more:,} more bucket(s) not shown (boltfix buckets lists them "
            "all)[/dim]") if more else ""


def _subtree_size(buckets):
    """(levels, buckets) below a node, counted with a stack."""
    levels, count = 0, 0
    stack = [(buckets, 1)]
    while stack:
        nodes, level = stack.pop()
        levels = max(levels, level)
        count += len(nodes)
        stack.extend((b["buckets"], level + 1) for b in nodes if b["buckets"])
    return levels, count


def _bucket_line(b) -> str:
    facts = [f"{b['keys']:,} keys"]
    if b.get("unreadable"):
        facts = ["[red]unreadable[/red]"]
    elif b.get("inline"):
        facts.append("inline")
    else:
        facts.append(f"depth {b.get('depth')}, {b.get('pages', 0):,} pages, "
                     f"root {b.get('root_page')}")
    if b.get("sequence"):
        facts.append(f"seq {b['sequence']}")
    return f"[cyan]{b['name']}[/cyan]  " + ", ".join(facts)


def _render_etcd(c, e: dict) -> None:
    t = Table(title="etcd", title_justify="left", show_header=False)
    t.add_column("fact")
    t.add_column("value")
    revs = e["revisions"]
    rows = [
        ("likely etcd version", e["version"]),
        ("consistent_index", e["consistent_index"]),
        ("term", e["term"]),
        ("revisions in `key`", f"{revs['first']} .. {revs['last']} "
                               f"({revs['records']:,} records, {revs['tombstones']:,} tombstones)"),
        ("scheduled compaction", _revision(e["scheduled_compact_revision"])),
        ("finished compaction", _revision(e["finished_compact_revision"])),
        ("members", ", ".join(_member(m) for m in e["members"]) or "-"),
        ("auth enabled", e["auth_enabled"]),
        ("users / leases", f"{e['users']} / {e['leases']}"),
    ]
    for k, v in rows:
        t.add_row(k, str(v))
    c.print(t)
    kube = e.get("kubernetes")
    if kube:
        k = Table(title="Kubernetes objects", title_justify="left",
                  caption=f"{kube['namespaces']} namespaces",
                  caption_justify="left")
        k.add_column("resource")
        k.add_column("objects", justify="right")
        for res, n in kube["objects"].items():
            k.add_row(escape(name_text(res.encode("utf-8", "surrogateescape"))), f"{n:,}")
        c.print(k)


def _render_raft(c, r: dict) -> None:
    """A HashiCorp raft-boltdb store's facts (boltfix.raftboltdb)."""
    t = Table(title=f"application: {r['application']} (HashiCorp raft: Consul, Nomad, Vault)",
              title_justify="left", show_header=False)
    t.add_column("fact")
    t.add_column("value")
    logs = r["logs"]
    gaps = logs["gaps"]
    gap_text = "none"
    if gaps["count"]:
        gap_text = (f"{gaps['count']:,} ({gaps['missing_indexes']:,} indexes missing): "
                    + ", ".join(f"{a}..{b}" for a, b in gaps["first"]))
        if gaps["count"] > len(gaps["first"]):
            gap_text += ", ..."
    rows = [
        ("log indexes", f"{logs['first_index']} .. {logs['last_index']} "
                        f"({logs['count']:,} logs)"),
        ("terms seen", f"{logs['terms']['min']} .. {logs['terms']['max']}"),
        ("log types", ", ".join(f"{k} {v:,}" for k, v in logs["types"].items()) or "-"),
        ("gaps in the indexes", gap_text),
        ("terms that fall", f"{logs['term_decreases']:,}"),
        ("logs that do not decode", f"{logs['undecodable']:,}"),
        ("CurrentTerm", r["current_term"]),
        ("LastVoteTerm", r["last_vote_term"]),
        ("LastVoteCand", r["last_vote_candidate"]),
    ]
    for k, v in rows:
        t.add_row(k, escape(str(v)))
    c.print(t)


def _render_containerd(c, title: str, r: dict) -> None:
    """containerd's metadata facts (boltfix.containerd): a row per namespace."""
    t = Table(title=f"application: {title}", title_justify="left")
    cols = ("images", "containers", "snapshots", "blobs", "leases", "sandboxes")
    t.add_column("namespace")
    for col in cols:
        t.add_column(col, justify="right")
    for ns, counts in r["namespaces"].items():
        t.add_row(escape(ns), *(f"{counts.get(col, 0):,}" for col in cols))
    c.print(t)


def _render_docker(c, r: dict) -> None:
    """Docker's volume store or libnetwork facts (boltfix.docker)."""
    t = Table(title=f"application: {r['application']}", title_justify="left",
              show_header=False)
    t.add_column("fact")
    t.add_column("value")
    if "volumes" in r:
        rows = [("volumes", r["volumes"]),
                ("drivers", ", ".join(f"{k} {v}" for k, v in r["drivers"].items()) or "-"),
                ("with labels / options", f"{r['with_labels']} / {r['with_options']}")]
    else:
        rows = [("networks", r["networks"]), ("endpoints", r["endpoints"]),
                ("drivers", ", ".join(f"{k} {v}" for k, v in r["drivers"].items()) or "-"),
                ("scopes", ", ".join(f"{k} {v}" for k, v in r["scopes"].items()) or "-"),
                ("endpoints without network", r["orphan_endpoints"])]
    rows.append(("undecodable records", r["undecodable"]))
    for k, v in rows:
        t.add_row(k, escape(str(v)))
    c.print(t)


def _render_vault(c, r: dict) -> None:
    """Vault's FSM facts (boltfix.vault)."""
    t = Table(title=f"application: {r['application']} (Vault integrated storage)",
              title_justify="left", show_header=False)
    t.add_column("fact")
    t.add_column("value")
    d = r["data"]
    servers = ", ".join(f"{s['id']} {s['address']} ({s['suffrage']})" for s in r["servers"])
    rows = [
        ("data entries", f"{d['entries']:,} ({d['encrypted']})"),
        ("value kinds", ", ".join(f"{k} {v:,}" for k, v in d["kinds"].items()) or "-"),
        ("barrier key terms", ", ".join(f"{k}: {v:,}" for k, v in d["key_terms"].items()) or "-"),
        ("latest index / term", f"{r['latest_index']} / {r['latest_term']}"),
        ("configuration index", r["configuration_index"]),
        ("servers", servers or "-"),
        ("config keys", ", ".join(r["config_keys"]) or "-"),
    ]
    for k, v in rows:
        t.add_row(k, escape(str(v)))
    c.print(t)


def _revision(rev) -> str:
    """An etcd revision dict as etcd prints it: main, or main.sub."""
    if isinstance(rev, dict) and "main" in rev:
        return str(rev["main"]) + (f".{rev['sub']}" if rev.get("sub") else "")
    return "-" if rev is None else str(rev)


def _key_range(bucket, rng) -> str:
    """A pruned subtree's key range; as etcd revisions in etcd's `key` bucket."""
    lo, hi = rng
    if tuple(bucket) == KEY_BUCKET:
        def rev(text):
            try:
                r = decode_revision(bytes.fromhex(text))
            except ValueError:
                r = None
            return _revision(r) if r else text
        return f"revisions {rev(lo)} .. {rev(hi) if hi != '-' else 'end'}"
    return f"keys {lo} .. {hi}"


def _member(m) -> str:
    if not isinstance(m, dict):
        return str(m)
    v = m.get("value", m)
    if isinstance(v, dict):
        return f"{v.get('name', '?')} ({v.get('id', '?')})"
    return str(v)


# ---------------------------------------------------------------- pages
def write_page_rows(out, rows, as_json: bool) -> None:
    """``pages``: one row per page, as a table or a JSON array (streamed:
    one line per row, whatever the file's size)."""
    if as_json:
        out.write("[")
        for i, row in enumerate(rows):
            out.write(("\n" if i == 0 else ",\n") + json.dumps(row))
        out.write("\n]\n")
        return
    out.write(f"{'ID':>10}  {'TYPE':<10} {'ITEMS':>6} {'OVRFLW':>6}  STATE\n")
    out.write(f"{'-' * 10}  {'-' * 10} {'-' * 6} {'-' * 6}  {'-' * 11}\n")
    for row in rows:
        out.write(f"{row['id']:>10}  {row['type']:<10} {row['items']:>6} "
                  f"{row['overflow']:>6}  {row['state']}\n")


# ---------------------------------------------------------------- buckets
def bucket_tree_json(tree: list) -> list:
    """``buckets --json``: :func:`boltfix.browse.bucket_tree`'s nodes with
    names as dump's auto encoding writes them (``name_encoding`` "hex"
    when not text), converted in place with a stack (a deep tree must not
    recurse)."""
    def conv(n):
        text = as_text(n["name"])
        item = {"name": text if text is not None else n["name"].hex()}
        if text is None:
            item["name_encoding"] = "hex"
        item.update({k: n[k] for k in ("sequence", "inline", "root", "keys")})
        item["buckets"] = n["buckets"]
        return item

    stack = [tree]
    while stack:
        nodes = stack.pop()
        for i, n in enumerate(nodes):  # one at a time: the old node goes at once
            nodes[i] = conv(n)
        stack.extend(n["buckets"] for n in nodes)
    return tree


def bucket_lines(tree: list) -> list:
    """``buckets``: one line per bucket, indented by depth (a stack, no recursion)."""
    stack = [(n, 0) for n in reversed(tree)]
    lines = []
    while stack:
        n, depth = stack.pop()
        lines.append("  " * depth + name_text(n["name"]))
        stack.extend((c, depth + 1) for c in reversed(n["buckets"]))
    return lines


# ---------------------------------------------------------------- page
def render_page(c, v: dict) -> None:
    """``page``'s view of one page: header, meta, freelist ids or elements."""
    head = (f"[bold]page {v['id']}[/bold]: {v['type']} (flags {v['flags']:#04x}), "
            f"count {v['count']}, overflow {v['overflow']}")
    if v["self_id"] != v["id"]:
        head += f" [red]self-id {v['self_id']}[/red]"
    if not v["run_complete"]:
        head += " [red]run past end of file[/red]"
    if v.get("count_problem"):
        head += f" [red]{v['count_problem']}[/red]"
    c.print(head)
    if "masked" in v:
        c.print(f"[yellow]{v['masked']}[/yellow]")
    if "meta" in v:
        t = Table(show_header=False)
        for k, val in v["meta"].items():
            t.add_row(k, str(val))
        c.print(t)
    if "freelist" in v:
        fl = v["freelist"]
        shown = f" (first {fl['shown']})" if fl["shown"] < fl["count"] else ""
        c.print(f"freelist: {fl['count']} ids" + shown)
        c.print(" ".join(str(i) for i in fl["ids"]))
        for p in fl["problems"]:
            c.print(f"[red]{p}[/red]")
    if "elements" in v:
        t = Table()
        t.add_column("#", justify="right")
        t.add_column("key")
        t.add_column("child / value")
        t.add_column("problem")
        for el in v["elements"]:
            if "child" in el:
                other = str(el["child"])
            elif el.get("bucket"):
                other = (f"bucket root={el.get('bucket_root')} seq={el.get('bucket_sequence')}")
            else:
                other = short(el["value"]) if el["value"] is not None else f"({el['vsize']} bytes)"
                if el.get("truncated"):  # the value's first bytes only
                    other = f"{short(el['value'], 48)} ({el['value_bytes']:,} bytes)"
            t.add_row(str(el["index"]), short(el["key"]), other, el.get("problem") or "")
        c.print(t)


# ---------------------------------------------------------------- check
#: findings of each severity check draws as table rows (--json has them all)
CHECK_ROWS_SHOWN = 1000


def render_verdict(c, lines) -> None:
    """A verdict's (label, text) lines (:mod:`boltfix.verdict`), then a blank line."""
    if not lines:
        return
    width = max(len(label) for label, _ in lines) + 1
    for label, text in lines:
        c.print(f"[bold]{label + ':':<{width}}[/bold] {escape(text)}")
    c.print()


def render_check(c, result, db=None) -> None:
    """``check``'s verdict, then its findings, errors then warnings (a kind
    of many in one row), and the counts."""
    if result.clean:
        c.print(f"[green]OK[/green]: no problems ({result.stats.get('records', 0):,} records, "
                f"{result.stats.get('pages_reached', 0):,} pages walked)")
        return
    render_verdict(c, check_verdict(result, db))
    for severity, style in (("error", "red"), ("warning", "yellow")):
        rows = merge_rows([f for f in result.findings if f.severity == severity])
        if not rows:
            continue
        # a rich table costs about 1 ms a row: 10,000 rows took 9 s to draw
        rows, cut = rows[:CHECK_ROWS_SHOWN], sum(len(r.findings) for r in rows[CHECK_ROWS_SHOWN:])
        t = Table(title=f"{severity}s", title_justify="left", title_style=style)
        t.add_column("code", style=style)
        t.add_column("page", justify="right")
        t.add_column("bucket")
        t.add_column("message")
        for row in rows:
            t.add_row(row.code, row.page_text(), row.bucket_text(), row.message())
        c.print(t)
        if cut > 0:
            c.print(f"… {cut:,} more {severity}s kept but not drawn (boltfix check --json "
                    "lists them all)")
    shown = len(result.findings)
    more = f" ({result.total - shown:,} more not shown)" if result.total > shown else ""
    counts = ", ".join(f"{k} x{v:,}" for k, v in sorted(result.counts.items()))
    c.print(f"[bold]{result.total:,} problems found[/bold]{more}: {counts}")
    if not result.failing:
        c.print("only warnings that never stop bbolt or etcd (exit 0; --strict counts them)")
    render_k8s_summary(c, result.stats.get("etcd_k8s_summary"))


# ---------------------------------------------------------------- repair
#: rows of repair's "could not be recovered" table drawn (--json has them all)
REPAIR_ROWS_SHOWN = 200


def _render_salvage(c, r) -> None:
    """What salvage beyond the reachable tree added, and what it kept apart."""
    sv = r.salvage or {}
    if sv.get("root_lost"):
        c.print("[yellow]no usable root page: the top level was rebuilt from the surviving "
                "bucket subtrees (rule 4)[/yellow]")
    if sv.get("etcd_restore"):
        c.print(f"[bold yellow]etcd: {sv['etcd_restore']}[/bold yellow]")
    if sv.get("salvaged"):
        t = Table(title="salvaged beyond the reachable tree", title_justify="left")
        t.add_column("bucket")
        t.add_column("rule")
        t.add_column("records", justify="right")
        for bucket, rules in sorted(sv["salvaged"].items()):
            for rule, n in sorted(rules.items()):
                t.add_row(bucket, rule, f"{n:,}")
        c.print(t)
    facts = sv.get("facts") or {}
    if facts.get("compact_revision_from"):
        c.print(f"etcd: compaction point {facts.get('compact_revision')} "
                f"({facts['compact_revision_from']}); highest committed revision "
                f"{facts.get('committed_revision') or 'not provable (root lost)'}")
    if sv.get("lost_found_subtrees"):
        lf = r.lost_found
        where = f" -> {lf['path']} ({lf['records']:,} records)" if lf else \
            " (not written: pass --lost-found PATH)"
        c.print(f"kept apart as evidence: {sv['lost_found_subtrees']} orphan subtrees or "
                f"pages{where}")
    gone = sv.get("gone") or []
    for g in gone:
        if "pages" in g:
            c.print(f"[red]truly gone[/red]: pages {g['pages'][0]}..{g['pages'][1]} "
                    f"({g.get('note', '')})")
    revs = [g for g in gone if "revisions" in g]
    if revs:
        spans = ", ".join(f"{g['revisions'][0]}..{g['revisions'][1]}" for g in revs[:20])
        c.print(f"[red]etcd revisions truly gone[/red]: {spans}"
                + (f" … {len(revs) - 20} more" if len(revs) > 20 else ""))


def _tree_health(tree) -> str:
    """A meta's tree in a cell: whole, or its damage (commits.Judgement)."""
    if tree is None:
        return "-"
    if tree["whole"]:
        return f"whole ({tree['records']:,} records)"
    worst = sorted(((n, code) for code, n in tree["counts"].items()
                    if not code.startswith("freelist:")), reverse=True)[:2]
    return "damaged" + (" (" + ", ".join(f"{n} {code}" for n, code in worst) + ")"
                        if worst else "")


def render_repair(c, r) -> None:
    """``repair``'s report: its verdict, then the meta used, what was kept,
    salvaged and lost (a kind of many findings in one row)."""
    render_verdict(c, repair_verdict(r))
    m = r.meta
    which = f"meta {m['index']}" if m.get("index") is not None else \
        "no root (rebuilt by salvage)" if m.get("root_lost") else "a rediscovered root"
    c.print(f"source: {r.input}  (page size {r.page_size}, freelist {r.freelist})")
    c.print(f"used {which}: txid {m['txid']}, root page {m['root']} — {m['reason']}")
    c.print(f"kept {r.records:,} records in {r.buckets:,} buckets")
    if r.per_bucket:
        t = Table(title="records kept per bucket", title_justify="left")
        t.add_column("bucket")
        t.add_column("records", justify="right")
        for b in r.per_bucket[:50]:
            t.add_row("/".join(b["path"]), f"{b['records']:,}")
        if len(r.per_bucket) > 50:
            t.add_row(f"… {len(r.per_bucket) - 50} more buckets", "")
        c.print(t)
    _render_salvage(c, r)
    if r.commits and r.commits.get("passed_over"):
        render_newer_commit(c, r.commits)
    elif r.meta.get("fallback"):
        c.print("[yellow]the newest meta's root could not be used: its transaction is lost "
                "(exit 1)[/yellow]")
    if r.rediscovered and not m.get("root_lost"):
        c.print("[yellow]no valid meta page: the root was rediscovered, so boltfix cannot "
                "prove this is the last committed state (exit 1)[/yellow]")
    if r.dropped:
        t = Table(title="could not be recovered", title_justify="left", title_style="red")
        t.add_column("code", style="red")
        t.add_column("page", justify="right")
        t.add_column("bucket")
        t.add_column("what was lost")
        rows = merge_rows(r.dropped)
        for row in rows[:REPAIR_ROWS_SHOWN]:
            t.add_row(row.code, row.page_text(), row.bucket_text(), row.message(_key_range))
        c.print(t)
        if len(rows) > REPAIR_ROWS_SHOWN:
            c.print(f"… {len(rows) - REPAIR_ROWS_SHOWN:,} more rows not drawn (boltfix repair "
                    "--json lists every finding)")
    if r.dropped_counts:
        c.print("[red]some data could not be recovered[/red]: "
                + ", ".join(f"{k} x{v:,}" for k, v in sorted(r.dropped_counts.items())))
    if r.other_counts:
        c.print("repaired without data loss: "
                + ", ".join(f"{k} x{v:,}" for k, v in sorted(r.other_counts.items())))
    if getattr(r, "etcd", None) is not None and r.etcd.analysed:
        render_etcd_state(c, r.etcd)
    if r.in_place is not None and not r.in_place["starts"]:
        why = "; ".join(f["message"] for f in r.in_place["findings"]
                        if f["severity"] == "error")
        c.print(f"[red]etcd will not start with this db in place of {escape(r.input)}[/red]: "
                f"{escape(why)}")
        c.print(f"route that works: {escape(r.in_place['route'])}")
    if r.dry_run:
        c.print("[yellow]dry run: nothing written[/yellow]")
    elif r.verified:
        w = r.written or {}
        c.print(f"[green]wrote {r.output}[/green] ({w.get('pages', '?')} pages); "
                "boltfix check: clean")


def render_newer_commit(c, commits: dict) -> None:
    """The newer commit repair passed over (``commits.newer_commit``): what
    its readable pages held that the kept commit does not."""
    over = commits["passed_over"]
    loss = commits.get("newer_commit") or {}
    c.print(f"[yellow]the newer commit (txid {over.get('txid')}, {over['source']}) is not "
            f"kept: {loss.get('added', 0):,} records it added and {loss.get('changed', 0):,} "
            f"it changed are lost, {loss.get('deleted', 0):,} it deleted are back "
            "(exit 1)[/yellow]")
    unread = loss.get("unread") or []
    if unread:
        names = ", ".join(escape("/".join(p)) or "(the root)" for p in unread[:5])
        c.print(f"  its tree is damaged in {len(unread)} bucket(s) ({names}"
                + (", …" if len(unread) > 5 else "") + "): what it held there is unknown")
    for b in loss.get("buckets", [])[:20]:
        spans = ", ".join(a if a == z else f"{a}..{z}" for a, z in b["ranges"][:4])
        more = " …" if len(b["ranges"]) > 4 else ""
        c.print(f"  {escape('/'.join(b['bucket']))}: +{b['added']:,} ~{b['changed']:,} "
                f"-{b['deleted']:,}" + (f"  ({escape(spans)}{more})" if spans else ""))


def render_etcd_state(c, st) -> None:
    """What etcd will serve: lost revisions, at-risk keys by prefix."""
    lr = ", ".join(f"{a}..{b}" if a != b else str(a) for a, b in st.lost_ranges[:10])
    more = f" (+{len(st.lost_ranges) - 10} ranges)" if len(st.lost_ranges) > 10 else ""
    c.print(f"etcd: {st.lost_count:,} main revisions lost above the compaction point "
            f"{st.floor}" + (f": {lr}{more}" if lr else ""))
    if st.open_above is not None:
        c.print(f"[yellow]etcd: revisions above {st.open_above} may be lost too (how many "
                "is unknown): every key is at risk[/yellow]")
    if st.compacted_possibly_lost:
        c.print("etcd: below the compaction point, keys whose only revision lay in "
                + ", ".join(f"{a}..{b}" for a, b in st.compacted_possibly_lost[:5])
                + " are gone (not stale)")
    if st.at_risk_count:
        t = Table(title=f"etcd keys at risk ({st.at_risk_count:,}): etcd may serve them "
                        "wrongly", title_justify="left", title_style="yellow")
        t.add_column("key prefix")
        t.add_column("at risk", justify="right")
        for prefix, n in st.by_prefix():
            t.add_row(escape(name_text(prefix.encode())), f"{n:,}")
        c.print(t)
        action = ("dropped: every revision of them was left out "
                  f"({st.dropped_records:,} records)" if st.at_risk_action == "drop"
                  else "kept (--etcd-at-risk drop leaves them out)")
        listed = ("each key" if not st.at_risk_truncated
                  else f"the first {len(st.at_risk):,} keys")
        c.print(f"etcd: at-risk keys {action}; --json lists {listed} and why")
    if st.lost_keys:
        c.print(f"etcd: {len(st.lost_keys):,} keys with no surviving revision are named by "
                "copies on free/orphan pages (--json: lost_keys)")
    render_k8s_summary(c, st.k8s_json().get("k8s_summary"))


def render_k8s_summary(c, summary) -> None:
    """The Kubernetes objects among the at-risk and lost etcd keys, one line
    each (``EtcdState.k8s_json``; nothing on a plain etcd file)."""
    for part, what in (("at_risk", "at risk"), ("lost_keys", "lost")):
        s = (summary or {}).get(part)
        if s and s["objects"]:
            c.print(f"Kubernetes objects {what} ({s['objects']:,}): " + escape(s["text"]),
                    soft_wrap=True)


def render_data_dir_repair(c, rep) -> None:
    """``repair --data-dir``'s report: the data dir written, the
    consistent_index chosen and why, what the WAL restores, the keys at
    risk, and whether etcd will start on it."""
    j = rep.to_json()
    rw = j["rewind"]
    c.print(f"wrote {escape(rep.output)} from {escape(rep.input)}: "
            f"{len(rep.copied)} WAL/snapshot file(s) copied byte for byte, the db "
            f"({escape(rep.source_db)}) repaired into member/snap/db")
    c.print(f"consistent_index {rw['consistent_index']} (the db had {rw['db_consistent_index']}), "
            f"revision {rw['revision']}, term {rw['term'] if rw['term'] is not None else '-'}; "
            f"revision map anchored at {rw['anchor']}")
    for why in rw["why"]:
        c.print(f"  - {escape(why)}")
    c.print(f"etcd re-applies {rw['revisions_wal_reapplies']} revision(s) from the WAL; the db "
            f"lost {rw['lost_revisions']}, of which the WAL restores "
            f"{rw['lost_revisions_restored_by_wal']}; {rw['records_removed']} record(s) above "
            "the chosen revision removed")
    if rw["compaction_raised_to"] is not None:
        c.print(f"compaction revision set to {rw['compaction_raised_to']} (so etcd numbers the "
                "re-applied entries as before)")
    if rw["keys_at_risk_count"]:
        c.print(f"[red]{rw['keys_at_risk_count']} key(s) etcd will serve wrongly (stale, "
                "missing or resurrected), from revisions the WAL cannot restore:[/red]")
        for k in rw["keys_at_risk"][:50]:
            c.print(f"  {escape(k if isinstance(k, str) else json.dumps(k))}")
        if rw["keys_at_risk_count"] > 50:
            c.print(f"  … {rw['keys_at_risk_count'] - 50} more (--json lists them)")
    else:
        c.print("[green]no key at risk: etcd will serve every key the WAL wrote[/green]")
    if j["db_alone_keys_at_risk"]:
        c.print(f"(the db alone names {j['db_alone_keys_at_risk']} key(s) at risk)")
    for f in rep.findings:
        c.print(f"[yellow]{f.code}[/yellow]: {escape(f.message)}")
    after = j["start_after"]
    color = "green" if after["outcome"] != "fails" else "red"
    c.print(f"etcd on {escape(rep.output)}: [{color}]{after['outcome']}[/{color}]")
    for f in after["findings"]:
        c.print(f"  {f['code']}: {escape(f['message'])}")
