"""Make an etcd-shaped bbolt file full of true Kubernetes objects, to time
and profile ``boltfix dump`` on Kubernetes data.

    PYTHONPATH=. python benchmarks/make_k8s_db.py OUT.db [--size-mb 100]

The values are ``tests/support/k8sbytes.py``'s encodings (protobuf Pods with labels,
annotations and owners, Deployments, ConfigMaps, Secrets of each kind, JSON
custom resources and Services, a few encrypted values), each in an
``mvccpb.KeyValue`` under etcd's 17-byte revision keys, with etcd's ``meta``
bucket; written by boltfix's own streaming writer (no etcd needed: the
shape, not the history, is what is timed).  Deterministic for a size.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from boltfix.writer import BoltWriter  # noqa: E402
from support import k8sbytes as K  # noqa: E402


def value_for(i: int, rnd: random.Random) -> tuple:
    """(user key, Kubernetes value) of the i-th object."""
    ns = f"ns-{i % 40}"
    owners = [{"kind": "ReplicaSet", "name": f"rs-{i % 500}", "uid": f"uid-rs-{i % 500}",
               "apiVersion": "apps/v1"}]
    labels = {"app": f"app-{i % 300}", "pod-template-hash": f"{i * 7919 % 10**9:09d}",
              "tier": "backend"}
    ann = {"kubernetes.io/psp": "restricted",
           "checksum/config": f"{rnd.getrandbits(256):064x}"}
    kind = i % 20
    if kind < 10:
        name = f"pod-{i:08d}"
        return (f"/registry/pods/{ns}/{name}",
                K.pod(name, ns, image=f"registry.example.com/app-{i % 300}:1.{i % 9}",
                      labels=labels, annotations={**ann, "note": "z" * rnd.randrange(200, 1500)},
                      owners=owners, uid=f"{rnd.getrandbits(128):032x}"))
    if kind < 12:
        name = f"cm-{i:08d}"
        return (f"/registry/configmaps/{ns}/{name}",
                K.configmap(name, ns, {"config.yaml": "x: 1\n" * rnd.randrange(10, 200)},
                            labels=labels))
    if kind < 14:
        name = f"s-{i:08d}"
        typ = ("Opaque", "kubernetes.io/service-account-token", "kubernetes.io/tls")[i % 3]
        data = {"token": rnd.randbytes(600), "ca.crt": rnd.randbytes(1100),
                "namespace": ns.encode()}
        ann2 = dict(ann)
        if i % 4 == 0:
            ann2["kubectl.kubernetes.io/last-applied-configuration"] = \
                '{"apiVersion":"v1","kind":"Secret","data":{"k":"' + "QUJD" * 100 + '"}}'
        return (f"/registry/secrets/{ns}/{name}",
                K.secret(name, ns, data, type_=typ, annotations=ann2))
    if kind < 15:
        name = f"d-{i:08d}"
        return (f"/registry/deployments/{ns}/{name}",
                K.deployment(name, ns, replicas=i % 7, labels=labels, annotations=ann))
    if kind < 17:
        name = f"w-{i:08d}"
        return (f"/registry/example.com/widgets/{ns}/{name}",
                K.json_object("example.com/v1", "Widget", name, ns,
                              spec={"size": i % 17, "blob": "y" * rnd.randrange(100, 900)}))
    if kind < 19:
        name = f"svc-{i:08d}"
        return (f"/registry/services/specs/{ns}/{name}",
                K.json_object("v1", "Service", name, ns,
                              spec={"ports": [{"port": 80 + i % 100}]}))
    return (f"/registry/secrets/{ns}/enc-{i:08d}",
            K.encrypted(ciphertext=rnd.randbytes(rnd.randrange(300, 1200))))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--size-mb", type=float, default=100)
    args = p.parse_args(argv)
    if args.out.exists():
        p.error(f"{args.out} exists")
    rnd = random.Random(13)
    target = int(args.size_mb * (1 << 20))
    with open(args.out, "wb") as f:
        w = BoltWriter(f, 4096, freelist="none", txid=10)
        w.begin_bucket(b"key")
        written, rev = 0, 1
        while written < target * 0.85:  # leaves are ~85-90% full
            rev += 1
            ukey, value = value_for(rev, rnd)
            kv = K.key_value(ukey.encode(), value, create=rev, mod=rev, version=1)
            w.put(rev.to_bytes(8, "big") + b"_" + bytes(8), kv)
            written += len(kv) + 17 + 16
        w.end_bucket()
        w.begin_bucket(b"meta")
        w.put(b"consistent_index", rev.to_bytes(8, "big"))
        w.put(b"term", (2).to_bytes(8, "big"))
        w.end_bucket()
        w.close()
    print(f"{args.out}: {rev - 1:,} objects, {args.out.stat().st_size / (1 << 20):.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
