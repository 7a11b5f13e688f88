"""repair and check name the Kubernetes objects of the etcd keys they report
lost or at risk (issue 13, item 4).

Real etcd 3.4, 3.5, 3.6 and 3.7 dbs hold true Kubernetes encodings (``k8sbytes``,
built from the published field numbers, independently of boltfix), written
through etcd's API; copies are damaged with crafted page damage so that
repair and check put keys at risk or lose them.  What each key names (its
resource, group, namespace and name) is known here from how the test made
the key, not by parsing it: each named key must carry exactly that, and the
summary per resource and namespace must count exactly the keys named.
A plain etcd db (no key under /registry/) gets no Kubernetes field at all.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter

import pytest

from boltfix import k8s, served
from boltfix import structs as S
from boltfix.check import check
from boltfix.reader import DB
from boltfix.repair import repair
from support import damage, etcdtools
from support import k8sbytes as K
from support.cli import invoke
from support.etcdtools import Gateway

PAD = "x" * 500  # an annotation: values of ~800 bytes, a key bucket of many pages


# ---------------------------------------------------------------- the objects
def objects() -> dict:
    """user key -> (value, truth): truth is (group, resource, namespace, name)
    as the key was made (None for a key that is no Kubernetes object)."""
    out: dict = {}
    ann = {"note": PAD}

    def add(truth, key, value):
        out[key] = (value, truth)

    for ns, n in (("default", 60), ("kube-system", 30), ("team-a", 30)):
        for i in range(n):
            add(("", "pods", ns, f"p-{i:03d}"), f"/registry/pods/{ns}/p-{i:03d}",
                K.pod(f"p-{i:03d}", ns, annotations=ann))
    for ns, n in (("default", 12), ("team-a", 6)):
        for i in range(n):
            add(("", "deployments", ns, f"d-{i:02d}"), f"/registry/deployments/{ns}/d-{i:02d}",
                K.deployment(f"d-{i:02d}", ns, annotations=ann))
    for i in range(20):
        add(("", "configmaps", "kube-system", f"cm-{i:02d}"),
            f"/registry/configmaps/kube-system/cm-{i:02d}",
            K.configmap(f"cm-{i:02d}", "kube-system", {"k": PAD}))
    for i in range(12):
        add(("", "secrets", "kube-system", f"s-{i:02d}"), f"/registry/secrets/kube-system/s-{i:02d}",
            K.secret(f"s-{i:02d}", "kube-system", {"token": b"t0k3n" * 100}))
    # the layout's exceptions: Services and Endpoints under /registry/services/
    for i in range(8):
        add(("", "services", "default", f"svc-{i}"), f"/registry/services/specs/default/svc-{i}",
            K.json_object("v1", "Service", f"svc-{i}", "default", pad=PAD))
        add(("", "endpoints", "default", f"svc-{i}"),
            f"/registry/services/endpoints/default/svc-{i}",
            K.json_object("v1", "Endpoints", f"svc-{i}", "default", pad=PAD))
    # cluster-scoped: Namespaces, Nodes (stored as "minions")
    for ns in ("default", "kube-system", "team-a"):
        add(("", "namespaces", None, ns), f"/registry/namespaces/{ns}",
            K.json_object("v1", "Namespace", ns, pad=PAD))
    for i in range(6):
        add(("", "nodes", None, f"node-{i}"), f"/registry/minions/node-{i}",
            K.json_object("v1", "Node", f"node-{i}", pad=PAD))
    # ReplicationControllers are stored under "controllers", Ingresses under "ingress"
    for i in range(3):
        add(("", "replicationcontrollers", "default", f"rc-{i}"),
            f"/registry/controllers/default/rc-{i}",
            K.json_object("v1", "ReplicationController", f"rc-{i}", "default", pad=PAD))
        add(("", "ingresses", "team-a", f"ing-{i}"), f"/registry/ingress/team-a/ing-{i}",
            K.json_object("networking.k8s.io/v1", "Ingress", f"ing-{i}", "team-a", pad=PAD))
    # a custom resource (JSON) and an API group's cluster-scoped object
    for i in range(6):
        add(("example.com", "widgets", "team-a", f"w-{i}"),
            f"/registry/example.com/widgets/team-a/w-{i}",
            K.json_object("example.com/v1", "Widget", f"w-{i}", "team-a", spec={"pad": PAD}))
    for v in ("v1.apps", "v1.batch"):
        add(("apiregistration.k8s.io", "apiservices", None, v),
            f"/registry/apiregistration.k8s.io/apiservices/{v}",
            K.json_object("apiregistration.k8s.io/v1", "APIService", v, pad=PAD))
    # plain etcd keys beside them: no Kubernetes object
    for i in range(20):
        add(None, f"/app/config-{i:02d}", b"plain-" + PAD.encode())
    return out


#: created last and written once: their only revisions are on the last leaves
LATE = {f"/registry/pods/late/l-{i}": ("", "pods", "late", f"l-{i}") for i in range(6)}


def truth_of(key: str):
    t = OBJECTS[key][1] if key in OBJECTS else LATE.get(key)
    if t is None:
        return None
    grp, res, ns, name = t
    out = {"resource": res, "namespace": ns, "name": name}
    if grp:
        out["group"] = grp
    return out


OBJECTS = objects()


def _build(srv) -> None:
    g = Gateway(srv.endpoint)
    keys = list(OBJECTS)
    for k in keys:
        g.put(k, OBJECTS[k][0])
    for k in keys[::2]:  # a second revision of every other key
        g.put(k, OBJECTS[k][0])
    for k in keys[::9]:
        g.delete(k)
    for k in keys[::3]:
        g.put(k, OBJECTS[k][0])
    # one transaction each (etcd commits every 100 ms): each rewrites the last
    # leaf, and the copy it replaces stays on a free page (the evidence that
    # names a key whose only revision was lost)
    for k, (_grp, _res, ns, name) in LATE.items():
        g.put(k, K.pod(name, ns, annotations={"note": PAD}))
        time.sleep(0.15)


def _plain(srv) -> None:
    g = Gateway(srv.endpoint)
    for gen in range(2):
        for i in range(300):
            g.put(f"/app/key-{i:03d}", f"gen{gen}-{PAD}".encode())


@pytest.fixture(scope="module", params=etcdtools.VERSIONS_MAJOR)
def dbs(request, tmp_path_factory):
    """(version, Kubernetes db, plain etcd db), each written by the real etcd."""
    version = request.param
    etcdtools.require_etcd(version)
    work = tmp_path_factory.mktemp(f"k8s-reports-{version}")
    out = []
    for name, build in (("k8s", _build), ("plain", _plain)):
        with etcdtools.EtcdServer(work / name, version) as srv:
            build(srv)
        db = work / f"{name}.db"
        shutil.copyfile(work / name / "member" / "snap" / "db", db)
        out.append(db)
    return version, out[0], out[1]


# ---------------------------------------------------------------- damage
def _zero_leaves(path, which):
    leaves = [n for n in damage.bucket_tree(path, (b"key",)) if n.flags == S.LEAF_PAGE_FLAG]
    ps = damage.page_size_of(path)
    with open(path, "r+b") as f:
        for i in which(len(leaves)):
            f.seek(leaves[i].pgid * ps)
            f.write(bytes(ps))


DAMAGE = {
    # one leaf in the middle: a bounded range of lost revisions, some keys at risk
    "middle-leaf": lambda n: [n // 2],
    # leaves in the middle and the last ones: the tail is open (every key at
    # risk) and the late keys' only revisions are gone (lost, where a free
    # page still holds a copy)
    "tail-leaves": lambda n: [n // 3, n - 2, n - 1],
}


def damaged(db, case, tmp_path):
    src = tmp_path / f"{case}.db"
    shutil.copyfile(db, src)
    _zero_leaves(src, DAMAGE[case])
    return src


# ---------------------------------------------------------------- assertions
def assert_names_each_key(entries) -> list:
    """Each entry's "k8s" is the key's truth (none for a plain key); the truths."""
    truths = []
    for e in entries:
        t = truth_of(e["key"])
        if t is None:
            assert "k8s" not in e, e
        else:
            assert e.get("k8s") == t, (e["key"], e.get("k8s"))
            truths.append(t)
    return truths


def group_counts(truths) -> Counter:
    return Counter((t.get("group", ""), t["resource"], t["namespace"]) for t in truths)


def assert_summary(summary, truths) -> None:
    """The summary counts exactly the named objects, per resource and namespace."""
    assert summary["objects"] == len(truths)
    assert summary["other"] == 0
    got = Counter({(r.get("group", ""), r["resource"], r["namespace"]): r["count"]
                   for r in summary["by_resource_namespace"]})
    assert got == group_counts(truths)
    counts = [r["count"] for r in summary["by_resource_namespace"]]
    assert counts == sorted(counts, reverse=True)  # most first
    # the line for people: each resource's total (of the first 8 resources,
    # by most keys), "in <namespace>" when all are in one
    per, spaces = Counter(), {}
    for t in truths:
        label = t["resource"] if "group" not in t else f"{t['group']}/{t['resource']}"
        per[label] += 1
        spaces.setdefault(label, set()).add(t["namespace"])
    ranked = sorted(per.values(), reverse=True)
    # 8 named, or all 9 (no "1 other resources"); a tie at the 8th place: by name
    cut = ranked[8] if len(ranked) > 9 else 0
    for label, n in per.items():
        if n <= cut:
            continue
        text = ", " + summary["text"] + ", "
        if len(spaces[label]) > 1:
            want = f", {n:,} {label} ("  # then a few namespaces
        else:
            (ns,) = spaces[label]
            want = f", {n:,} {label}" + (f" in {ns}, " if ns else ", ")
        assert want in text, (want, summary["text"])
    if len(per) > 9:
        assert f"{sum(ranked[8:]):,} more of {len(per) - 8} other resources" in summary["text"]


@pytest.mark.parametrize("salvage", [False, True], ids=["tree-only", "salvage"])
@pytest.mark.parametrize("case", list(DAMAGE))
def test_repair_names_resource_namespace_and_name(dbs, case, salvage, tmp_path):
    version, db, _plain_db = dbs
    src = damaged(db, case, tmp_path)
    e = repair(src, tmp_path / "fixed.db", beyond_tree=salvage).to_json()["etcd"]
    assert e["analysed"] and e["at_risk"], "the damage must put keys at risk"
    assert e["at_risk_truncated"] == 0
    risky = assert_names_each_key(e["at_risk"])
    lost = assert_names_each_key(e["lost_keys"])
    assert risky, "Kubernetes objects must be at risk"
    assert_summary(e["k8s_summary"]["at_risk"], risky)
    assert_summary(e["k8s_summary"]["lost_keys"], lost)
    if case == "tail-leaves":
        # the open tail: every key is at risk, cluster-scoped and grouped ones too
        assert e["lost_revisions"]["open_above"] is not None
        kinds = {(t["resource"], t["namespace"] is None) for t in risky}
        assert {("namespaces", True), ("apiservices", True), ("widgets", False),
                ("services", False), ("endpoints", False)} <= kinds
        assert any(truth_of(a["key"]) is None for a in e["at_risk"])  # /app/ keys too
        if not salvage:
            # the late pods' only revisions were on the zeroed leaves; free
            # copies of those leaves name them (3.4/3.5's files hold such
            # copies; etcd 3.6+ may leave none: then no byte of a late key
            # is left in the file to name it)
            assert {a["key"] for a in e["lost_keys"]} <= set(LATE)
            left = src.read_bytes()
            assert lost or not any(k.encode() in left for k in LATE), "a copy is unnamed"
    print(f"\netcd {version} {case} salvage={salvage}: {len(risky)} objects at risk, "
          f"{len(lost)} lost: {e['k8s_summary']['at_risk']['text']}")


@pytest.mark.parametrize("case", list(DAMAGE))
def test_check_names_resource_namespace_and_name(dbs, case, tmp_path):
    _version, db, _ = dbs
    src = damaged(db, case, tmp_path)
    with DB(src) as d:
        res = check(d)
    at_risk = [f.detail for f in res.findings if f.code == "etcd-key-at-risk"]
    lost = [f.detail for f in res.findings if f.code == "etcd-key-lost"]
    assert at_risk
    risky, gone = assert_names_each_key(at_risk), assert_names_each_key(lost)
    summary = res.stats["etcd_k8s_summary"]
    assert_summary(summary["at_risk"], risky)
    assert_summary(summary["lost_keys"], gone)
    # the same keys as repair's dry run on the same tree
    dry = repair(src, tmp_path / "dry.db", dry_run=True, beyond_tree=False).to_json()["etcd"]
    assert {a["key"] for a in dry["at_risk"]} == {a["key"] for a in at_risk}
    assert dry["k8s_summary"]["at_risk"] == summary["at_risk"]


def test_capped_lists_still_count_every_key(dbs, tmp_path, monkeypatch):
    """5 keys listed, 4 groups kept apart: the summary still counts every
    at-risk key (the rest as "other"), and check's with --max-findings."""
    _version, db, _ = dbs
    src = damaged(db, "tail-leaves", tmp_path)
    full = repair(src, tmp_path / "full.db").to_json()["etcd"]
    n = full["k8s_summary"]["at_risk"]["objects"]
    monkeypatch.setattr(served, "MAX_AT_RISK_LISTED", 5)
    monkeypatch.setattr(k8s, "MAX_SUMMARY_GROUPS", 4)
    e = repair(src, tmp_path / "capped.db").to_json()["etcd"]
    assert len(e["at_risk"]) == 5 and e["at_risk_total"] == full["at_risk_total"]
    assert_names_each_key(e["at_risk"])
    s = e["k8s_summary"]["at_risk"]
    assert s["objects"] == n and len(s["by_resource_namespace"]) == 4
    assert sum(r["count"] for r in s["by_resource_namespace"]) + s["other"] == n
    assert s["other"] > 0 and f"{s['other']} more in groups past the first 4" in s["text"]
    with DB(src) as d:
        whole = check(d).stats["etcd_k8s_summary"]
        res = check(d, max_findings=3)
    assert res.stats["etcd_k8s_summary"] == whole and whole["at_risk"]["other"] > 0
    assert whole["at_risk"]["objects"] == res.counts["etcd-key-at-risk"] - sum(
        truth_of(f.detail["key"]) is None for f in check_all(src, "etcd-key-at-risk"))


