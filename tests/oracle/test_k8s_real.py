"""Kubernetes values written by Kubernetes' own code, decoded by boltfix.

``support.k8sgen`` runs k8s.io/api, apimachinery and apiserver v0.37.2:
the protobuf serializer (``k8s\\x00`` + runtime.Unknown) for built-in
kinds, unstructured JSON for a custom resource, and the apiserver's
``aescbc``/``aesgcm``/``secretbox`` transformers under their
``k8s:enc:<provider>:v1:<key name>:`` prefixes.  Its JSON serializer's
form of each object is the expected answer: what boltfix shows of an
object (kind, apiVersion, metadata, a Secret's type and data keys) must
equal it, field by field, and nothing more may show (the JSON form leaves
out empty strings and zeros).  The values are decoded directly
(``boltfix.k8s``) and from a real etcd's db (``dump``), with Secrets
masked by default and byte-exact with ``--show-secrets``; encrypted ones
never decoded.  ``support.k8sbytes`` (the tests' own encoder, from the
published field numbers) must write the same bytes as the real
serializer for the objects it can express.
"""

from __future__ import annotations

import base64
import json
import time

import pytest

from boltfix import k8s
from support import etcdtools, k8sgen
from support import k8sbytes as K
from support.cli import invoke
from support.leaks import leaks

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
#: ObjectMeta fields boltfix shows, by their JSON names
META = ("name", "generateName", "namespace", "uid", "resourceVersion", "generation",
        "creationTimestamp", "deletionTimestamp", "labels", "annotations",
        "ownerReferences", "finalizers")


@pytest.fixture(scope="module")
def real():
    """k8sgen's records, by etcd key."""
    return {r["key"]: r for r in k8sgen.records()}


def expected(rec: dict) -> dict:
    """What boltfix must show of ``rec``, from the JSON serializer's form:
    apiVersion, kind, the metadata fields it names (a Secret's
    last-applied-configuration masked), a Secret's type and data and
    stringData keys with the values' lengths."""
    obj = rec["object"]
    out = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "encoding": rec["encoding"]}
    meta = obj["metadata"]
    out.update({f: meta[f] for f in META if f in meta})
    if obj["kind"] == "Secret":
        if LAST_APPLIED in out.get("annotations", {}):
            out["annotations"] = dict(out["annotations"], **{LAST_APPLIED: "<redacted>"})
        sec = {"type": obj["type"]}
        if "data" in obj:
            sec["data"] = {k: len(base64.b64decode(v)) for k, v in obj["data"].items()}
        if "stringData" in obj:
            sec["stringData"] = {k: len(v.encode()) for k, v in obj["stringData"].items()}
        out["secret"] = sec
    return out


def shown(decoded: dict) -> dict:
    """The parts of a decoding that :func:`expected` speaks of: all but what
    the key says (resource, group)."""
    return {k: v for k, v in decoded.items() if k not in ("resource", "group")}


def secret_bytes(real) -> list:
    """Every secret byte string the records hold: Secret data and stringData
    values, the password in a last-applied annotation, the docker config's
    password and auth, and the ciphertexts (after their envelope header).
    (Whole JSON texts are left out: their windows, ``{"apiVer``,
    ``registry``, show in any dump; the masking of their whole bytes is
    checked apart.)"""
    out = []
    for rec in real.values():
        obj = rec["object"]
        if obj["kind"] != "Secret":
            continue
        out += [base64.b64decode(v) for k, v in obj.get("data", {}).items()
                if k != ".dockerconfigjson"]
        out += [v.encode() for v in obj.get("stringData", {}).values()]
        ann = obj["metadata"].get("annotations", {})
        if LAST_APPLIED in ann:
            out.append(json.loads(ann[LAST_APPLIED])["data"]["password"].encode())
        if rec["encoding"] == "encrypted":
            head = f"k8s:enc:{rec['provider']}:v1:{rec['key_name']}:".encode()
            assert rec["value"].startswith(head)
            out.append(rec["value"][len(head):])
    cfg = json.loads(base64.b64decode(
        real["/registry/secrets/default/regcred"]["object"]["data"][".dockerconfigjson"]))
    for auth in cfg["auths"].values():
        out += [auth["password"].encode(), auth["auth"].encode()]
    return out


