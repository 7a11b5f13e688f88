"""Huge values that dump and get must mask or decode (issue 14), in bounded
memory: 200 MB values (a Secret, an etcd key record, authUsers) dumped and
read with get in a child process, its peak (VmHWM) read; secrets stay masked.

Files are written by boltfix's BoltWriter in etcd's layout (real etcd refuses
a request over 1.5 MB by default)."""

from __future__ import annotations

import pytest

from support import damage
from support import k8sbytes as K
from support.etcdfiles import (
    SECRET_A,
    SECRET_B,
    free_bucket,
    rev,
    write_etcd,
)
from support.measure import RSS_LIMIT_MB, rss_parts, run_child
from support.protobuf import BCRYPT, user

# ---------------------------------------------------------------- 200 MB
BIG = 200 << 20


@pytest.fixture(scope="module")
def big_dbs(tmp_path_factory):
    """200 MB values, one file each: a KeyValue of plain bytes in ``key``, a
    Kubernetes Secret in ``key``, a User with a huge unknown field in
    ``authUsers``, a huge value in ``auth``, and the Secret's KeyValue in a
    bucket whose pages are free."""
    d = tmp_path_factory.mktemp("big200")
    blob = bytes(range(256)) * (BIG // 256)
    secret = K.key_value(b"/registry/secrets/ns/big", K.secret(
        "big", "ns", {"token": (SECRET_A + blob)[:BIG], "ca.crt": SECRET_B}))
    out = {}
    for name, kw in {
        "kv": dict(key_recs=[(rev(2), K.key_value(b"/registry/configmaps/ns/x", blob))]),
        "secret": dict(key_recs=[(rev(2), secret)]),
        "user": dict(users=[(b"bob", user(b"bob", BCRYPT, (b"r",)) + K.ld(5, blob))]),
        "auth": dict(auth=[(b"authEnabled", blob)]),
        "free": dict(extra={b"zkey": [(rev(2), secret)],
                            b"pad": [(b"h%03d" % i, b"pad " * 30) for i in range(60)]}),
    }.items():
        path = d / f"{name}.db"
        write_etcd(path, **kw)
        out[name] = path
    free_bucket(out["free"], b"zkey", b"pad")
    return out


def _bounded(args, limit=150):
    code, err, rss, _ = rss_parts(*args, timeout=600)
    assert code == 0, err[-800:]
    assert b"Traceback" not in err and b"internal error" not in err, err[-800:]
    assert rss < min(limit, RSS_LIMIT_MB), f"peak RSS {rss} MB: {args}"
    return rss


CASES = [
    ("kv", ["--bucket", "key"]),
    ("secret", ["--bucket", "key"]),
    ("user", ["--bucket", "authUsers"]),
    ("auth", ["--bucket", "auth"]),
    ("free", ["--include", "free"]),
]


@pytest.mark.parametrize("name, args", CASES, ids=[c[0] for c in CASES])
def test_dump_of_200_mb_masked_or_decoded_is_bounded(big_dbs, mode, name, args):
    """These lines were built whole (the value, its masked copy, its etcd
    decoding, their encodings): now each huge part is written in pieces."""
    _bounded(["dump", *args, big_dbs[name]])


def _scan_output(args, needles):
    """(exit code, stderr, output size, {needle: found}) of ``boltfix ARGS``,
    its output scanned in chunks (not held: it is near 1 GB)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "boltfix", *map(str, args)],
                            cwd=damage.REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    found = dict.fromkeys(needles, False)
    keep = max(map(len, needles)) - 1
    carry = b""
    size = 0
    while True:
        chunk = proc.stdout.read(1 << 20)
        if not chunk:
            break
        size += len(chunk)
        data = carry + chunk
        for n in needles:
            found[n] = found[n] or n in data
        carry = data[-keep:]
    err = proc.stderr.read()
    return proc.wait(), err, size, found


@pytest.mark.parametrize("name, args", [CASES[1], CASES[4]], ids=["secret", "free"])
def test_200_mb_secret_stays_masked(big_dbs, name, args):
    """The Secret's data never reaches the output: neither its first bytes
    nor their hex (the KeyValue is binary: hex) are there; the masked data
    is, as '*' (hex 2a), in the value and in the etcd decoding."""
    secret_hex = SECRET_A[:40].hex().encode()
    stars = b"2a" * 4096
    code, err, size, found = _scan_output(
        ["dump", *args, big_dbs[name]],
        [secret_hex, SECRET_A[:40], stars, b'"value_redacted":true', b'"etcd":{'])
    assert code == 0, err[-500:]
    assert not found[secret_hex] and not found[SECRET_A[:40]]
    assert found[stars] and found[b'"value_redacted":true'] and found[b'"etcd":{']
    assert size > 4 * BIG  # the value's hex and the decoding's


@pytest.mark.parametrize("args", [["--encoding", "utf8"], []], ids=["utf8", "auto"])
def test_get_of_200_mb_is_bounded_and_fast(big_dbs, mode, args):
    """get --encoding utf8 escaped a character at a time (38 s): now a
    regex over runs, in pieces."""
    code, out, err, rss, secs = run_child("get", *args, big_dbs["kv"], "key",
                                        "0x" + rev(2).hex(), lines_only=True, timeout=600)
    assert code == 0, err[-500:]
    assert rss < 150, rss
    assert out[1] > BIG * 2
    assert secs < 30, secs


def test_get_of_200_mb_secret_is_masked(big_dbs, mode):
    code, err, rss, _ = rss_parts("get", big_dbs["secret"], "key", "0x" + rev(2).hex())
    assert code == 0 and b"Kubernetes Secret data redacted" in err, err[-500:]
    assert rss < 150, rss
