"""Kubernetes' storage bytes, built from the published field numbers.

An *independent* encoder for tests (:mod:`support.protobuf`): it shares no
code with boltfix (not even its varint), so a decoder bug cannot cancel out.  Field numbers are
those of Kubernetes' ``generated.proto`` files:

* ``apimachinery/pkg/runtime``: Unknown {1 typeMeta {1 apiVersion, 2 kind},
  2 raw, 3 contentEncoding, 4 contentType}; values start ``k8s\\x00``.
* ``apimachinery/pkg/apis/meta/v1``: ObjectMeta {1 name, 2 generateName,
  3 namespace, 4 selfLink, 5 uid, 6 resourceVersion, 7 generation, 8 creationTimestamp
  {1 seconds, 2 nanos}, 11 labels, 12 annotations, 13 ownerReferences {1
  kind, 3 name, 4 uid, 5 apiVersion, 6 controller}, 14 finalizers}.
* ``api/core/v1``: Secret {1 metadata, 2 data, 3 type, 4 stringData,
  5 immutable}; ConfigMap {1 metadata, 2 data, 3 binaryData}; Pod {1
  metadata, 2 spec {2 containers {1 name, 2 image}}, 3 status}.
* ``api/apps/v1``: Deployment {1 metadata, 2 spec {1 replicas, 3 template
  {1 metadata, 2 spec}}}.
"""

from __future__ import annotations

import json

from support.protobuf import ld, tag, varint, vi  # noqa: F401  (k8sbytes' API)


def map_entries(field: int, items: dict) -> bytes:
    # Go's gogo-protobuf writes map entries sorted by key
    return b"".join(ld(field, ld(1, k) + ld(2, v)) for k, v in sorted(items.items()))


def object_meta(name, namespace=None, uid="", labels=None, annotations=None,
                created=1700000000, owners=(), finalizers=(), generate_name="",
                generation=0) -> bytes:
    # as Go's generated marshaller writes it (checked against the real
    # serializer by tests/oracle/test_k8s_real.py): the strings 1-6, the
    # generation and the creation time always, even when empty or zero; a
    # Timestamp's nanos always 0 (metav1.Time.ProtoTime leaves them out)
    m = ld(1, name) + ld(2, generate_name) + ld(3, namespace or "") + ld(4, "")
    m += ld(5, uid or f"uid-{name}") + ld(6, "") + vi(7, generation)
    m += ld(8, vi(1, created) + vi(2, 0))
    m += map_entries(11, labels or {})
    m += map_entries(12, annotations or {})
    for o in owners:
        m += ld(13, ld(1, o["kind"]) + ld(3, o["name"]) + ld(4, o["uid"])
                + ld(5, o["apiVersion"]) + vi(6, 1))
    for f in finalizers:
        m += ld(14, f)
    return m


def unknown(api_version: str, kind: str, raw: bytes) -> bytes:
    return b"k8s\x00" + ld(1, ld(1, api_version) + ld(2, kind)) + ld(2, raw) + ld(3, "") + ld(4, "")


def secret(name, namespace, data: dict, type_="Opaque", string_data=None, **meta) -> bytes:
    raw = ld(1, object_meta(name, namespace, **meta)) + map_entries(2, data) + ld(3, type_)
    raw += map_entries(4, string_data or {})
    return unknown("v1", "Secret", raw)


def configmap(name, namespace, data: dict, binary_data=None, **meta) -> bytes:
    raw = ld(1, object_meta(name, namespace, **meta)) + map_entries(2, data)
    raw += map_entries(3, binary_data or {})
    return unknown("v1", "ConfigMap", raw)


def pod_spec(image: str, name: str = "main") -> bytes:
    return ld(2, ld(1, name) + ld(2, image))


def pod(name, namespace, image="nginx:1.25", **meta) -> bytes:
    raw = ld(1, object_meta(name, namespace, **meta)) + ld(2, pod_spec(image)) + ld(3, b"")
    return unknown("v1", "Pod", raw)


def deployment(name, namespace, replicas=3, image="nginx:1.25", **meta) -> bytes:
    template = ld(1, object_meta(name + "-tmpl", labels={"app": name})) + ld(2, pod_spec(image))
    spec = vi(1, replicas) + ld(3, template)
    raw = ld(1, object_meta(name, namespace, **meta)) + ld(2, spec)
    return unknown("apps/v1", "Deployment", raw)


def json_object(api_version, kind, name, namespace=None, **body) -> bytes:
    meta = {"name": name, "uid": f"uid-{name}", "creationTimestamp": "2023-11-14T22:13:20Z"}
    if namespace:
        meta["namespace"] = namespace
    return json.dumps({"apiVersion": api_version, "kind": kind, "metadata": meta, **body}
                      ).encode() + b"\n"


def encrypted(provider="aescbc", key_name="key1", ciphertext=b"\x8f\x01" * 40) -> bytes:
    return b"k8s:enc:" + provider.encode() + b":v1:" + key_name.encode() + b":" + ciphertext


def key_value(key: bytes, value: bytes, create=1, mod=1, version=1) -> bytes:
    """An mvccpb.KeyValue (1 key, 2 create_revision, 3 mod_revision, 4 version, 5 value)."""
    return ld(1, key) + vi(2, create) + vi(3, mod) + vi(4, version) + ld(5, value)