# ---------------------------------------------------------------- unit level
def test_every_real_value_decodes_as_its_json_form(real):
    assert len(real) == 15
    for key, rec in real.items():
        got = k8s.decode_value(rec["value"], key.encode())
        info = k8s.parse_key(key.encode())
        assert (got.get("namespace"), got["name"]) == (rec.get("namespace"), rec["name"]), key
        assert {k: got[k] for k in info} == info, key
        if rec["encoding"] == "encrypted":
            continue
        assert shown(got) == expected(rec), key
        # with no key, what the value alone says
        assert shown(k8s.decode_value(rec["value"])) == expected(rec), key


def test_encrypted_values_name_provider_and_key_only(real):
    encrypted = [r for r in real.values() if r["encoding"] == "encrypted"]
    assert sorted(r["provider"] for r in encrypted) == ["aescbc", "aesgcm", "secretbox"]
    for rec in encrypted:
        got = k8s.decode_value(rec["value"], rec["key"].encode())
        assert got == {"resource": "secrets", "namespace": rec["namespace"], "name": rec["name"],
                       "encoding": "encrypted", "provider": rec["provider"],
                       "envelope_version": "v1", "key_name": rec["key_name"]}
        assert k8s.decode_object(rec["value"]) is None  # never decoded
        # what was encrypted is the protobuf Secret, which decodes as such
        plain = k8s.decode_value(rec["plaintext"], rec["key"].encode())
        assert shown(plain) == dict(expected(rec), encoding="protobuf")


def test_k8sbytes_writes_the_real_serializers_bytes(real):
    """The tests' own encoder, a second opinion from the field numbers,
    writes byte for byte what the real serializer writes (where it can
    express the object: Secrets and ConfigMaps; Pods and Deployments carry
    defaults it does not model)."""
    def meta(obj):
        m = obj["metadata"]
        return dict(uid=m["uid"], labels=m.get("labels"), annotations=m.get("annotations"),
                    created=1700000000)

    compared = 0
    for key, rec in real.items():
        obj = rec["object"]
        m = obj["metadata"]
        if obj["kind"] == "Secret" and rec["encoding"] == "protobuf":
            data = {k: base64.b64decode(v) for k, v in obj.get("data", {}).items()}
            mine = K.secret(m["name"], m.get("namespace"), data, type_=obj["type"],
                            string_data=obj.get("stringData"), **meta(obj))
        elif obj["kind"] == "ConfigMap":
            binary = {k: base64.b64decode(v) for k, v in obj.get("binaryData", {}).items()}
            mine = K.configmap(m["name"], m.get("namespace"), obj.get("data", {}),
                               binary_data=binary, **meta(obj))
        else:
            continue
        assert mine == rec["value"], (key, mine, rec["value"])
        compared += 1
    assert compared == 4


# ---------------------------------------------------------------- in real etcd
@pytest.fixture(scope="module", params=["3.4", "3.5", "3.6", "3.7"])
def real_db(request, real, tmp_path_factory):
    """A real etcd's db holding every record under its key (and a plain
    etcd record between them)."""
    version = request.param
    etcdtools.require_etcd(version)
    data = tmp_path_factory.mktemp(f"k8sreal-{version}") / "data"
    with etcdtools.EtcdServer(data, version) as srv:
        gw = etcdtools.Gateway(srv.endpoint)
        for i, (key, rec) in enumerate(real.items()):
            gw.put(key, rec["value"])
            gw.put(f"/app/config-{i:03d}", f"plain-{i}")
        time.sleep(0.2)
    return data / "member" / "snap" / "db"


def dump(db, *args) -> tuple[str, dict]:
    """``dump --bucket key ARGS`` of ``db``: its output and each etcd key's
    record."""
    out = invoke("dump", db, "--bucket", "key", *args).output
    recs = {}
    for line in out.splitlines():
        rec = json.loads(line)
        recs[rec["etcd"]["key"]] = rec
    return out, recs


