"""boltfix.k8s on bytes built by the independent encoder (support/k8sbytes.py),
and a fuzzer of random and truncated envelopes."""

from __future__ import annotations

import collections
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boltfix import bigrecord, k8s, secrets
from boltfix import etcd as E
from support import k8sbytes as K
from support.k8sfuzz import envelopes


def test_protobuf_objects_decode():
    pod = k8s.decode_value(K.pod("p", "ns", labels={"a": "b"}, annotations={"x": "y"},
                                 finalizers=["f1"]), b"/registry/pods/ns/p")
    assert (pod["kind"], pod["apiVersion"], pod["namespace"], pod["name"]) == \
        ("Pod", "v1", "ns", "p")
    assert pod["labels"] == {"a": "b"} and pod["annotations"] == {"x": "y"}
    assert pod["finalizers"] == ["f1"] and pod["resource"] == "pods"
    dep = k8s.decode_value(K.deployment("d", "ns"))
    assert (dep["kind"], dep["apiVersion"]) == ("Deployment", "apps/v1")
    cm = k8s.decode_value(K.configmap("c", "kube-system", {"k": "v"}))
    assert (cm["kind"], cm["namespace"], cm["name"]) == ("ConfigMap", "kube-system", "c")
    assert "secret" not in cm


def test_empty_metadata_fields_are_left_out_as_the_json_form_does():
    """Go's marshaller writes ObjectMeta's empty strings and zeros (``12 00``
    ...); Kubernetes' JSON form leaves them out, and so does the decoding
    (tests/oracle/test_k8s_real.py holds it to the real serializer)."""
    ns = k8s.decode_value(K.unknown("v1", "Namespace", K.ld(1, K.object_meta("team-a"))),
                          b"/registry/namespaces/team-a")
    assert "namespace" not in ns and ns["name"] == "team-a"
    for field in ("generateName", "selfLink", "resourceVersion", "generation"):
        assert field not in ns, field
    pod = k8s.decode_value(K.pod("p", "ns", generate_name="p-", generation=4))
    assert (pod["generateName"], pod["generation"]) == ("p-", 4)
    # an empty Timestamp is Go's zero time: no creationTimestamp
    zero = K.unknown("v1", "ConfigMap", K.ld(1, K.ld(1, "c") + K.ld(8, b"")))
    assert "creationTimestamp" not in k8s.decode_value(zero)


def test_secret_lists_data_and_string_data_keys():
    got = k8s.decode_value(K.secret("s", "ns", {"a": b"12345"}, string_data={"t": "abc"}))
    assert got["secret"] == {"data": {"a": 5}, "type": "Opaque", "stringData": {"t": 3}}
    js = k8s.decode_value(K.json_object("v1", "Secret", "s", "ns", type="Opaque",
                                        stringData={"t": "abcd"}))
    assert js["secret"] == {"type": "Opaque", "stringData": {"t": 4}}


def test_key_layout():
    assert k8s.parse_key(b"/registry/services/endpoints/default/kubernetes") == {
        "resource": "endpoints", "namespace": "default", "name": "kubernetes"}
    assert k8s.parse_key(b"/registry/apiextensions.k8s.io/customresourcedefinitions/w.ex.com") \
        == {"group": "apiextensions.k8s.io", "resource": "customresourcedefinitions",
            "name": "w.ex.com"}
    assert k8s.parse_key(b"/registry/namespaces/default") == {"resource": "namespaces",
                                                              "name": "default"}
    assert k8s.parse_key(b"/other/x") is None


def test_encrypted_envelope():
    v = K.encrypted("kms", "my-kms", b"\x01\x02" * 30)
    d = k8s.decode_value(v, b"/registry/secrets/ns/e")
    assert (d["encoding"], d["provider"], d["key_name"]) == ("encrypted", "kms", "my-kms")
    m = secrets.mask_value(v, b"/registry/secrets/ns/e")
    assert m.startswith(b"k8s:enc:kms:v1:my-kms:") and set(m[22:]) == {ord("*")}
    assert k8s.decode_value(b"k8s:enc:aescbc")["error"].startswith("encryption envelope")


def test_errors_carry_offsets():
    d = k8s.decode_value(K.pod("p", "ns")[:30])
    assert d["encoding"] == "protobuf" and "at offset" in d["error"]
    assert k8s.decode_value(b"plain") is None
    assert k8s.decode_value(b"{not json") is None


def test_resource_summary():
    got = k8s.resource_summary([b"/registry/pods/a/p1", b"/registry/pods/a/p2", b"/other",
                                b"/registry/deployments/a/d", b"/registry/namespaces/a",
                                b"/registry/x.io/ws/b/w"])
    assert got["text"] == "2 pods in a, 1 deployments in a, 1 namespaces, 1 x.io/ws in b"
    assert len(got["objects"]) == 5


