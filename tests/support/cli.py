"""boltfix's command line, run in this process through click's test runner."""

from __future__ import annotations

import json

from click.testing import CliRunner

from boltfix.cli import main


def invoke(*args, code=None, input=None, env=None, catch_exceptions: bool = True):
    """``boltfix ARGS`` (each turned into a string): click's Result.

    A Python exception other than the command's own exit fails the test
    (boltfix never ends in a traceback); ``code``: the exit codes allowed
    (None: any)."""
    r = CliRunner().invoke(main, [str(a) for a in args], input=input, env=env,
                           catch_exceptions=catch_exceptions)
    assert r.exception is None or isinstance(r.exception, SystemExit), \
        (args, r.output[-2000:], r.exception)
    if code is not None:
        assert r.exit_code in code, (args, r.exit_code, r.output[-2000:])
    return r


def inspect_json(path):
    """``inspect --json`` of ``path``, parsed (exit 0 asserted)."""
    r = invoke("inspect", path, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def total_keys(node) -> int:
    """Keys of an ``inspect`` bucket node and all below it."""
    return node["keys"] + sum(total_keys(c) for c in node["buckets"])


def total_buckets(node) -> int:
    """Buckets of an ``inspect`` bucket node, itself included."""
    return 1 + sum(total_buckets(c) for c in node["buckets"])


def run_ok(*args, ok=(0,)):
    """``boltfix ARGS`` exiting with one of ``ok``, no traceback, no internal error."""
    r = invoke(*args, code=ok, catch_exceptions=False)
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    return r


def jsonl(r):
    """The JSON lines of a result's stdout."""
    return [json.loads(line) for line in r.stdout_bytes.decode().splitlines()]


def hexdump_records(path, *extra, ok=(0,)):
    """dump --encoding hex, parsed like oracle.parse_dump, plus page/state."""
    r = run_ok("dump", path, "--encoding", "hex", "--format", "jsonl", *extra, ok=ok)
    out = []
    for d in jsonl(r):
        e = {"path": None if d["path"] is None else [bytes.fromhex(p) for p in d["path"]],
             "key": bytes.fromhex(d["key"]),
             "value": None if d["value"] is None else bytes.fromhex(d["value"]),
             "type": d["type"]}
        if d["type"] == "bucket":
            e["sequence"] = d["sequence"]
        out.append((e, d))
    return out, r


def live(records):
    """The records of :func:`hexdump_records`, as oracle.parse_dump gives them."""
    return [e for e, _ in records]


def page_bytes(path, *extra, strays: int = 10) -> bytes:
    """What ``page`` shows of every page of ``path`` below its high-water
    mark, as bytes: each element's key and value of ``page --json`` and the
    bytes of ``page --hex`` (a secret any of them shows is in it).  The
    hexdumps are of every page that is a page of its own type and of the
    first ``strays`` others (an overflow page shown alone, a freed run's
    garbage: each may dump megabytes)."""
    hwm = inspect_json(path)["file"]["hwm"]
    ids = [str(i) for i in range(hwm)]
    out = bytearray()
    hex_ids = []
    for view in json.loads(run_ok("page", path, "--json", *extra, *ids).stdout):
        if view["type"] in ("leaf", "branch", "meta", "freelist") or strays > 0:
            strays -= view["type"] not in ("leaf", "branch", "meta", "freelist")
            hex_ids.append(str(view["id"]))
        for el in view.get("elements", []):
            for field in ("key", "value"):
                v = el.get(field)
                if isinstance(v, str) and v.startswith("0x"):
                    out += bytes.fromhex(v[2:])
                elif isinstance(v, str):
                    out += v.encode("utf-8", "surrogateescape")
    for line in run_ok("page", path, "--hex", *extra, *hex_ids).stdout.splitlines():
        head = line.split("|", 1)[0].split()
        if len(head) > 1 and len(head[0]) == 8:
            out += bytes.fromhex("".join(head[1:]))
    return bytes(out)