def etcd_value(rec: dict) -> bytes:
    """The KeyValue's value of a dump record (text, or ``{"hex"}``)."""
    v = rec["etcd"]["value"]
    return bytes.fromhex(v["hex"]) if isinstance(v, dict) else v.encode()


def test_dump_decodes_every_object(real_db, real):
    _out, recs = dump(real_db)
    for key, rec in real.items():
        got = recs[key]["etcd"]["k8s"]
        info = k8s.parse_key(key.encode())
        assert {k: got[k] for k in info} == info, key
        if rec["encoding"] == "encrypted":
            assert (got["encoding"], got["provider"], got["key_name"]) == (
                "encrypted", rec["provider"], rec["key_name"]), key
            assert "kind" not in got and "secret" not in got, key
        else:
            assert shown(got) == expected(rec), key
    assert "k8s" not in recs["/app/config-000"]["etcd"]


def test_dump_masks_every_secret(real_db, real):
    secrets = secret_bytes(real)
    assert len(secrets) == 13
    for args in ((), ("--encoding", "hex"), ("--encoding", "base64"), ("--format", "text"),
                 ("--k8s-object",)):
        out = invoke("dump", real_db, *args).output  # (every bucket)
        assert "db-pass" in out, args
        assert not leaks(out.encode(), secrets), (args, leaks(out.encode(), secrets)[:3])
    _out, recs = dump(real_db, "--encoding", "hex")
    for key, rec in real.items():
        masked = etcd_value(recs[key])
        assert len(masked) == len(rec["value"]), key
        is_secret = rec["kind"] == "Secret"
        assert recs[key].get("value_redacted", False) is is_secret, key
        assert (masked != rec["value"]) is is_secret, key
        if rec["encoding"] == "encrypted":  # masked after the header
            head = len(f"k8s:enc:{rec['provider']}:v1:{rec['key_name']}:")
            assert masked[:head] == rec["value"][:head]
            assert set(masked[head:]) == {ord("*")}, key


def test_show_secrets_gives_the_real_bytes(real_db, real):
    out, recs = dump(real_db, "--encoding", "hex", "--show-secrets")
    for key, rec in real.items():
        assert etcd_value(recs[key]) == rec["value"], key
        assert "value_redacted" not in recs[key]
    assert leaks(out.encode(), secret_bytes(real))  # (the check can fail)
    cfg = recs["/registry/secrets/default/regcred"]["etcd"]["k8s"]["secret"]
    assert cfg == {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": 143}}


def test_k8s_object_shows_the_whole_object(real_db, real):
    """``--k8s-object``: a JSON value as the serializer wrote it; a protobuf
    one by field numbers with its metadata named; an encrypted one not at
    all."""
    _out, recs = dump(real_db, "--k8s-object")
    for key, rec in real.items():
        got = recs[key]["etcd"]["k8s"].get("object")
        if rec["encoding"] == "encrypted":
            assert got is None, key
        elif rec["encoding"] == "json":
            assert got == rec["object"], key
        else:
            meta = rec["object"]["metadata"]
            assert (got["apiVersion"], got["kind"]) == (rec["apiVersion"], rec["kind"]), key
            assert (got["metadata"]["name"], got["metadata"]["uid"]) == (
                meta["name"], meta["uid"]), key
            # (map entries by number, as protoc --decode_raw prints them)
            entries = got["metadata"].get("labels", [])
            entries = entries if isinstance(entries, list) else [entries]
            assert {e["1"]: e["2"] for e in entries} == meta.get("labels", {}), key


def test_text_summary_names_each_object(real_db, real):
    text = invoke("dump", real_db, "--bucket", "key", "--format", "text").output
    for rec in real.values():
        ns = rec.get("namespace")
        where = f"{ns}/{rec['name']}" if ns else rec["name"]
        if rec["encoding"] == "encrypted":
            want = f"Secret {where} encrypted ({rec['provider']}, key {rec['key_name']})"
            want = want.replace("Secret ", "secrets ")  # the key's resource: no kind shows
        else:
            want = f"{rec['kind']} {where} {rec['apiVersion']}"
        assert want in text, (want, text[:3000])
