"""What ``repair`` and ``check`` lead with: a verdict an operator can act on.

A few lines before the details: what happened, what was kept and from
which commit, what is lost, for etcd how many keys it may serve wrongly,
and the next commands.  Also the merged rows of the findings tables:
findings of one kind under one parent page in one bucket become one row
(page ids as ranges, key or revision ranges joined), so that 40 pages past
the end of the file are one row, not 40.  Text only: the JSON reports keep
every finding as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

from boltfix import datadir
from boltfix import findings as F
from boltfix.etcdkeys import KEY_BUCKET, decode_revision
from boltfix.findings import REGISTRY, Finding
from boltfix.text import name_text

#: findings of one kind (code, parent page, bucket) drawn one per row up to
#: this many; more become one merged row
MERGE_ABOVE = 3
#: ranges (of pages, keys, revisions) a merged row or a verdict names before "… N more"
RANGES_SHOWN = 6
#: kinds of damage a verdict's first line names before "and N more kinds"
KINDS_SHOWN = 2

_FILE_PAGES = re.compile(r"end of the file \(([\d,]+) pages\)")


# ---------------------------------------------------------------- ranges
def compact_ranges(ids: Sequence[int], shown: int = RANGES_SHOWN) -> str:
    """Sorted integers as ``60-95, 97-104``, the first ``shown`` runs then
    ``… N more``."""
    runs: List[List[int]] = []
    for i in sorted(set(ids)):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return shorten([str(a) if a == b else f"{a}-{b}" for a, b in runs], shown)


def shorten(items: Sequence[str], shown: int = RANGES_SHOWN) -> str:
    """``items`` joined by commas: the first ``shown``, then ``… N more``."""
    text = ", ".join(items[:shown])
    if len(items) > shown:
        text += f" … {len(items) - shown:,} more"
    return text


def _main_revision(text: str) -> Optional[int]:
    try:
        r = decode_revision(bytes.fromhex(text))
    except ValueError:
        return None
    return r["main"] if r else None


def joined_key_ranges(bucket, ranges: Sequence[Tuple[str, str]],
                      shown: int = RANGES_SHOWN) -> str:
    """Pruned subtrees' key ranges (hex, ``-`` for an open end), touching
    ones joined: in etcd's ``key`` bucket as main revisions
    (``revisions 3..53, 281..``), else as keys."""
    etcd = tuple(bucket) == KEY_BUCKET
    if etcd:
        spans = [(_main_revision(lo), None if hi == "-" else _main_revision(hi))
                 for lo, hi in ranges]
        if all(lo is not None and (hi is not None or rng[1] == "-")
               for (lo, hi), rng in zip(spans, ranges)):
            return "revisions " + shorten(_join(spans, etcd=True), shown)
    spans = [(lo, None if hi == "-" else hi) for lo, hi in ranges]
    return "keys " + shorten(_join(spans, etcd=False), shown)


def _join(spans, etcd: bool) -> List[str]:
    """Sorted spans, a span starting where the last ended (or inside it) joined."""
    out: List[list] = []
    for lo, hi in sorted(spans, key=lambda s: s[0]):
        if out and out[-1][1] is None:
            continue  # the open span holds everything after it
        if out and (lo <= out[-1][1] + 1 if etcd else lo <= out[-1][1]):  # (revisions touch)
            out[-1][1] = None if hi is None else max(hi, out[-1][1])
        else:
            out.append([lo, hi])

    def show(v):
        if etcd:
            return str(v)
        try:
            return name_text(bytes.fromhex(v))
        except ValueError:  # a long key's range is shortened ("…"): as it stands
            return v
    return [f"{show(lo)}.." + ("" if hi is None else show(hi)) for lo, hi in out]


# ---------------------------------------------------------------- merged rows
@dataclass
class Row:
    """One row of a findings table: a finding, or several of a kind merged."""

    code: str
    bucket: tuple
    findings: List[Finding] = field(default_factory=list)
    parent: Optional[int] = None

    @property
    def merged(self) -> bool:
        """More than one finding in the row."""
        return len(self.findings) > 1

    @property
    def pages(self) -> List[int]:
        """The findings' page ids."""
        return [f.page for f in self.findings if f.page is not None]

    def page_text(self) -> str:
        """The page column: an id, or compact ranges of them."""
        return compact_ranges(self.pages) if self.pages else ""

    def bucket_text(self) -> str:
        """The bucket column."""
        return "/".join(name_text(b) for b in self.bucket)

    def message(self, key_range=None) -> str:
        """The row's text; ``key_range``: how one finding's range is shown."""
        if not self.merged:
            f = self.findings[0]
            rng = (f.detail or {}).get("key_range")
            return f.message + (f" ({key_range(f.bucket, rng)})" if rng and key_range else "")
        return self._merged_message()

    def _merged_message(self) -> str:
        n, first = len(self.findings), self.findings[0]
        where = f" (`{self.bucket_text()}`)" if self.bucket else ""
        if self.code == F.PAGE_PAST_EOF:
            m = _FILE_PAGES.search(first.message)
            size = f" ({m.group(1)} pages)" if m else ""
            head = (f"{n:,} child pages of page {self.parent}{where} lie past the end of "
                    f"the file{size}" if self.parent is not None else
                    f"{n:,} pages{where} lie past the end of the file{size}")
        else:
            what = REGISTRY[self.code].what if self.code in REGISTRY else self.code
            under = f" under page {self.parent}" if self.parent is not None else ""
            head = f"{n:,} × {self.code}{under}{where}: {what}"
        ranges = [tuple(f.detail["key_range"]) for f in self.findings
                  if f.detail and f.detail.get("key_range")]
        if ranges:
            return f"{head}: {joined_key_ranges(self.bucket, ranges)}"
        keys = [repr(f.detail["key"]) for f in self.findings
                if f.detail and isinstance(f.detail.get("key"), str)]
        if keys:
            return f"{head}: {shorten(keys, 3)}"
        return f"{head}; e.g. {first.message}"


