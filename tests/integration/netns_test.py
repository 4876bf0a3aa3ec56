#!/usr/bin/env python3
"""A cluster over emulated links (root: network namespaces): a datacenter head + coordinator and
two edge expert nodes, one behind `wifi`, one behind `lte`, launched by deploy/netns.sh.
  - every measured link RTT is within 20 % of its profile's, and the shaped rates hold;
  - generated tokens and logits are bit-identical to the single-process run, and the head's
    dispatch round trip shows the LTE link's delay (the shaping applies to the cluster's traffic);
  - a rogue on a host of its own (`netns.sh guest`) probes every node's control and data port
    (junk, a huge announcement, 300 held connections each): an expert node keeps at most 64 of
    them on its data port, and the cluster still answers bit-identically while they are held;
  - kill -9 of the wifi node mid-request: the request still completes bit-identical;
  - `up` refuses to start over the running cluster; `down` leaves no namespace, delayer or node;
  - an `up` that fails (a node that cannot start) tears everything down on its own.
usage: netns_test.py XMESH REPO [zmq|ucx]
"""
import json
import os
import random
import re
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_harness import accepted_on, fail, listening_ports, netns_prefix, root_test_model  # noqa: E402


def main():
    xmesh, repo = sys.argv[1], sys.argv[2]
    transport = sys.argv[3] if len(sys.argv) > 3 else "zmq"
    setup = root_test_model(xmesh, "netns", 3)
    if setup is None:
        return
    tmp, model = setup
    net = f"10.{random.Random(os.getpid()).randrange(200, 250)}.0"
    path = f"{tmp}/cluster.yaml"
    with open(path, "w") as f:
        f.write(f"""model: {model}
transport: {transport}
nodes:
  - {{name: head, host: {net}.1, control_port: 7100, data_port: 7101, roles: [coordinator, head], link: datacenter}}
  - {{name: edge-wifi, host: {net}.2, control_port: 7100, data_port: 7101, roles: [experts], link: wifi}}
  - {{name: edge-lte, host: {net}.3, control_port: 7100, data_port: 7101, roles: [experts], link: lte}}
""")
    env = dict(os.environ, XMESH_BIN=xmesh, XMESH_RUN_DIR=f"{tmp}/run")
    netns = f"{repo}/deploy/netns.sh"

    def run(*args, timeout=120):
        return subprocess.run([netns, *args], env=env, capture_output=True, text=True, timeout=timeout)

    # netns.sh names this cluster's namespaces after a hash of the file's path.
    prefix = netns_prefix(path)

    def leftovers():
        """Processes naming this cluster file, and this cluster's namespaces."""
        ours = subprocess.run(["pgrep", "-f", path], capture_output=True, text=True).stdout.split()
        named = [l.split()[0] for l in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                       text=True).stdout.splitlines()]
        return ours, [n for n in named if n.startswith(prefix)]

    before = set(leftovers()[1])
    oracle_out = f"{tmp}/oracle.npy"
    r = subprocess.run([xmesh, "generate", "--model", model, "--tokens", "5,99,311,42", "--max-new-tokens", "8",
                        "--ignore-eos", "--json", "--logits-out", oracle_out], check=True, capture_output=True,
                       text=True)
    oracle = json.loads(r.stdout)["tokens"]
    start = time.time()
    r = run("up", path)
    print(f"up: exit {r.returncode} after {time.time() - start:.1f} s: {r.stdout.strip()} {r.stderr.strip()}")
    if r.returncode != 0:
        fail("netns.sh up")
    try:
        again = run("up", path)
        if again.returncode == 0 or "already up" not in again.stderr:
            fail(f"up over a running cluster must be refused: {again.stderr}")
        status = run("status", path)
        print(status.stdout.strip())
        links = re.findall(r"\((\w+)\): ([\d.]+) \| ([\d.]+) ms, ([\d.]+) %, ([\d.]+) Mbit/s", status.stdout)
        if len(links) != 2:
            fail("status should measure both edge links")
        for name, want, got, loss, rate in links:
            if abs(float(got) - float(want)) > 0.2 * float(want):
                fail(f"{name}: measured RTT {got} ms, profile {want} ms (more than 20 % apart)")
        rates = {name: float(rate) for name, _, _, _, rate in links}
        if not (rates["lte"] < 35 and rates["wifi"] > 2 * rates["lte"]):
            fail(f"shaped rates do not hold: {rates}")
        out = f"{tmp}/cluster.npy"
        r = run("exec", path, "--", xmesh, "generate", "--model", model, "--cluster", path, "--tokens",
                "5,99,311,42", "--max-new-tokens", "8", "--ignore-eos", "--json", "--logits-out", out)
        if r.returncode != 0:
            fail(f"generate in the head's namespace: {r.stderr}")
        j = json.loads(r.stdout)
        same = j["tokens"] == oracle and np.load(out).tobytes() == np.load(oracle_out).tobytes()
        print(f"generate over wifi + lte: tokens {j['tokens']} {'bit-identical' if same else 'DIFFERENT'}, "
              f"dispatch round trip {1000 * j['dispatch_round_trip_s']:.1f} ms")
        if not same:
            fail("the output over emulated links must equal the single-process run")
        if j["dispatch_round_trip_s"] < 0.045:  # each layer waits for the lte node: RTT 50 ms
            fail("the dispatch round trip should include the lte link's 50 ms")
        # A rogue on a host of its own on the cluster's network (deploy/netns.sh guest) probes
        # every node's control and data port: junk, 17 bytes of 0xff, a header announcing 256 MiB,
        # then 300 held connections each. Each expert node keeps at most 64 of them on its data
        # port (data_connections.per_host: the rest are closed at once), and a request made while
        # they are held is bit-identical.
        rogue_ip = f"{net}.66"
        pids = {name: int(open(f"{tmp}/run/{name}.pid").read()) for name in ("head", "edge-wifi", "edge-lte")}
        # Every port each node listens on: control, and data (7101 for ZeroMQ; for UCX the
        # worker's own port).
        ports = {name: sorted(listening_ports(pid)) for name, pid in pids.items()}
        targets = [(f"{net}.{i + 1}", ports[name]) for i, name in enumerate(pids)]
        rogue = f"""
import socket, struct, sys, time
held = []
for host, ports in {targets!r}:
    for port in ports:
        for junk in (b"\\xff" * 17, bytes(range(256)) * 4, struct.pack(">BBBBIQQQ", 1, 0, 0, 0, 256 << 20, 0, 0, 0)):
            try:
                s = socket.create_connection((host, port), timeout=3); s.sendall(junk); held.append(s)
            except OSError:
                pass
        for _ in range(300):
            try:
                held.append(socket.create_connection((host, port), timeout=3))
            except OSError:
                break
print(len(held), "connections opened", flush=True)
sys.stdin.read()
"""
        probe = subprocess.Popen([netns, "guest", path, rogue_ip, "--", "python3", "-c", rogue], env=env,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            opened = probe.stdout.readline().strip()
            time.sleep(1)
            for name in ("edge-wifi", "edge-lte"):
                data_ports = set(ports[name]) - {7100}
                kept = accepted_on(pids[name], data_ports, rogue_ip)
                print(f"rogue at {rogue_ip}: {opened}; {name} keeps {kept} of them on its data port "
                      f"{sorted(data_ports)}")
                if kept == 0 or kept > 64:
                    fail(f"{name} must keep at most 64 (data_connections.per_host) of the rogue's, not {kept}")
            r = run("exec", path, "--", xmesh, "generate", "--model", model, "--cluster", path, "--tokens",
                    "5,99,311,42", "--max-new-tokens", "8", "--ignore-eos", "--json", "--logits-out", out)
        finally:
            probe.communicate(timeout=60)
        same = r.returncode == 0 and json.loads(r.stdout)["tokens"] == oracle and \
            np.load(out).tobytes() == np.load(oracle_out).tobytes()
        print(f"while the rogue holds its connections: {'bit-identical' if same else 'FAILED ' + r.stderr.strip()}")
        if not same:
            fail("while a rogue holds connections the cluster must still answer bit-identically")
        # Failover across the emulated links: kill -9 of the wifi node mid-request; the request
        # completes bit-identical (its experts are computed on the head until re-placed on lte).
        gen = subprocess.Popen([netns, "exec", path, "--", xmesh, "generate", "--model", model, "--cluster", path,
                                "--tokens", "5,99,311,42", "--max-new-tokens", "8", "--ignore-eos", "--json",
                                "--logits-out", out], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
        time.sleep(0.3)
        os.kill(int(open(f"{tmp}/run/edge-wifi.pid").read()), 9)
        stdout, stderr = gen.communicate(timeout=120)
        if gen.returncode != 0:
            fail(f"a request during the kill failed: {stderr}")
        same = json.loads(stdout)["tokens"] == oracle and np.load(out).tobytes() == np.load(oracle_out).tobytes()
        print(f"kill -9 of edge-wifi mid-request over the emulated links: {'bit-identical' if same else 'DIFFERENT'}")
        if not same:
            fail("the request during the kill must equal the single-process run")
    finally:
        r = run("down", path)
        print(r.stdout.strip())
    left, named = leftovers()
    if left or set(named) - before:
        fail(f"down left {left} {set(named) - before}")

    # A cluster that cannot start (the edge budgets cannot hold the experts: the coordinator's
    # node exits): up fails after its timeout and leaves nothing behind.
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("roles: [experts],", "roles: [experts], memory_budget: 1KiB,"))
    r = subprocess.run([netns, "up", path], env=dict(env, XMESH_UP_TIMEOUT_S="8"), capture_output=True, text=True,
                       timeout=120)
    print(f"up with a broken node: exit {r.returncode}: {r.stderr.strip().splitlines()[-1] if r.stderr else ''}")
    left, named = leftovers()
    if r.returncode == 0 or left or set(named) - before:
        fail(f"a failed up must tear down: {left} {set(named) - before}")
    print("PASS")


if __name__ == "__main__":
    main()