def check_all(src, code):
    with DB(src) as d:
        return [f for f in check(d).findings if f.code == code]


def _cli(*args, code=(0, 1)):
    return invoke(*args, code=code).output


def test_cli_table_and_json(dbs, tmp_path):
    _version, db, _ = dbs
    src = damaged(db, "middle-leaf", tmp_path)
    rep = json.loads(_cli("repair", src, "--out", tmp_path / "a.db", "--json"))["etcd"]
    s = rep["k8s_summary"]["at_risk"]
    table = _cli("repair", src, "--out", tmp_path / "b.db")
    assert f"Kubernetes objects at risk ({s['objects']:,}): {s['text']}" in table, table
    chk = json.loads(_cli("check", src, "--json"))
    assert chk["stats"]["etcd_k8s_summary"]["at_risk"] == s
    assert all("k8s" in f["detail"] for f in chk["findings"] if f["code"] == "etcd-key-at-risk"
               and truth_of(f["detail"]["key"]))
    assert f"Kubernetes objects at risk ({s['objects']:,}): {s['text']}" in _cli("check", src)


def test_plain_etcd_file_reports_no_kubernetes(dbs, tmp_path):
    _version, _db, plain = dbs
    src = damaged(plain, "tail-leaves", tmp_path)
    rep = json.loads(_cli("repair", src, "--out", tmp_path / "a.db", "--json"))["etcd"]
    assert rep["at_risk"] and "k8s_summary" not in rep
    assert not any("k8s" in a for a in rep["at_risk"] + rep["lost_keys"])
    assert "Kubernetes" not in _cli("repair", src, "--out", tmp_path / "b.db")
    chk = json.loads(_cli("check", src, "--json"))
    assert "etcd_k8s_summary" not in chk["stats"]
    assert not any("k8s" in (f.get("detail") or {}) for f in chk["findings"])
    assert "Kubernetes" not in _cli("check", src)