def merge_rows(findings: Sequence[Finding], above: int = MERGE_ABOVE) -> List[Row]:
    """The findings as table rows, in the order of each kind's first finding:
    a kind (code, parent page, bucket) of more than ``above`` findings is
    one merged row, smaller kinds one row per finding."""
    kinds: dict = {}
    for f in findings:
        parent = _parent(f)
        kinds.setdefault((f.code, parent, tuple(f.bucket)), []).append(f)
    rows: List[Row] = []
    for (code, parent, bucket), group in kinds.items():
        if len(group) > above:
            rows.append(Row(code, bucket, group, parent))
        else:
            rows.extend(Row(code, bucket, [f], parent) for f in group)
    first = {id(f): i for i, f in enumerate(findings)}
    rows.sort(key=lambda r: first[id(r.findings[0])])
    return rows


def _parent(f: Finding) -> Optional[int]:
    """The page that points at the finding's page (its ``pages`` path)."""
    path = [p for p in f.pages if p != f.page]
    return path[-1] if path else None


# ---------------------------------------------------------------- damage
def _damage_kinds(findings: Sequence[Finding], counts: dict,
                  cut_short: bool = False) -> List[str]:
    """The damage in words, the file's end first, then the biggest kind:
    ``40 pages of `key` lie past the end of the file``.  ``counts`` (code
    -> every finding counted, kept or not) sizes a code kept in one bucket
    only and names the codes without kept findings.  ``cut_short``: the
    file is shorter than its high-water mark (said once)."""
    kinds: dict = {}
    for f in findings:
        kinds.setdefault((f.code, tuple(f.bucket)), []).append(f)
    buckets_of: dict = {}
    for code, _ in kinds:
        buckets_of[code] = buckets_of.get(code, 0) + 1
    order = sorted(kinds.items(), key=lambda kv: (kv[0][0] != F.FILE_TRUNCATED,
                                                  not _stops(kv[0][0]), -len(kv[1])))
    out = []
    for (code, bucket), group in order:
        where = f" of `{'/'.join(name_text(b) for b in bucket)}`" if bucket else ""
        n = len(group)
        if buckets_of[code] == 1:
            n = max(n, counts.get(code, 0))
        if code == F.PAGE_PAST_EOF:
            said = cut_short and F.FILE_TRUNCATED not in buckets_of
            out.append(f"{n:,} page{'s' if n > 1 else ''}{where} lie past the end of the file"
                       + (" (the file was cut short)" if said else ""))
        elif code == F.FILE_TRUNCATED and "pgid" in (group[0].detail or {}):
            d = group[0].detail
            out.append(f"the file was cut short: it holds {d['pages_in_file']:,} of its "
                       f"{d['pgid']:,} pages")
        else:
            out.append(f"{n:,} × {code}{where} ({_what(code)})")
    for code, n in sorted(counts.items(), key=lambda kv: (not _stops(kv[0]), -kv[1])):
        if code not in buckets_of:
            out.append(f"{n:,} × {code} ({_what(code)})")
    return out


