#!/usr/bin/env python3
"""Strangers on loopback probe every port a node opens (found from the node's own sockets: the
gate on the control port, the data port, metrics; for UCX the worker's TCP port, since nodes
publish worker addresses over the control plane instead of running a sockaddr listener): random
bytes, zeros, 17 bytes of 0xff (which aborted UCX's connection manager before), patterns, a
control-plane header announcing a 256 MiB message, half-open connections, 10,000 mutated
control-plane messages and 500 held connections (the data ports keep at most 64 from one host:
data_connections.per_host). Both nodes stay up, their RSS grows by less than
64 MiB, and a request made while the connections are held is bit-identical to the single-process
run. No node listens anywhere but its configured ports (CAF has no socket of its own). Then each
node, at 128 descriptors and at 8 above what it holds, with 200 connections held on each of its
ports: it backs off instead of spinning (under 25 % of a core) when it runs out (the control gate
pauses accepting; so does the ZeroMQ listener, which libzmq alone would retry in a busy loop) and
still answers, bit-identical. The gates count what they refused (/metrics). With the default security,
an operator and a node holding another cluster's keys can neither read the placement nor join.
MODE zmq and ucx run the default (authenticated: TLS on the control plane, sealed frames on the
data plane);
zmq-none runs `security: none`, where the gate's caps and deadlines still hold.
usage: probe_test.py XMESH REPO MODE
"""
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_harness import accepted_on, free_ports, gone, listening_ports  # noqa: E402


def fail(why):
    sys.exit(f"FAIL: {why}")


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0


def cpu_seconds(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def header(payload_len, op=1, data=0):
    """A control-plane (CAF 0.17 BASP) header: op, padding, flags, payload length (big-endian) ..."""
    return struct.pack(">BBBBIQQQ", op, 0, 0, 0, payload_len, data, 0, 0)


def send_and_close(port, data):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        s.sendall(data)
        time.sleep(0.01)
        s.close()
    except OSError:
        pass


def hold(ports, n):
    held = []
    for port in ports:
        for _ in range(n):
            try:
                held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            except OSError:
                break
    return held


def probe(port, rng):
    """Junk, a huge announcement, half-open connections and 10,000 mutated messages on `port`;
    returns the half-open connections (closed by the caller)."""
    payloads = [b"\xff" * 17, b"\x00" * 4096, bytes(range(256)) * 8, header(256 << 20),
                header(256 << 20) + b"\x00" * 1000] + \
               [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000))) for _ in range(20)]
    for payload in payloads:
        send_and_close(port, payload)
    half = []
    for part in (header(64)[:20], header(64) + b"\x01" * 10, b""):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.sendall(part)
            half.append(s)
        except OSError:
            pass
    # 10,000 mutated messages, 100 per connection: a well-formed header with random fields and a
    # payload of random bytes, one byte of it flipped now and then.
    template = bytearray(header(48) + bytes(rng.randrange(256) for _ in range(48)))
    for _ in range(100):
        stream = bytearray()
        for _ in range(100):
            m = bytearray(template)
            m[0] = rng.randrange(256)
            m[8:32] = bytes(rng.randrange(256) for _ in range(24))
            m[32 + rng.randrange(48)] ^= 1 << rng.randrange(8)
            stream += m
        send_and_close(port, bytes(stream))
    return half


