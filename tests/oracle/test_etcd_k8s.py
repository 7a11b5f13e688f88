"""Kubernetes objects in real etcd dbs: decoded, and their Secrets never shown
by default.

The dbs are written by the real etcd 3.4, 3.5, 3.6 and 3.7 through its API (the gRPC
gateway's ``/v3/kv/put``: binary values without a shell in the way); the
values are true Kubernetes encodings built by ``k8sbytes`` from the published
field numbers, independently of boltfix's decoder (and held to the bytes
Kubernetes' own serializers write by ``test_k8s_real.py``).
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import time
import urllib.request

import pytest

from boltfix import ccore, leaves, walk
from support import damage, etcdtools, oracle
from support import k8sbytes as K
from support.cli import invoke
from support.leaks import leaks
from support.purepy import pure_python


def secret_value(tag: str) -> bytes:
    """Secret bytes: random binary, and a text part (text windows too) that
    no name shares (``tag`` only says what it is for), of letters that are
    no hex digits (8 random hex digits turn up in any long hex output)."""
    text = "".join(random.choice("ghijklmnopqrstuvwxyz") for _ in range(24))
    return os.urandom(24) + b"s3cr3t-" + text.encode()


# what each object must decode to: key -> (kind, namespace, name)
def build_objects():
    objs = {}  # user key -> (value bytes, (kind, ns, name))
    secrets = []  # every Secret data value ever written (also overwritten ones)

    def put(key, value, ident):
        objs[key] = (value, ident)

    for i in range(12):
        put(f"/registry/pods/default/web-{i}", K.pod(f"web-{i}", "default",
            labels={"app": "web"}, owners=[{"kind": "ReplicaSet", "name": "web-rs",
                                             "uid": "rs-uid", "apiVersion": "apps/v1"}]),
            ("Pod", "default", f"web-{i}"))
    put("/registry/pods/kube-system/coredns", K.pod("coredns", "kube-system"),
        ("Pod", "kube-system", "coredns"))
    opaque = {"password": secret_value("opaque-pw"), "user": secret_value("opaque-user")}
    tok = {"token": secret_value("sa-token"), "ca.crt": secret_value("ca") * 4,
           "namespace": secret_value("nsval")}
    boot = {"token-id": secret_value("bt-id"), "token-secret": secret_value("bt-secret")}
    # bigger than a page: its leaf has overflow pages, shown alone by `page`
    big = {"tls.key": b"".join(secret_value("big") for _ in range(200))}
    secrets.append(big["tls.key"])
    put("/registry/secrets/default/big-tls", K.secret("big-tls", "default", big,
                                                      type_="kubernetes.io/tls"),
        ("Secret", "default", "big-tls"))
    last_applied = secret_value("last-applied")
    # what etcd holds: the annotation keeps base64 text (not hex: the
    # windows of hex text would be found in any hex output by chance)
    secrets += list(opaque.values()) + list(tok.values()) + list(boot.values()) + [
        base64.b64encode(last_applied)]
    put("/registry/secrets/default/db-pass", K.secret(
        "db-pass", "default", opaque, annotations={
            "kubectl.kubernetes.io/last-applied-configuration":
                base64.b64encode(last_applied).decode()}),
        ("Secret", "default", "db-pass"))
    put("/registry/secrets/kube-system/default-token-abcde", K.secret(
        "default-token-abcde", "kube-system", tok, type_="kubernetes.io/service-account-token",
        annotations={"kubernetes.io/service-account.name": "default"}),
        ("Secret", "kube-system", "default-token-abcde"))
    put("/registry/secrets/kube-system/bootstrap-token-07401b", K.secret(
        "bootstrap-token-07401b", "kube-system", boot, type_="bootstrap.kubernetes.io/token"),
        ("Secret", "kube-system", "bootstrap-token-07401b"))
    js = secret_value("json-secret")
    secrets.append(base64.b64encode(js))  # what a JSON Secret holds
    put("/registry/secrets/legacy/json-secret", K.json_object(
        "v1", "Secret", "json-secret", "legacy", type="Opaque",
        data={"key": base64.b64encode(js).decode()}), ("Secret", "legacy", "json-secret"))
    put("/registry/configmaps/kube-system/kubeadm-config", K.configmap(
        "kubeadm-config", "kube-system", {"ClusterConfiguration": "apiVersion: kubeadm/v1"}),
        ("ConfigMap", "kube-system", "kubeadm-config"))
    put("/registry/configmaps/default/app", K.configmap("app", "default", {"a": "1"}),
        ("ConfigMap", "default", "app"))
    put("/registry/deployments/default/web", K.deployment("web", "default"),
        ("Deployment", "default", "web"))
    put("/registry/example.com/widgets/default/w1", K.json_object(
        "example.com/v1", "Widget", "w1", "default", spec={"size": 3}),
        ("Widget", "default", "w1"))
    put("/registry/services/specs/default/kubernetes", K.json_object(
        "v1", "Service", "kubernetes", "default"), ("Service", "default", "kubernetes"))
    # credentials outside /registry/secrets/: OpenShift 3's prefix, an OAuth
    # token, k3s' bootstrap data; masked whole (the values are no Kubernetes
    # encoding here, or are JSON)
    # (masked whole, the kind cannot show: what decodes comes from the key,
    # which names a credential; a value that is no object under any other
    # key gets no "k8s" member: test_non_object_values_stay_with_c)
    for key, ident in (("/kubernetes.io/secrets/ns3/plain", (None, "ns3", "plain")),
                       ("/registry/oauth.openshift.io/oauthaccesstokens/sha256~tok",
                        (None, None, "sha256~tok")),
                       ("/bootstrap/3f1c9a", None)):
        v = secret_value(key)
        if "oauth" in key:
            v = K.json_object("oauth.openshift.io/v1", "OAuthAccessToken", "sha256~tok",
                              token=base64.b64encode(v).decode())
            secrets.append(v[-60:-3])  # inside the token's text
        else:
            secrets.append(v)
        put(key, v, ident)
    put("/registry/secrets/default/encrypted", K.encrypted(ciphertext=os.urandom(200)),
        (None, "default", "encrypted"))
    return objs, secrets


def http_put(srv, key: str, value: bytes) -> None:
    body = json.dumps({"key": base64.b64encode(key.encode()).decode(),
                       "value": base64.b64encode(value).decode()}).encode()
    req = urllib.request.Request(srv.endpoint + "/v3/kv/put", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


@pytest.fixture(scope="module", params=etcdtools.VERSIONS_MAJOR)
def k8s_db(request, tmp_path_factory):
    version = request.param
    etcdtools.require_etcd(version)
    objs, secrets = build_objects()
    data = tmp_path_factory.mktemp(f"k8s-{version}") / "data"
    with etcdtools.EtcdServer(data, version) as srv:
        # an old version of a Secret, and a deleted one: their data stays in
        # free pages (compacted), where --include free finds the records
        old = {"password": secret_value("old-pw")}
        gone = {"token": secret_value("gone")}
        secrets += list(old.values()) + list(gone.values())
        http_put(srv, "/registry/secrets/default/db-pass",
                 K.secret("db-pass", "default", old))
        http_put(srv, "/registry/secrets/default/gone", K.secret("gone", "default", gone))
        for i, (key, (value, _ident)) in enumerate(objs.items()):
            http_put(srv, key, value)
            # plain etcd records between them: the C core writes these itself
            http_put(srv, f"/app/config-{i:03d}", b"plain-value-%d" % i)
        srv.ctl("del", "/registry/secrets/default/gone")
        srv.ctl("compact", str(srv.revision()), "--physical")
        time.sleep(0.5)
    return data / "member" / "snap" / "db", objs, secrets


def _require_c() -> None:
    """These compare the C core with Python: without it they skip locally,
    and fail under CI=true (CI builds it)."""
    if ccore.speedups is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the C core is not built", pytrace=False)
        pytest.skip("no C core")


def run(*args, code=(0,)):
    return invoke(*args, code=code)


def hexdump_bytes(text: str) -> bytes:
    """The bytes a `page --hex` output shows, in order (for window checks)."""
    out = bytearray()
    for line in text.splitlines():
        m = re.match(r"^[0-9a-f]{8}  ((?:[0-9a-f]{2} ?)+)", line)
        if m:
            out += bytes.fromhex(m.group(1).replace(" ", ""))
    return bytes(out)


def page_ids(db) -> list:
    """Every page bbolt ever allocated (below the high-water mark), overflow
    pages too, and the file's last page: etcd 3.6+ sizes its file 16 MB
    ahead, thousands of pages bbolt never wrote."""
    info = json.loads(run("inspect", db, "--json").stdout)["file"]
    n = info["pages_in_file"]
    return sorted(set(range(min(n, info["hwm"]))) | {n - 1})


# ---------------------------------------------------------------- decoding
def test_every_object_decodes(k8s_db):
    db, objs, _ = k8s_db
    lines = [json.loads(x) for x in run("dump", db, "--bucket", "key").output.splitlines()]
    latest = {}
    for rec in lines:
        e = rec["etcd"]
        if isinstance(e.get("key"), str):
            latest[e["key"]] = e
    for key, (_value, ident) in objs.items():
        if ident is None:
            assert "k8s" not in latest[key]  # no Kubernetes object in the value
            continue
        kind, ns, name = ident
        assert "k8s" in latest[key], (key, latest[key])
        k = latest[key]["k8s"]
        assert "error" not in k, (key, k)
        assert (k.get("kind"), k.get("namespace"), k.get("name")) == (kind, ns, name), (key, k)
    enc = latest["/registry/secrets/default/encrypted"]["k8s"]
    assert (enc["provider"], enc["key_name"], enc["resource"]) == ("aescbc", "key1", "secrets")
    tok = latest["/registry/secrets/kube-system/default-token-abcde"]["k8s"]
    assert tok["secret"]["type"] == "kubernetes.io/service-account-token"
    assert sorted(tok["secret"]["data"]) == ["ca.crt", "namespace", "token"]
    pod = latest["/registry/pods/default/web-3"]["k8s"]
    assert pod["labels"] == {"app": "web"} and pod["apiVersion"] == "v1"
    assert pod["ownerReferences"][0]["name"] == "web-rs"
    assert pod["creationTimestamp"] == "2023-11-14T22:13:20Z"
    assert latest["/registry/services/specs/default/kubernetes"]["k8s"]["resource"] == "services"
    assert latest["/registry/example.com/widgets/default/w1"]["k8s"]["group"] == "example.com"


def test_text_summary_and_object(k8s_db):
    db, _objs, _ = k8s_db
    text = run("dump", db, "--bucket", "key", "--format", "text").output
    assert re.search(r"/registry/deployments/default/web  rev=\d+  Deployment default/web apps/v1",
                     text), text
    assert "Secret kube-system/default-token-abcde v1" in text
    assert "type=kubernetes.io/service-account-token data keys: ca.crt,namespace,token" in text
    out = run("dump", db, "--bucket", "key", "--k8s-object").output
    objs = {}
    for line in out.splitlines():
        e = json.loads(line)["etcd"]
        if "k8s" in e and "object" in e["k8s"]:
            objs[e["key"]] = e["k8s"]["object"]
    dep = objs["/registry/deployments/default/web"]
    assert dep["kind"] == "Deployment" and dep["metadata"]["name"] == "web"
    assert dep["2"]["1"] == 3  # DeploymentSpec.replicas, by number
    assert objs["/registry/example.com/widgets/default/w1"]["spec"] == {"size": 3}


def test_inspect_counts_objects(k8s_db):
    db, _objs, _ = k8s_db
    info = json.loads(run("inspect", db, "--json").output)
    k = info["etcd"]["kubernetes"]
    assert k["objects"]["pods"] == 13
    assert k["objects"]["secrets"] == 7  # 6 in /registry/, 1 in /kubernetes.io/; gone was deleted
    assert k["objects"]["example.com/widgets"] == 1
    assert k["namespaces"] == 4  # default, kube-system, legacy, ns3
    assert k["objects_per_namespace"]["kube-system"] == 4
    table = run("inspect", db).output
    assert "pods" in table and "13" in table


def test_prefix_selects_user_keys(k8s_db):
    db, _objs, _ = k8s_db
    out = run("dump", db, "--bucket", "key", "--prefix", "/registry/pods/").output
    keys = {json.loads(x)["etcd"]["key"] for x in out.splitlines()}
    assert keys == {f"/registry/pods/default/web-{i}" for i in range(12)} | {
        "/registry/pods/kube-system/coredns"}
    # alone on an etcd db, as etcdctl's --prefix
    alone = run("dump", db, "--prefix", "/registry/pods/kube-system/").output.splitlines()
    assert [json.loads(x)["etcd"]["key"] for x in alone] == ["/registry/pods/kube-system/coredns"]
    listed = run("keys", db, "key", "--prefix", "/registry/pods/").output.split()
    assert len(listed) == 13
    assert all(len(bytes.fromhex(k)) == 17 for k in listed)  # the revisions


# ---------------------------------------------------------------- secrets
def dump_outputs(db):
    """Every dump variant named by the issue, without --show-secrets."""
    outs = {}
    for enc in ("auto", "hex", "utf8", "base64"):
        for dec in ("auto", "none"):
            outs[f"jsonl-{enc}-{dec}"] = ["dump", db, "--encoding", enc, "--decode", dec,
                                          "--include", "live,free,orphan"]
    outs["text"] = ["dump", db, "--format", "text", "--include", "live,free,orphan"]
    outs["object"] = ["dump", db, "--k8s-object", "--include", "live,free,orphan"]
    outs["text-object"] = ["dump", db, "--k8s-object", "--format", "text"]
    return outs


def all_outputs(db, extra=()):
    """(name, bytes) of every output, each run with `extra` options."""
    for name, args in dump_outputs(db).items():
        r = invoke(*args, *extra)
        assert r.exit_code in (0, 1), (name, r.output)
        yield name, r.stdout_bytes + r.stderr_bytes if hasattr(r, "stderr_bytes") else r.stdout_bytes
    lines = [json.loads(x) for x in run("dump", db, "--bucket", "key", "--encoding",
                                        "hex", code=(0, 1)).stdout.splitlines()]
    for rec in lines:
        if not re.search(r"secrets|oauth|bootstrap", str(rec["etcd"].get("key"))):
            continue  # get of the records that hold credentials
        for enc in ("auto", "raw", "hex", "base64"):
            r = invoke("get", db, "key", "0x" + rec["key"], "--encoding", enc, *extra)
            yield f"get-{rec['key']}-{enc}", r.stdout_bytes
    ids = [str(i) for i in page_ids(db)]
    for args in (["page"], ["page", "--json"]):
        r = invoke(args[0], str(db), *ids, *args[1:], *extra)
        yield " ".join(args), r.stdout_bytes
    r = invoke("page", str(db), *ids, "--hex", *extra)
    yield "page --hex", r.stdout_bytes + hexdump_bytes(r.output)
    for pgid in ids:  # one page at a time: an overflow page alone
        r = invoke("page", str(db), pgid, "--hex", *extra)
        yield f"page --hex {pgid}", hexdump_bytes(r.output)


def test_overflow_page_of_a_secret_is_not_decoded(k8s_db):
    db, _objs, _ = k8s_db
    views = json.loads(run("page", db, *page_ids(db), "--json").output)
    masked = [v for v in views if v["type"] == "masked"]
    assert masked, "no overflow page of the big Secret"
    shown = json.loads(run("page", db, *[v["id"] for v in masked], "--json",
                           "--show-secrets").output)
    assert all(v["type"] != "masked" for v in shown)


def test_no_secret_in_any_output(k8s_db):
    db, _objs, secrets = k8s_db
    found_free = False
    for name, out in all_outputs(db):
        assert not leaks(out, secrets), (name, leaks(out, secrets)[:3])
        found_free = found_free or (b'"state":"free"' in out and b"k8s" in out)
    assert found_free  # the free-page records were there to be masked


#: the slow tests (every output form, page by page, twice) on the two oldest
#: versions only; 3.6/3.7 run every other test of this file (CI's time)
OLD_VERSIONS = pytest.mark.parametrize("k8s_db", ["3.4", "3.5"], indirect=True)


@OLD_VERSIONS
def test_show_secrets_shows_them_all(k8s_db):
    db, _objs, secrets = k8s_db
    live = secrets[:-2]  # the last two were overwritten / deleted
    seen = {s: set() for s in secrets}
    for name, out in all_outputs(db, ["--show-secrets"]):
        for s in secrets:
            if leaks(out, [s]):
                seen[s].add(name.split("-")[0] if name.startswith("get") else name)
    for s in live:
        for must in ("jsonl-auto-auto", "jsonl-hex-none", "jsonl-base64-auto", "page --hex"):
            assert must in seen[s], (s[:12], must, seen[s])
        assert "get" in seen[s]
    for s in secrets[-2:]:  # stale versions: only in the free pages
        assert "jsonl-hex-none" in seen[s], (s[:12], seen[s])


def test_same_with_and_without_c(k8s_db):
    _require_c()
    db, _objs, _ = k8s_db
    variants = [["dump", db], ["dump", db, "--encoding", "hex"],
                ["dump", db, "--decode", "none"], ["dump", db, "--decode", "none", "--encoding",
                                                   "hex"], ["dump", db, "--show-secrets"],
                ["dump", db, "--include", "live,free,orphan"], ["dump", db, "--k8s-object"],
                ["dump", db, "--limit", "7"]]
    fast = [run(*v).output for v in variants]
    with pure_python():
        slow = [run(*v).output for v in variants]
    assert fast == slow
    # runs of 3 leaves: C stops and resumes mid-bucket
    saved_run = walk.RUN_LEAVES
    walk.RUN_LEAVES = 3
    try:
        assert [run(*v).output for v in variants] == slow
    finally:
        walk.RUN_LEAVES = saved_run


# ---------------------------------------------------------------- damage
def _secret_elements(path):
    """(pgid, index, element) of every key-bucket record holding a Secret."""

    out = []
    for node in damage.leaves(path, [b"key"]):
        for idx in range(len(node.keys)):
            el = damage.read_leaf_element(path, node.pgid, idx)
            off = node.pgid * damage.page_size_of(path) + 16 + 16 * idx + el.pos + el.ksize
            value = damage._read(path, off, el.vsize)
            if b"/registry/secrets/" in value:
                out.append((node.pgid, idx, el, off))
    return out


@pytest.mark.parametrize("how", ["value-cut", "field-tag", "file-cut"])
def test_no_secret_in_output_of_a_damaged_db(k8s_db, tmp_path, how):
    """KeyValues that no longer parse, and a file cut short inside a Secret's
    overflow run: still no window of a secret anywhere, and no traceback."""
    import shutil


    db, _objs, secrets = k8s_db
    path = tmp_path / "damaged.db"
    shutil.copyfile(db, path)
    found = _secret_elements(path)
    assert found
    for pgid, idx, el, off in found:
        if how == "value-cut":  # field 5's length now runs past the value
            damage.write_leaf_element(path, pgid, idx, vsize=el.vsize - 9)
        elif how == "field-tag":  # a wire type 7 in the middle: no KeyValue
            damage._write(path, off + el.vsize // 2, b"\x07")
    if how == "file-cut":  # inside the big Secret's overflow pages
        big = max(found, key=lambda f: f[2].vsize)
        with open(path, "r+b") as f:
            f.truncate(big[3] + big[2].vsize // 2)
    for name, out in all_outputs(path):
        assert b"internal error" not in out, name
        assert not leaks(out, secrets), (how, name, leaks(out, secrets)[:3])


# ---------------------------------------------------------------- the C core's share
def test_non_object_values_stay_with_c(tmp_path):
    """An etcd-shaped file (real bbolt) whose /registry/ values are no
    Kubernetes objects: they get no "k8s" member, the C core writes them
    (it hands back only objects and what may be secret), and C and Python
    agree; a JSON Secret whose kind is spelt with an escape is still masked."""

    _require_c()
    path = tmp_path / "etcd.db"
    oracle.make_shape("etcd-big", path, "--keys", "3000", "--value-size", "300")
    data = path.read_bytes()
    assert data.count(b"k8s\x00") >= 3000
    path.write_bytes(data.replace(b"k8s\x00", b"raw\x00"))  # no page checksums in bbolt
    secret = secret_value("escaped")
    b64 = base64.b64encode(secret).decode()
    extra = [(b"/registry/widgets/ns/esc",
              b'{"apiVersion":"v1","kind":"\\u0053ecret","metadata":{"name":"esc"},'
              b'"data":{"k":"' + b64.encode() + b'"}}'),
             (b"/registry/pods/ns/plain-escape", b"not json \\u0041 at all")]
    for i, (key, value) in enumerate(extra):
        rev = (10 ** 6 + i).to_bytes(8, "big") + b"_" + bytes(8)
        oracle.put(path, [b"key"], rev, K.key_value(key, value))

    back = []
    orig = leaves.Leaves.write_jsonl

    def counting(self, *a):
        r = orig(self, *a)
        back.append(r[3] is not None)
        return r

    variants = [["dump", path], ["dump", path, "--encoding", "hex"],
                ["dump", path, "--decode", "none"], ["dump", path, "--format", "text"]]
    leaves.Leaves.write_jsonl = counting
    try:
        fast = [run(*v).output for v in variants[:3]]
    finally:
        leaves.Leaves.write_jsonl = orig
    # only the page with the escaped Secret comes back to Python
    assert 0 < sum(back) <= 3 * 2, sum(back)
    lines = [json.loads(x) for x in fast[0].splitlines()]
    kv = [x for x in lines if x["path"] == ["key"]]
    assert len(kv) == 3000 + len(extra)
    with_k8s = [x["etcd"]["key"] for x in kv if "k8s" in x["etcd"]]
    assert with_k8s == ["/registry/widgets/ns/esc"]
    esc = next(x for x in kv if x["etcd"]["key"] == "/registry/widgets/ns/esc")
    assert esc.get("value_redacted") and esc["etcd"]["k8s"]["kind"] == "Secret"
    for out in fast:
        assert b64 not in out and secret.hex() not in out
    with pure_python():
        slow = [run(*v).output for v in variants]
    assert fast == slow[:3]
    assert b64 not in slow[3]
