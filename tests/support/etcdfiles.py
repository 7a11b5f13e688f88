"""etcd-shaped bbolt files written by boltfix's writer (the real etcd refuses
a request over 1.5 MB by default): Kubernetes objects and credentials of
every kind the masking and the decoding tell apart, users, and a bucket made
free by pointing its header elsewhere."""

from __future__ import annotations

import struct

from boltfix.reader import DB
from boltfix.writer import BoltWriter
from support import damage
from support import k8sbytes as K
from support.protobuf import BCRYPT, user

#: secret payloads: none may ever appear in masked output (nor its hex)
SECRET_A = b"SECRET-PAYLOAD-a1b2c3d4e5f6-" * 40


SECRET_B = "sécrét-ünïcode-😀-".encode() * 30


OTHER_HASH = b"$2b$12$" + b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"


def rev(main: int) -> bytes:
    """The revision key of main revision ``main``, sub 0."""
    return struct.pack(">Q", main) + b"_" + struct.pack(">Q", 0)


def key_records():
    """(revision key, KeyValue) of every kind the masking and the decoding
    tell apart, values long enough to be cut by pieces."""
    text = ("text value é€😀 \t\n\r with \\ and \" " * 30).encode()
    binary = bytes(range(256)) * 4
    vals = [
        K.key_value(b"/registry/configmaps/ns/text", text),
        K.key_value(b"/registry/configmaps/ns/binary", binary),
        K.key_value(b"/registry/configmaps/ns/cm", K.configmap("cm", "ns", {"k": text})),
        K.key_value(b"/registry/secrets/ns/s1",
                    K.secret("s1", "ns", {"token": SECRET_A, "ca.crt": SECRET_B})),
        K.key_value(b"/registry/secrets/ns/s2", K.secret(
            "s2", "ns", {"a": SECRET_A}, annotations={
                "kubectl.kubernetes.io/last-applied-configuration": SECRET_B.decode()})),
        K.key_value(b"/registry/secrets/ns/js", K.json_object(
            "v1", "Secret", "js", "ns", data={"x": SECRET_A.decode()})),
        K.key_value(b"/registry/secrets/ns/broken", b"k8s\x00" + SECRET_A),
        K.key_value(b"/registry/secrets/ns/enc", K.encrypted(ciphertext=SECRET_A)),
        K.key_value(b"/registry/pods/ns/p", K.pod("p", "ns", annotations={"a": text.decode()})),
        K.key_value(b"/bootstrap/abc", SECRET_A + b"\x00" + SECRET_B),
        K.key_value(b"/registry/oauthaccesstokens/tok", K.json_object(
            "oauth.openshift.io/v1", "OAuthAccessToken", SECRET_A.decode()[:60])),
        b"\x0a\x05not a kv, Secret: " + b"public " * 100,
    ]
    return [(rev(i + 2), v) for i, v in enumerate(vals)]


USERS = [
    (b"root", user(b"root", BCRYPT, (b"root",))),
    (b"bob", user(b"bob", OTHER_HASH, (b"r1", b"r2")) + K.ld(5, SECRET_A)),
    (b"eve", user(b"eve", b"", (b"x" * 700,), no_password=True)),
    (b"zed", b"\xff\xff garbage " + BCRYPT + SECRET_A),
]


def write_etcd(path, key_recs=None, users=None, auth=None, extra=None, page_size=4096):
    """An etcd-shaped bbolt file (etcd's unsynced freelist)."""
    with open(path, "wb") as f:
        w = BoltWriter(f, page_size)
        buckets = {
            b"auth": auth if auth is not None else [(b"authEnabled", b"\x00"),
                                                     (b"authRevision", b"\x00" * 8)],
            b"authUsers": users if users is not None else USERS,
            b"key": key_recs if key_recs is not None else key_records(),
            b"meta": [(b"consistent_index", struct.pack(">Q", 7))],
        }
        buckets.update(extra or {})
        for name in sorted(buckets):
            w.begin_bucket(name)
            for k, v in sorted(buckets[name]):
                w.put(k, v)
            w.end_bucket()
        w.close()


def free_bucket(path, name: bytes, other: bytes) -> None:
    """Point bucket ``name``'s header at bucket ``other``'s root: ``name``'s
    own pages are no longer reached (free, with etcd's unsynced freelist)."""
    with DB(path) as db:
        page, idx = damage.bucket_entry(db, (name,))
        opage, oidx = damage.bucket_entry(db, (other,))
    ps = damage.page_size_of(path)
    el = damage.read_leaf_element(path, opage, oidx, ps)
    off = damage._element_offset(opage, oidx, ps) + el.pos + el.ksize
    other_root = damage._read(path, off, 8)
    el = damage.read_leaf_element(path, page, idx, ps)
    damage._write(path, damage._element_offset(page, idx, ps) + el.pos + el.ksize, other_root)


#: the data of secret_kv's Secrets
SECRET_DATA = {"password": b"hunter2-very-secret-password-value-0123456789"}


def key_bucket_file(path, values, page_size=4096):
    """Bucket ``key`` (etcd's name) of ``values`` under 17-byte revision keys."""
    with open(path, "wb") as f:
        w = BoltWriter(f, page_size)
        w.begin_bucket(b"key")
        for i, v in enumerate(values):
            w.put(i.to_bytes(8, "big") + b"_" + bytes(8), v)
        w.end_bucket()
        w.close()
    return path


def secret_kv(name: str, pad: int = 0) -> bytes:
    """A KeyValue holding a Kubernetes Secret of SECRET_DATA (its annotation
    padded by ``pad`` bytes)."""
    value = K.secret(name, "default", SECRET_DATA, annotations={"pad": "x" * pad})
    return K.key_value(f"/registry/secrets/default/{name}".encode(), value)
