"""``boltfix members`` against a real 3-member etcd 3.5 cluster.

Three members on 127.0.0.1 (free ports) write keys and are stopped; one
member's db is damaged.  ``boltfix members`` must name that member bad
and the other two good, and print the remove-and-re-add route; the
printed ``etcdctl member remove``/``member add`` commands, run against the
real cluster (the two good members restarted), and the member started on
an empty data dir with the printed ``--initial-cluster`` and
``--initial-cluster-state existing``, must bring it back: it syncs and
serves every key.  Data dirs of two clusters are refused with exit 2.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time

import pytest
from click.testing import CliRunner

from boltfix.cli import main
from support import damage
from support.etcdtools import EtcdServer, Gateway, clean_env, free_ports, require_etcd

pytestmark = pytest.mark.slow

VERSION = "3.5"
#: keys written: enough for the key bucket to take several leaf pages
N = 150


def _cluster(tmp_path):
    """Three members of a new cluster: (servers, initial cluster string)."""
    ports = free_ports(6)
    names = ["m1", "m2", "m3"]
    peers = {n: f"http://127.0.0.1:{ports[2 * i + 1]}" for i, n in enumerate(names)}
    ic = ",".join(f"{n}={u}" for n, u in peers.items())
    return [EtcdServer(tmp_path / n, VERSION, name=n, client_port=ports[2 * i],
                       peer_port=ports[2 * i + 1], initial_cluster=ic,
                       extra_args=["--initial-cluster-token", "boltfix-members"])
            for i, n in enumerate(names)], ic


def _start_all(servers):
    for s in servers:
        s.launch()
    for s in servers:
        s.wait_healthy()


def _stop_all(servers):
    for s in servers:
        s.stop()
        s.cleanup_log()


def _run(cmd: str, servers) -> subprocess.CompletedProcess:
    """A printed etcdctl command, with the real binary; asked again for up
    to 30 s while etcd says the cluster is not ready (a member add waits
    until the members have been connected for 5 s: HealthInterval)."""
    argv = shlex.split(cmd)
    assert argv[0] == "etcdctl", cmd
    argv[0] = str(servers[0].bins.etcdctl)
    deadline = time.monotonic() + 30
    while True:
        cp = subprocess.run(argv, env=clean_env(), capture_output=True, text=True, timeout=30)
        if cp.returncode == 0 or time.monotonic() > deadline:
            assert cp.returncode == 0, (cmd, cp.stderr)
            return cp
        time.sleep(1)


def test_damaged_member_is_replaced_by_the_printed_commands(tmp_path):
    require_etcd(VERSION)
    servers, _ic = _cluster(tmp_path)
    try:
        _start_all(servers)
        g = Gateway(servers[0].endpoint)
        for i in range(N):
            g.put(f"k{i:03d}", f"v{i}" * 40)
    finally:
        _stop_all(servers)
    dirs = [str(s.data_dir) for s in servers]
    damage.leaf_count_too_large(servers[1].data_dir / "member/snap/db", (b"key",))
    r = CliRunner().invoke(main, ["members", *dirs, "--json"])
    assert r.exit_code == 1, r.output
    rep = json.loads(r.stdout)
    status = {m["data_dir"]: m["status"] for m in rep["members"]}
    assert status[dirs[1]] == "bad" and {status[dirs[0]], status[dirs[2]]} <= {
        "good", "good-behind"}, status
    assert rep["route"] == "replace-bad-members" and rep["best"] != dirs[1]
    bad = next(x for x in rep["recovery"] if x["data_dir"] == dirs[1])
    assert bad["action"] == "remove-and-re-add"
    text = CliRunner().invoke(main, ["members", *dirs])
    assert text.exit_code == 1 and "member remove" in text.output
    # the route, run against the real cluster
    good = [servers[0], servers[2]]
    try:
        _start_all(good)
        cmds = [c for c in bad["commands"] if c.startswith("etcdctl")]
        assert "member remove" in cmds[0] and "member add" in cmds[1]
        _run(cmds[0], good)
        shutil.move(dirs[1], dirs[1] + ".bad")
        _run(cmds[1], good)
        etcd_cmd = shlex.split(next(c for c in bad["commands"] if c.startswith("etcd ")))
        ic = etcd_cmd[etcd_cmd.index("--initial-cluster") + 1]
        assert etcd_cmd[etcd_cmd.index("--initial-cluster-state") + 1] == "existing"
        old = servers[1]
        back = EtcdServer(old.data_dir, VERSION, name="m2", client_port=old.client_port,
                          peer_port=old.peer_port, initial_cluster=ic,
                          cluster_state="existing")
        with back:
            kvs = back.get_kvs("k", "--prefix", "--consistency=s")
            assert {kv["key"]: kv["value"] for kv in kvs} == {
                f"k{i:03d}": f"v{i}" * 40 for i in range(N)}
        # the re-added member is intact again
        r = CliRunner().invoke(main, ["members", *dirs, "--json"])
        assert r.exit_code == 0, r.output
    finally:
        _stop_all(good)


def test_two_clusters_are_refused(tmp_path):
    require_etcd(VERSION)
    for n in ("a", "b"):
        with EtcdServer(tmp_path / n, VERSION) as s:
            Gateway(s.endpoint).put("x", n)
    r = CliRunner().invoke(main, ["members", str(tmp_path / "a"), str(tmp_path / "b")])
    assert r.exit_code == 2 and "not members of one cluster" in r.output, r.output
    r = CliRunner().invoke(main, ["members", str(tmp_path / "a"), str(tmp_path / "none")])
    assert r.exit_code == 2
