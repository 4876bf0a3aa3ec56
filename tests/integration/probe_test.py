#!/usr/bin/env python3
"""A stranger on loopback probes every data-plane and metrics port of an expert node (found from
the node's own sockets: for UCX that is the worker's TCP port, since nodes publish worker
addresses over the control plane instead of running a sockaddr listener): random bytes, zeros,
17 bytes of 0xff (which aborted UCX's connection manager before), 2 KiB of patterns, and 50
half-open connections held open. The node stays up, its RSS grows by less than 64 MiB, and the
next request is bit-identical to the single-process run. (The CAF control port is not probed
here: authenticating it is the hostile-networks issue's next step.)
With TRANSPORT zmq-keys the cluster has `security: {keys: ...}` (CURVE on the data plane, keys
from `xmesh cluster keygen`): requests still work and the probes change nothing either.
usage: probe_test.py XMESH REPO TRANSPORT
"""
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_harness import free_ports, gone  # noqa: E402


def fail(why):
    sys.exit(f"FAIL: {why}")


def listening_ports(pid):
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in open(f"/proc/{pid}/net/{table}").read().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # LISTEN
                ports.add(int(f[1].split(":")[1], 16))
    return ports


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0


def main():
    xmesh, repo, transport = sys.argv[1], sys.argv[2], sys.argv[3]
    keyed = transport == "zmq-keys"
    transport = "zmq" if keyed else transport
    tmp = os.environ.get("XMESH_TEST_DIR") or tempfile.mkdtemp(prefix="xmesh-probe-")
    os.makedirs(tmp, exist_ok=True)
    model = f"{tmp}/model"
    subprocess.run([xmesh, "gen-model", "--family", "mixtral", "--preset", "tiny", "--seed", "4", "--out", model],
                   check=True, stdout=subprocess.DEVNULL)
    p = free_ports(5)
    path = f"{tmp}/cluster.yaml"
    with open(path, "w") as f:
        f.write(f"""model: {model}
transport: {transport}
{"security: {keys: keys}" if keyed else ""}
nodes:
  - {{name: head, control_port: {p[0]}, data_port: {p[1]}, roles: [coordinator, head]}}
  - {{name: experts, control_port: {p[2]}, data_port: {p[3]}, metrics_port: {p[4]}, roles: [experts]}}
""")
    env = dict(os.environ, XMESH_BIN=xmesh, XMESH_RUN_DIR=f"{tmp}/run", UCX_NET_DEVICES="lo")
    local = f"{repo}/deploy/local.sh"
    if keyed:
        subprocess.run([xmesh, "cluster", "keygen", "--cluster", path], check=True, capture_output=True)
    subprocess.run([local, "up", path], env=env, check=True, capture_output=True, timeout=120)
    try:
        gen = [xmesh, "generate", "--model", model, "--tokens", "3,1,4,1,5", "--max-new-tokens", "6", "--ignore-eos",
               "--json"]
        oracle = json.loads(subprocess.run(gen, check=True, capture_output=True, text=True).stdout)["tokens"]
        first = json.loads(subprocess.run(gen + ["--cluster", path], env=env, check=True, capture_output=True,
                                          text=True).stdout)["tokens"]
        pid = int(open(f"{tmp}/run/experts.pid").read())
        ports = listening_ports(pid) - {p[2]}  # every port but the control plane's
        print(f"{transport}{' with CURVE keys' if keyed else ''}: expert node listens on {sorted(ports)} besides its control port {p[2]}")
        if p[4] not in ports or (transport == "zmq" and p[3] not in ports):
            fail("the data and metrics ports should be among the node's listening ports")
        if transport == "ucx" and p[3] in ports:
            fail("a ucx node must not listen on its configured sockaddr (no raw UCX listener)")
        before = rss_mib(pid)
        rng = random.Random(7)
        payloads = [b"\xff" * 17, b"\x00" * 4096, bytes(range(256)) * 8] + \
                   [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000))) for _ in range(20)]
        for port in sorted(ports):
            for payload in payloads:
                try:
                    s = socket.create_connection(("127.0.0.1", port), timeout=2)
                    s.sendall(payload)
                    time.sleep(0.02)
                    s.close()
                except OSError:
                    pass
            held = []
            for _ in range(50):
                try:
                    held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
                except OSError:
                    break
            time.sleep(0.5)
            for s in held:
                s.close()
        time.sleep(1)
        if gone(pid):
            fail(f"the expert node died; its log ends with: {open(f'{tmp}/run/experts.log').read()[-800:]}")
        grew = rss_mib(pid) - before
        after = json.loads(subprocess.run(gen + ["--cluster", path], env=env, check=True, capture_output=True,
                                          text=True).stdout)["tokens"]
        print(f"after {len(payloads)} probes and 50 held connections per port: node up, RSS +{grew:.1f} MiB, "
              f"tokens {'identical' if after == oracle == first else 'DIFFERENT'}")
        if grew >= 64:
            fail("RSS grew by 64 MiB or more")
        if not after == oracle == first:
            fail("the request after the probes must equal the single-process run")
        st = json.loads(subprocess.run([xmesh, "cluster", "status", "--cluster", path, "--json"], env=env,
                                       capture_output=True, text=True).stdout)
        if st["dead"]:
            fail(f"no node may have been declared dead: {st}")
    finally:
        subprocess.run([local, "down", path], env=env, capture_output=True, timeout=60)
    print("PASS")


if __name__ == "__main__":
    main()