def _stops(code: str) -> bool:
    """Does the code stop bbolt or etcd (the worse kinds are named first)?"""
    code = code.split(":", 1)[-1]
    return code in REGISTRY and REGISTRY[code].stops


def _what(code: str) -> str:
    code = code.split(":", 1)[-1]  # a judgement's "freelist:" prefix
    what = REGISTRY[code].what if code in REGISTRY and REGISTRY[code].what else code
    # a meta code's words complete "meta page N ..."
    completes = code.startswith("meta-") and what.split(" ", 1)[0] in ("is", "has", "fails")
    return f"a meta page {what}" if completes else what


def _damage_text(findings, counts: dict, cut_short: bool = False) -> str:
    """The damage in a sentence: the first KINDS_SHOWN kinds."""
    kinds = _damage_kinds(findings, counts, cut_short)
    text = "; ".join(kinds[:KINDS_SHOWN])
    if len(kinds) > KINDS_SHOWN:
        text += f"; and {len(kinds) - KINDS_SHOWN} more kind(s)"
    return text


def _cut_short(r) -> bool:
    """Did repair find the input shorter than its high-water mark (salvage's
    pages "past the end of the file")?"""
    return any("pages" in g and "end of the file" in (g.get("note") or "")
               for g in (r.salvage or {}).get("gone") or [])


# ---------------------------------------------------------------- repair
def repair_verdict(r) -> List[Tuple[str, str]]:
    """``repair``'s verdict as (label, text) lines: what happened, what was
    kept, what is lost, etcd's keys at risk, and the next commands.  ``r``:
    a :class:`boltfix.repair.RepairReport`."""
    lines = [("what happened", _happened(r)), ("kept", _kept(r)), ("lost", _lost(r))]
    risk = _at_risk(r)
    if risk:
        lines.append(("etcd", risk))
    raft = raft_line(getattr(r, "raft", None))
    if raft:
        lines.append(("raft", raft))
    cd = containerd_line(getattr(r, "containerd", None))
    if cd:
        lines.append(("containerd", cd))
        lines.extend(("next", step) for step in r.containerd["advice"][:5])
    dk = docker_line(getattr(r, "docker", None))
    if dk:
        lines.append(("docker", dk))
        lines.extend(("next", step) for step in r.docker["advice"][:5])
    lines.extend(("next", step) for step in _next_steps(r))
    return lines


def _happened(r) -> str:
    cm = r.commits or {}
    rule, over, kept = cm.get("rule"), cm.get("passed_over"), cm.get("kept") or {}
    if r.meta.get("root_lost"):
        return "no usable root page: the top level was rebuilt from the surviving bucket subtrees"
    if r.rediscovered and not (over is not None and rule in ("copied-while-written",
                                                            "rolled-back-further")):
        return ("no valid meta page: the root was rediscovered, so this may not be the last "
                "committed state")
    damage = _damage_text(r.dropped, r.dropped_counts, _cut_short(r))
    if over is not None:  # rolled back, or a tree copied while written
        head = (f"the newest commit (txid {over.get('txid')}) is damaged: "
                f"{_damage_text([], over.get('counts') or {})}")
        if rule == "copied-while-written":
            return (head + f"; the file was copied while bbolt wrote it: a newer whole tree "
                    f"({kept.get('source')}) was found")
        if rule == "rolled-back-further":
            return (head + "; so is the previous one: the writes of several commits were "
                    f"lost. The newest whole etcd tree left ({kept.get('source')}) is an "
                    "older commit's")
        return head + "; the previous commit is whole"
    if rule == "newest-meta-mended" and not r.dropped_counts:
        return cm.get("reason") or rule
    if r.meta.get("fallback"):
        return "the newest meta's root could not be used: its transaction is lost" + (
            f"; {damage}" if damage else "")
    if r.dropped_counts:
        who = (f"the newest commit (txid {r.meta.get('txid')})" if rule else
               f"the commit used (txid {r.meta.get('txid')}, meta {r.meta.get('index')})")
        tail = "; no older commit is whole" if rule == "most-complete" else ""
        return f"{who} is damaged: {damage}{tail}"
    if r.other_counts:
        return ("damaged, repaired without data loss: "
                + ", ".join(f"{k} x{v:,}" for k, v in sorted(r.other_counts.items())))
    reason = r.meta.get("reason") or ""
    if "invalid" in reason:  # a torn meta bbolt itself passes over
        return (f"{reason}; bbolt uses meta {r.meta['index']} (txid {r.meta['txid']}) as well, "
                "and its tree is whole")
    return "healthy: nothing is damaged"