def foreign_certificate(xmesh, model, path, p, transport, env, tmp):
    """Another cluster's keys: its operator cannot read the placement and its node cannot join;
    both errors and the head's log name the peer and the reason."""
    other = f"{tmp}/other.yaml"
    with open(other, "w") as f:
        f.write(open(path).read().replace("nodes:", "security: {keys: other.keys}\nnodes:"))
    subprocess.run([xmesh, "cluster", "keygen", "--cluster", other], check=True, capture_output=True)
    quick = dict(env, XMESH_CONNECT_TIMEOUT_MS="2000")
    r = subprocess.run([xmesh, "cluster", "placement", "--cluster", other], env=quick, capture_output=True,
                       text=True, timeout=60)
    print(f"placement with another cluster's keys: exit {r.returncode}: {r.stderr.strip()}")
    if r.returncode == 0 or f"cannot reach coordinator 'head' at 127.0.0.1:{p[0]}" not in r.stderr or \
            "not one of this cluster's" not in r.stderr:
        fail("an operator with another cluster's keys must not read the placement, and be told why")
    subprocess.run([xmesh, "cluster", "keygen", "--cluster", other, "--node", "intruder"], check=True,
                   capture_output=True)
    r = subprocess.run([xmesh, "node", "--join", f"127.0.0.1:{p[0]}", "--name", "intruder", "--model", model,
                        "--data-port", str(free_ports(1)[0]), "--transport", transport,
                        "--security", f"{tmp}/other.keys"], env=quick, capture_output=True, text=True, timeout=60)
    print(f"join with another cluster's keys: exit {r.returncode}: {r.stderr.strip()}")
    if r.returncode == 0 or "cannot reach coordinator" not in r.stderr or "not one of this cluster's" not in r.stderr:
        fail("a node with another cluster's keys must not register, and be told why")
    log = open(f"{tmp}/run/head.log").read()
    if "xmesh node head: refused a control connection from 127.0.0.1:" not in log:
        fail("the head's log should name the refused peer")
    # A member posing as another node: its own key pair filed under the other's name gets it
    # through TLS (any member's certificate does), but its registration names the wrong node.
    keys = subprocess.run([xmesh, "cluster", "keygen", "--cluster", path, "--where"], capture_output=True,
                          text=True, check=True).stdout.strip()
    subprocess.run([xmesh, "cluster", "keygen", "--cluster", path, "--node", "mallory"], check=True,
                   capture_output=True)
    posing = f"{tmp}/posing.keys"
    shutil.copytree(keys, posing)
    for ext in ("pem", "key"):
        shutil.copy(f"{keys}/tls-mallory.{ext}", f"{posing}/tls-experts.{ext}")
    r = subprocess.run([xmesh, "node", "--join", f"127.0.0.1:{p[0]}", "--name", "experts", "--model", model,
                        "--data-port", str(free_ports(1)[0]), "--transport", transport, "--security", posing],
                       env=quick, capture_output=True, text=True, timeout=60)
    print(f"a member posing as experts: exit {r.returncode}: {r.stderr.strip()}")
    if r.returncode == 0 or "node 'experts' registered with the certificate of 'mallory'" not in r.stderr:
        fail("a member must not register under another node's name, and be told why")


def main():
    xmesh, repo, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    transport, _, security = mode.partition("-")
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
{"security: none" if security == "none" else ""}
nodes:
  - {{name: head, control_port: {p[0]}, data_port: {p[1]}, roles: [coordinator, head]}}
  - {{name: experts, control_port: {p[2]}, data_port: {p[3]}, metrics_port: {p[4]}, roles: [experts]}}