def test_parse_key_knows_the_storage_prefixes_that_are_no_resource_names():
    # kubeapiserver's SpecialDefaultResourcePrefixes
    for key, want in ((b"/registry/minions/n1", {"resource": "nodes", "name": "n1"}),
                      (b"/registry/controllers/ns/rc", {"resource": "replicationcontrollers",
                                                        "namespace": "ns", "name": "rc"}),
                      (b"/registry/ingress/ns/i", {"resource": "ingresses", "namespace": "ns",
                                                   "name": "i"}),
                      (b"/registry/podsecuritypolicy/p", {"resource": "podsecuritypolicies",
                                                          "name": "p"}),
                      (b"/registry/services/endpoints/ns/s", {"resource": "endpoints",
                                                              "namespace": "ns", "name": "s"})):
        assert k8s.parse_key(key) == want, key


def test_resource_counter_counts_every_key_in_bounded_groups():
    c = k8s.ResourceCounter(max_groups=3)
    keys = ([b"/registry/pods/ns%d/p%d" % (i % 5, i) for i in range(50)]
            + [b"/registry/nodes/n1", b"/app/x", b"/registry/pods/\x1b[31m/p"])
    for k in keys:
        c.add(k)
    assert c.total == 52 and len(c.counts) == 3
    assert sum(c.counts.values()) + c.other == 52 and c.other == 52 - 30
    j = c.to_json()
    assert j["objects"] == 52 and [r["count"] for r in j["by_resource_namespace"]] == [10] * 3
    assert j["text"] == "30 pods (10 in ns0, 10 in ns1, 10 in ns2), " \
                        "22 more in groups past the first 3"
    # a namespace of control characters is shown as hex (the one rule for text)
    d = k8s.ResourceCounter()
    for k in keys:
        d.add(k)
    t = d.text()
    assert "\x1b" not in t
    assert t.startswith("51 pods (10 in ns0, 10 in ns1, 10 in ns2, 21 in 3 more namespaces)")
    assert t.endswith(", 1 nodes")
    esc = k8s.ResourceCounter()
    esc.add(b"/registry/pods/\x1b[31m/p")
    assert esc.text() == "1 pods in 0x1b5b33316d"
    four = k8s.ResourceCounter()
    for k in (b"/registry/a/x", b"/registry/b/ns/x", b"/registry/b/ms/y"):
        four.add(k)
    assert four.text() == "2 b (1 in ms, 1 in ns), 1 a"
    four.add(b"/registry/b/z")  # a malformed key: one part under a namespaced resource
    assert four.text() == "3 b (1 not namespaced, 1 in ms, 1 in ns), 1 a"


_PARTS = st.sampled_from(["services", "specs", "endpoints", "x.io", "", "a", "b", "minions",
                          "pods", "ns\x00", "n/m"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["/registry/", "/kubernetes.io/", "/other/", "/"]),
                          st.lists(_PARTS, max_size=5)), max_size=40))
def test_resource_counter_counts_what_parse_key_says(keys):
    """The counter's per-prefix shortcut gives parse_key's group for every key."""
    keys = [(head + "/".join(parts)).encode() for head, parts in keys]
    c = k8s.ResourceCounter()
    for k in keys:
        c.add(k)
    want = collections.Counter()
    for k in keys:
        info = k8s.parse_key(k)
        if info is not None:
            want[(info.get("group", ""), info["resource"], info.get("namespace"))] += 1
    assert collections.Counter(c.counts) == want and c.total == sum(want.values())


def test_decode_object_names_metadata():
    obj = k8s.decode_object(K.deployment("d", "ns", replicas=5))
    assert obj["kind"] == "Deployment" and obj["metadata"]["name"] == "d"
    assert obj["2"]["1"] == 5
    json.dumps(bigrecord.jsonable(obj))


# ---------------------------------------------------------------- fuzzing


user_keys = st.sampled_from([None, b"/registry/secrets/ns/s", b"/registry/pods/ns/p",
                             b"/bootstrap/abc", b"/registry/x.io/things/a/b/c", b"/registry/"])


@settings(max_examples=600, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(envelopes, user_keys)
def test_fuzz_never_raises(value, key):
    d = k8s.decode_value(value, key)
    if d is not None:
        json.dumps(bigrecord.jsonable(d))
    json.dumps(bigrecord.jsonable(k8s.decode_object(value)))
    m = secrets.mask_value(value, key)
    assert m is None or len(m) == len(value)
    kv = K.key_value(key or b"/k", value)
    mk = secrets.mask_kv(kv)
    assert mk is None or len(mk) == len(kv)
    for cut in (len(kv) // 2, len(kv) - 1):
        secrets.mask_kv(kv[:cut])
        json.dumps(E.decode_record(b"key", b"\x00" * 8 + b"_" + b"\x00" * 8, kv[:cut]))
    k8s.summary(d or {})


def test_decode_object_stays_linear_on_deep_nesting():
    import time

    inner = b"\x08\x01" * 20000
    for _ in range(40):  # 40 levels of a 40 KB message
        inner = K.ld(1, inner)
    t = time.monotonic()
    obj = k8s.decode_object(b"k8s\x00" + K.ld(2, inner))
    assert time.monotonic() - t < 5
    json.dumps(bigrecord.jsonable(obj))