_RULE_WORDS = {
    "newest": "the newest commit",
    "newest-meta-mended": "the newest commit, whose meta page fails by one field only",
    "rolled-back": "the previous commit, rolled back to as bbolt does with a commit that "
                   "did not finish",
    "copied-while-written": "the newest whole tree, copied while bbolt wrote the file",
    "rolled-back-further": "an older commit's whole tree no meta names any more (etcd "
                           "replays its WAL above that tree's consistent_index)",
    "most-complete": "the newest commit, its damage pruned",
}


def _kept(r) -> str:
    cm = r.commits or {}
    rule, kept = cm.get("rule"), cm.get("kept") or {}
    source = kept.get("source") or (f"meta {r.meta['index']}" if r.meta.get("index") is not None
                                    else f"root page {r.meta.get('root')}")
    text = f"{r.records:,} records in {r.buckets:,} buckets"
    if rule:
        text += (f" from {_RULE_WORDS.get(rule, rule)} (txid {kept.get('txid', r.meta['txid'])}"
                 f", {source}; rule {rule})")
    else:
        text += f" from txid {r.meta['txid']} ({source})"
    salvaged = (r.salvage or {}).get("salvaged_records")
    if salvaged:
        text += f", {salvaged:,} of them salvaged beyond its tree"
    return text


def _lost(r) -> str:
    parts = []
    if r.dropped_counts:
        ranges = _lost_ranges(r)
        n = sum(r.dropped_counts.values())
        found = (" (salvage may have found some of their records elsewhere)"
                 if (r.salvage or {}).get("salvaged_records") else "")
        parts.append(f"{n:,} page(s) or subtree(s) that could not be read"
                     + (f" (they held {ranges})" if ranges else "") + found)
    over = (r.commits or {}).get("passed_over")
    if over is not None:
        loss = (r.commits or {}).get("newer_commit") or {}
        if [] in loss.get("unread", []):  # its root: nothing of it reads
            parts.append(f"the newer commit (txid {over.get('txid')}): its tree cannot be "
                         "read, so what it held is not known")
        else:
            parts.append(f"the newer commit (txid {over.get('txid')}): the "
                         f"{loss.get('added', 0):,} records it added and the "
                         f"{loss.get('changed', 0):,} it changed (the "
                         f"{loss.get('deleted', 0):,} it deleted are back)")
    elif r.meta.get("fallback"):
        parts.append("the newest meta's transaction")
    st = getattr(r, "etcd", None)
    if st is not None and st.analysed:
        parts.append(_etcd_lost(st))
    if r.rediscovered and not parts:
        parts.append("unknown: the last committed state cannot be proven")
    apart = (r.salvage or {}).get("lost_found_subtrees")
    if apart:
        where = (f"written to {r.lost_found['path']}" if r.lost_found
                 else "--lost-found PATH writes them")
        parts.append(f"{apart:,} orphan subtree(s) or page(s) kept apart as evidence ({where})")
    if not r.lost_data:
        return "nothing" + (f" ({parts[-1]})" if apart else "")
    return "; ".join(parts)


def _lost_ranges(r) -> str:
    """What the dropped subtrees held, by bucket: joined key/revision ranges."""
    by_bucket: dict = {}
    for f in r.dropped:
        rng = (f.detail or {}).get("key_range")
        if rng:
            by_bucket.setdefault(tuple(f.bucket), []).append(tuple(rng))
    return "; ".join(f"`{'/'.join(name_text(b) for b in bucket)}` "
                     f"{joined_key_ranges(bucket, ranges)}"
                     for bucket, ranges in by_bucket.items())