""")
    env = dict(os.environ, XMESH_BIN=xmesh, XMESH_RUN_DIR=f"{tmp}/run", UCX_NET_DEVICES="lo")
    local = f"{repo}/deploy/local.sh"
    subprocess.run([local, "up", path], env=env, check=True, capture_output=True, timeout=120)
    try:
        gen = [xmesh, "generate", "--model", model, "--tokens", "3,1,4,1,5", "--max-new-tokens", "6", "--ignore-eos",
               "--json"]
        oracle = json.loads(subprocess.run(gen, check=True, capture_output=True, text=True).stdout)["tokens"]

        def request(what):
            start = time.time()
            r = subprocess.run(gen + ["--cluster", path], env=env, capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                fail(f"{what}: the request failed: {r.stderr.strip()}")
            if json.loads(r.stdout)["tokens"] != oracle:
                fail(f"{what}: the request must equal the single-process run")
            return time.time() - start

        request("before the probes")
        pids = {n: int(open(f"{tmp}/run/{n}.pid").read()) for n in ("head", "experts")}
        control = {"head": p[0], "experts": p[2]}
        configured = {"head": {p[0], p[1]}, "experts": {p[2], p[3], p[4]}}
        ports = {n: listening_ports(pid) for n, pid in pids.items()}
        for n in pids:
            print(f"{mode}: {n} listens on {sorted(ports[n])} (configured {sorted(configured[n])})")
            if transport == "zmq" and not (ports[n] <= configured[n] and control[n] in ports[n]):
                fail(f"{n} must listen on its control port and otherwise only on configured ports (no socket of CAF's)")
        if transport == "ucx" and (p[3] in ports["experts"] or p[2] not in ports["experts"]):
            fail("a ucx node listens on its control port, not on its configured data port (no raw UCX listener)")
        before = {n: rss_mib(pid) for n, pid in pids.items()}
        rng = random.Random(7)
        half = []
        for n in pids:
            for port in sorted(ports[n]):
                half += probe(port, rng)
        held = hold(sorted(ports["head"] | ports["experts"]), 500)
        # The data-plane ports (ZeroMQ's router, UCX's worker) accept through the node's caps:
        # loopback is one host, which holds at most `data_connections.per_host` (64) of them. (A
        # ZeroMQ head listens on no data port.) A node works through the 500 connections' backlog
        # one accept at a time, closing the refused ones at once; a count taken meanwhile can
        # catch one being refused, and its SCHED_BATCH I/O thread may need more than a second
        # on a machine busy with other tests. So the count has up to 10 s to settle.
        for n, pid in pids.items():
            data_ports = ports[n] - {control[n], p[4]}
            deadline = time.time() + 10
            while (kept := accepted_on(pid, data_ports)) > 64 and time.time() < deadline:
                time.sleep(0.2)
            print(f"{n}: {kept} connections kept on its data ports {sorted(data_ports)}")
            if kept > 64 or (n == "experts" and not data_ports):
                fail(f"{n} must keep at most 64 connections from one host on its data ports, not {kept}")
        took = request("while 500 connections are held on every port")
        for s in half + held:
            s.close()
        print(f"every port: 25 junk payloads, a 256 MiB announcement, 3 half-open connections, 10,000 mutated "
              f"messages; {len(held)} connections opened (gates close those past their caps at once): request "
              f"bit-identical in {took:.1f} s")
        time.sleep(1)
        for n, pid in pids.items():
            if gone(pid):
                fail(f"{n} died; its log ends with: {open(f'{tmp}/run/{n}.log').read()[-800:]}")
            grew = rss_mib(pid) - before[n]
            print(f"{n}: up, RSS +{grew:.1f} MiB")
            if grew >= 64:
                fail(f"{n}'s RSS grew by 64 MiB or more")
        request("after the probes")
        metrics = subprocess.run(["curl", "-sf", f"http://127.0.0.1:{p[4]}/metrics"], capture_output=True,
                                 text=True).stdout
        counted = {o: float(line.split()[-1]) for line in metrics.splitlines()
                   for o in ("admitted", "handshake", "oversized", "capacity")
                   if line.startswith(f'xmesh_control_connections_total{{node="experts",outcome="{o}"}}')}
        print(f"experts' gate counted {counted}")
        capped = sum(float(line.split()[-1]) for line in metrics.splitlines()
                     if line.startswith('xmesh_data_connections_total{node="experts",outcome="host_cap"}'))
        print(f"experts' data ports closed {capped:.0f} connections over the per-host cap")
        if capped < 400:
            fail("the data port's refusals over the per-host cap should be counted (400 or more)")
        refused_by = "oversized" if security == "none" else "handshake"  # plain: the cap; TLS: the handshake
        if counted.get(refused_by, 0) < 1 or counted.get("capacity", 0) < 1:
            fail(f"the gate's refusals should be counted ({refused_by} and capacity)")
        if security != "none":
            foreign_certificate(xmesh, model, path, p, transport, env, tmp)

        # Each node at 128 descriptors, then at 8 more than it holds (it runs out): 200
        # connections held on each of its ports. It backs off instead of spinning; it answers
        # while they are held (a head out of descriptors only once they let go: a client needs a
        # new control connection), and after.
        for n, pid in pids.items():
            for limit in (128, len(os.listdir(f"/proc/{pid}/fd")) + 8):
                subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={limit}:{limit}"], check=True)
                log_from = os.path.getsize(f"{tmp}/run/{n}.log")
                held = hold(sorted(ports[n]), 200)
                time.sleep(1)
                cpu0, t0 = cpu_seconds(pid), time.time()
                time.sleep(3)
                busy = (cpu_seconds(pid) - cpu0) / (time.time() - t0)
                with open(f"{tmp}/run/{n}.log") as f:
                    f.seek(log_from)
                    exhausted = "out of descriptors" in f.read()
                during = None if (n == "head" and exhausted) else request(f"{n} at {limit} descriptors")
                for s in held:
                    s.close()
                after = request(f"after {n} was at {limit} descriptors")
                print(f"{n} at {limit} descriptors with {len(held)} connections held: {busy:.0%} of a core"
                      f"{', ran out' if exhausted else ''}; request bit-identical "
                      f"{f'in {during:.1f} s while held, ' if during else ''}in {after:.1f} s after")
                if busy > 0.25:
                    fail(f"{n} out of descriptors must back off, not spin")
                if limit != 128 and not exhausted and n == "head":
                    fail(f"{n} should have run out of descriptors at {limit} (and said so)")
        st = json.loads(subprocess.run([xmesh, "cluster", "status", "--cluster", path, "--json"], env=env,
                                       capture_output=True, text=True).stdout)
        if st["dead"]:
            fail(f"no node may have been declared dead: {st}")
    finally:
        subprocess.run([local, "down", path], env=env, capture_output=True, timeout=60)
    print("PASS")


if __name__ == "__main__":
    main()
