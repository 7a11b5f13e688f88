"""boltfix.secrets: every masking rule -- Kubernetes Secrets (on bytes built by
the independent encoder, support/k8sbytes.py), authUsers values, a KeyValue's
secret ranges read in pieces, and file ranges (hexdumps) fuzzed."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from boltfix import bigbytes, k8s, resident, secrets
from boltfix import etcd as E
from boltfix.secrets import redact_user_value
from boltfix.text import REDACTED
from support import k8sbytes as K
from support.k8sfuzz import SECRET


def test_secret_masked_at_same_length_metadata_kept():
    value = K.secret("s", "ns", {"a": SECRET, "b": SECRET[::-1]}, type_="Opaque",
                     labels={"team": "x"},
                     annotations={k8s.LAST_APPLIED.decode(): SECRET.hex()})
    masked = secrets.mask_value(value)  # found by its kind, no key given
    assert len(masked) == len(value)
    assert SECRET not in masked and SECRET[::-1] not in masked and SECRET.hex().encode() \
        not in masked
    d = k8s.decode_value(masked)
    assert (d["kind"], d["name"], d["labels"]) == ("Secret", "s", {"team": "x"})
    assert d["secret"] == {"data": {"a": len(SECRET), "b": len(SECRET)}, "type": "Opaque"}
    assert d["annotations"][k8s.LAST_APPLIED.decode()] == REDACTED
    # the masked bytes are exactly the values: everything else is unchanged
    diff = [i for i in range(len(value)) if value[i] != masked[i]]
    assert len(diff) <= 2 * len(SECRET) + len(SECRET.hex())


def test_json_secret_and_kv_masking():
    js = K.json_object("v1", "Secret", "j", "ns", data={"k": "ÄÖ" + SECRET.hex()},
                       stringData={"p": "plain-text-password"})
    kv = K.key_value(b"/registry/secrets/ns/j", js)
    masked = secrets.mask_kv(kv)
    assert len(masked) == len(kv)
    assert SECRET.hex().encode() not in masked and b"plain-text-password" not in masked
    obj = json.loads(E.decode_key_value(masked)["value"])
    assert obj["metadata"]["name"] == "j" and set(obj["data"]) == {"k"}
    # not a Secret: untouched
    assert secrets.mask_kv(K.key_value(b"/registry/configmaps/ns/c", K.configmap("c", "ns", {
        "a": "b"}))) is None


def test_undecodable_secret_masked_whole():
    raw = b"plain secret value " + SECRET
    masked = secrets.mask_value(raw, b"/registry/secrets/ns/x")
    assert masked == b"*" * len(raw)
    cut = K.secret("s", "ns", {"a": SECRET})[:60]
    m = secrets.mask_value(cut)
    assert m[:4] == b"k8s\x00" and set(m[4:]) == {ord("*")}
    # a KeyValue cut short that names a Secret: all of it
    kv = K.key_value(b"/registry/secrets/ns/s", K.secret("s", "ns", {"a": SECRET}))[:-7]
    assert secrets.mask_kv(kv) == b"*" * len(kv)


# ---------------------------------------------------------------- fuzzing


@settings(max_examples=200, deadline=2000)
@given(st.binary(min_size=16, max_size=3 * 512), st.integers(0, 1024), st.integers(1, 700))
def test_fuzz_mask_file_range(buf, start, n):
    out = secrets.mask_file_range(buf, 512, start, buf[start:start + n])
    assert len(out) == len(buf[start:start + n])


# ---------------------------------------------------------------- files
SECRET_DATA = {"password": b"hunter2-very-secret-password-value-0123456789"}


def _secret_kv(name: str, pad: int = 0) -> bytes:
    value = K.secret(name, "default", SECRET_DATA, annotations={"pad": "x" * pad})
    return K.key_value(f"/registry/secrets/default/{name}".encode(), value)


def test_kv_secret_ranges_of_a_view_in_pieces(monkeypatch):
    """secrets.kv_view_secret_ranges (what page masks a value with) reads a big
    view as a bigbytes.Span: with every value "big" and pieces of 3 to 20
    bytes (a marker cut by every edge) its answer is that of the bytes."""
    kvs = [_secret_kv("a"), _secret_kv("b", pad=50),
           K.key_value(b"/registry/configmaps/x/y", K.configmap("y", "x", {"k": b"v"})),
           K.key_value(b"/registry/pods/x/y", K.json_object("v1", "Secret", "y", "x",
                                                           data={"k": "c2VjcmV0"})),
           K.key_value(b"/registry/pods/x/z", K.pod("z", "x")), b"\x0a\x05Secret"]
    want = [secrets.kv_secret_ranges(kv) for kv in kvs]
    assert want[0] and want[1] and want[3] and not want[2] and not want[4]
    monkeypatch.setattr(resident, "BIG_VALUE", 1)
    for size in range(3, 21):
        monkeypatch.setattr(resident, "PIECE", size)
        monkeypatch.setattr(bigbytes, "MIN_SPAN", size)
        assert [secrets.kv_view_secret_ranges(memoryview(kv)) for kv in kvs] == want


# ---------------------------------------------------------------- 200 MB
# big_value_db (a 200 MB value among small records; its leaf is page 17,
# overflow 51200) and mode (C core or pure Python) are in conftest.py


# ---------------------------------------------------------------- etcd-shaped files


def test_redact_user_value_masks_password_only():
    h = b"$2a$10$" + b"a" * 53
    v = bytes([0x0A, 4]) + b"root" + bytes([0x12, len(h)]) + h + bytes([0x1A, 4]) + b"root"
    out = redact_user_value(v)
    assert h not in out and b"root" in out and len(out) == len(v)
    assert redact_user_value(b"\xff\xff") == b"**"