def _etcd_lost(st) -> str:
    text = (f"etcd: {st.lost_count:,} revision(s) above the compaction point {st.floor}"
            if st.lost_count else
            f"etcd: no revision above the compaction point {st.floor} is known lost")
    if st.open_above is not None:
        text += f", revisions above {st.open_above} may be (how many is unknown)"
    if st.compacted_possibly_lost:
        spans = [f"{a}..{b}" for a, b in st.compacted_possibly_lost]
        text += f"; keys whose only revision lay in {shorten(spans, 5)} are gone"
    if st.lost_keys:
        text += f"; {len(st.lost_keys):,} keys have no surviving revision"
    return text


def raft_line(raft: Optional[dict]) -> Optional[str]:
    """A raft-boltdb store's log in the output, in raft's terms: the indexes
    FirstIndex and LastIndex will give, those GetLog will not find, and
    whether the ends may be lost (``RepairReport.raft``)."""
    if not raft:
        return None
    logs, lost = raft["logs"], raft.get("lost") or {}
    if not logs["count"]:
        text = "the output holds no raft log"
    else:
        text = (f"raft log {logs['first_index']}..{logs['last_index']} kept "
                f"({logs['count']:,} logs)")
    if lost.get("missing_indexes"):
        spans = [f"{a}..{b}" for a, b in lost["ranges"]]
        more = lost["ranges_total"] - len(spans)
        where = shorten(spans, 5) + (f" and {more:,} more ranges" if more > 0 else "")
        text += (f"; {lost['missing_indexes']:,} indexes missing ({where}): GetLog answers "
                 "'log not found' there")
    elif logs["count"]:
        text += ", no index missing between them"
    if lost.get("ends_may_be_lost"):
        text += "; logs before the first or after the last kept may be lost"
    return text


def containerd_line(cd: Optional[dict]) -> Optional[str]:
    """containerd's metadata in the output: its objects per namespace and
    what lost its metadata (``RepairReport.containerd``)."""
    if not cd:
        return None
    kept = "; ".join(f"{ns}: {c['images']} images, {c['containers']} containers"
                     for ns, c in cd["namespaces"].items()) or "no namespace"
    lost = cd["lost"]
    parts = []
    if lost["objects_total"]:
        names = [f"{o['object']} {o['id']} ({o['namespace']})" for o in lost["objects"]]
        parts.append(f"{lost['objects_total']} object(s) lost records: " + shorten(names, 5))
    if lost["kinds"]:
        parts.append("records lost under " + ", ".join(
            f"{k['namespace']}/{k['object']}" for k in lost["kinds"][:5]))
    for key, what in (("images_to_pull", "image(s) without their content"),
                      ("containers_without_snapshot", "container(s) without their snapshot"),
                      ("snapshots_without_parent", "snapshot(s) without their parent")):
        if lost[key]:
            parts.append(f"{len(lost[key])} {what}")
    return f"kept {kept}" + ("; " + "; ".join(parts) if parts else "; nothing lost")


def docker_line(dk: Optional[dict]) -> Optional[str]:
    """Docker's volume store or libnetwork store in the output: what it
    holds and what was lost (``RepairReport.docker``)."""
    if not dk:
        return None
    lost = dk["lost"]
    if "volumes" in dk and isinstance(dk["volumes"], int):
        kept = f"kept {dk['volumes']} volume(s)"
    else:
        kept = f"kept {dk['networks']} network(s), {dk['endpoints']} endpoint(s)"
    parts = []
    if lost["records_total"]:
        names = lost["volumes"] + [n[:12] for n in lost["networks"]] + \
            [e["endpoint"][:12] for e in lost["endpoints"]]
        parts.append(f"{lost['records_total']} record(s) dropped"
                     + (": " + shorten(names, 5) if names else ""))
    if lost["endpoints_without_network"]:
        parts.append(f"{len(lost['endpoints_without_network'])} endpoint(s) without their "
                     "network")
    if lost.get("evidence"):
        parts.append("older copies in lost+found name "
                     + shorten([e["name"] for e in lost["evidence"]], 5))
    rb = lost.get("rolled_back") or {}
    for what in ("created", "changed", "removed"):
        names = (rb.get("volumes") or {}).get(what, []) + \
            [n[:12] for n in (rb.get("networks") or {}).get(what, [])]
        if names:
            parts.append(f"the commit rolled back {what} {shorten(names, 5)} (as its pages "
                         "read)")
    return kept + ("; " + "; ".join(parts) if parts else "; nothing lost")


def _at_risk(r) -> Optional[str]:
    st = getattr(r, "etcd", None)
    if st is None:
        return None
    if not st.analysed or not st.at_risk_count:
        return "no key is at risk: etcd serves what it served before"
    action = ("all their revisions were dropped (--etcd-at-risk drop)"
              if st.at_risk_action == "drop" else
              "they are kept (--etcd-at-risk drop leaves them out)")
    return f"{st.at_risk_count:,} keys may be served wrongly (stale or resurrected); {action}"


def etcd_version(r) -> Optional[str]:
    """The likely etcd version of a repaired etcd file: as the in-place
    prediction read it from the output's ``meta`` bucket, else from the kept
    commit's (``term`` is written since 3.5, as inspect guesses it); None
    when not known."""
    db = (r.in_place or {}).get("db")
    if isinstance(db, dict) and db.get("version"):
        return db["version"]
    facts = ((r.commits or {}).get("kept") or {}).get("etcd")
    if not facts:
        return None
    return "3.5+" if "term" in facts else "3.4 or older"


def _next_steps(r) -> List[str]:
    out = r.output or "OUT"
    steps = []
    if r.dry_run:
        steps.append("nothing was written: run it again without --dry-run")
        out = "OUT"
    if not r.lost_data and not r.dropped_counts and not r.other_counts \
            and not (r.commits or {}).get("passed_over") \
            and (r.commits or {}).get("rule") != "newest-meta-mended":
        steps.append(f"nothing needs doing: bbolt opens {r.input} as it is with nothing lost "
                     f"({out} is a fresh copy)")
        return steps
    if getattr(r, "etcd", None) is None:
        steps.append(f"stop the application, keep {r.input} as evidence, and put {out} "
                     "in its place")
        return steps
    version = etcd_version(r)
    route = datadir.restore_route(version).replace("OUT.db", out)
    found = f"likely etcd {version}" if version else "etcd version unknown"
    if r.in_place is not None and r.in_place.get("starts"):
        steps.append(f"stop etcd, then `mv {r.input} {r.input}.damaged && cp {out} "
                     f"{r.input}`, then start etcd (it starts on it)")
    elif r.in_place is not None:
        steps.append("etcd will not start with it in place of the db; instead: " + route)
    else:
        steps.append(f"stop etcd and put {out} into a copy of the member's data dir as "
                     "member/snap/db, then start etcd on the copy")
        command, _, rest = route.partition(" (")
        steps.append(f"or, without the data dir ({found}): `{command}` ({rest}")
    return steps


# ---------------------------------------------------------------- check
def check_verdict(result, db: Optional[str] = None) -> List[Tuple[str, str]]:
    """``check``'s verdict as (label, text) lines (nothing for a clean file:
    its one OK line says it): damaged or only warnings, etcd's keys at risk,
    and the next command."""
    if result.clean:
        return []
    counts = dict(result.counts)
    if not result.failing:
        return [("what happened", f"healthy for bbolt and etcd: {result.total:,} warning(s) "
                                  "that never stop them (listed below)"),
                ("next", "nothing to do (--strict counts warnings as problems)")]
    errors = [f for f in result.findings if f.severity == "error"]
    shown = {f.code for f in errors}
    error_counts = {k: v for k, v in counts.items()
                    if k in shown or (k in REGISTRY and REGISTRY[k].severity == "error")}
    lines = [("what happened", "damaged: " + _damage_text(errors, error_counts))]
    at_risk = counts.get(F.ETCD_KEY_AT_RISK, 0)
    if at_risk or counts.get(F.ETCD_REVISIONS_LOST):
        lines.append(("etcd", f"etcd may serve {at_risk:,} keys wrongly (stale or resurrected)"
                              f"; {counts.get(F.ETCD_KEY_LOST, 0):,} keys have no surviving "
                              "revision"))
    lines.append(("next", f"run `boltfix repair {db or 'DB'} --out FIXED` (it writes a "
                          "valid copy; the input is never changed), then follow its verdict"))
    return lines
