#!/usr/bin/env python3
"""What the multi-process cluster tests share: free ports, cluster files, launching clusters with
deploy/local.sh, clients checked against the single-process oracle, and the cluster's status and
placement as `xmesh cluster` reports them. The single-process run is the oracle: every
distributed run must give bit-identical tokens and logits."""
import hashlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np


FAMILIES = ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe"]
PROMPTS = [[5, 99, 311, 42, 7], [1, 2, 3], [400, 12, 12, 77, 300, 8, 1], [9]]


LIVE_PROMPTS = [[5, 99, 311, 42], [1, 2, 3], [400, 12, 12, 77, 300, 8], [9], [17, 17, 4], [250, 3, 60, 61, 62],
                [33, 44], [7, 70, 500]]


_handed_out = set()  # ports free_ports returned in this process: not yet bound, so still free


def free_ports(n):
    """n ports that are free now, below the kernel's ephemeral range: a port the kernel hands out
    for bind(0) can be taken by another test's outgoing connection before our node binds it. Each
    test process draws from its own slice of the range (by pid), so a port a test frees while it
    restarts a node is not handed to a test running beside it; within the process, a port is
    handed out once (a second call could draw a port the first returned and no node bound yet)."""
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    slices = 32
    width = (low - 10000) // slices
    first = 10000 + (os.getpid() % slices) * width
    rng = random.Random(os.getpid() ^ int(time.time() * 1000))
    ports = []
    while len(ports) < n:
        p = rng.randrange(first, first + width)
        if p in ports or p in _handed_out:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", p))
            ports.append(p)
        except OSError:
            pass
    _handed_out.update(ports)
    return ports


def cluster_yaml(model, transport, placement, experts_per_node=None):
    p = free_ports(6)
    lines = [f"model: {model}", f"transport: {transport}", f"placement: {placement}"]
    if placement == "static":
        lines.append("static_placement:")
        for name, experts in experts_per_node.items():
            lines.append(f"  {name}: {experts}")
    lines += [
        "nodes:",
        f"  - {{name: head, control_port: {p[0]}, data_port: {p[1]}, roles: [coordinator, head], threads: 1}}",
        f"  - {{name: experts-a, control_port: {p[2]}, data_port: {p[3]}, roles: [experts], memory_budget: 1GiB}}",
        f"  - {{name: experts-b, control_port: {p[4]}, data_port: {p[5]}, roles: [experts], memory_budget: 1GiB}}",
    ]
    return "\n".join(lines) + "\n"


def live_yaml(model, transport):
    p = free_ports(8)
    nodes = [f"  - {{name: head, control_port: {p[0]}, data_port: {p[1]}, roles: [coordinator, head], threads: 1}}"]
    for i, name in enumerate(["experts-a", "experts-b", "experts-c"]):
        nodes.append(f"  - {{name: {name}, control_port: {p[2 + 2 * i]}, data_port: {p[3 + 2 * i]}, "
                     "roles: [experts], memory_budget: 1GiB}")
    return "\n".join([f"model: {model}", f"transport: {transport}", "placement: spread",
                      "rebalance: {period: 1500ms, window: 3s, min_gain: 0, hysteresis: 0}", "nodes:"] + nodes) + "\n"


class Harness:
    def __init__(self, xmesh, repo, tmp):
        self.xmesh, self.repo, self.tmp = xmesh, repo, tmp
        self.env = dict(os.environ, XMESH_BIN=xmesh, XMESH_RUN_DIR="", UCX_NET_DEVICES="lo")

    def model(self, family, skew=0):
        path = f"{self.tmp}/{family}-skew{skew}"
        if not os.path.exists(path):
            subprocess.run([self.xmesh, "gen-model", "--family", family, "--preset", "tiny", "--seed", "5",
                            "--expert-skew", str(skew), "--out", path], check=True, stdout=subprocess.DEVNULL)
        return path

    def generate(self, model, prompt, cluster=None, name="run", tokens=6):
        out = f"{self.tmp}/{name}.npy"
        cmd = [self.xmesh, "generate", "--model", model, "--tokens", ",".join(map(str, prompt)),
               "--max-new-tokens", str(tokens), "--ignore-eos", "--logits-out", out, "--json"]
        if cluster:
            cmd += ["--cluster", cluster]
        return cmd, out

    def run_generate(self, *args, **kw):
        cmd, out = self.generate(*args, **kw)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            sys.exit(f"FAIL: {' '.join(cmd)}\n{r.stderr}")
        return json.loads(r.stdout)["tokens"], np.load(out)

    def cluster(self, yaml_text, name):
        path = f"{self.tmp}/{name}.yaml"
        with open(path, "w") as f:
            f.write(yaml_text)
        env = dict(self.env, XMESH_RUN_DIR=f"{self.tmp}/run-{name}")
        return Cluster(self.repo, path, env)


class Cluster:
    def __init__(self, repo, path, env):
        self.script, self.path, self.env = f"{repo}/deploy/local.sh", path, env

    def __enter__(self):
        r = subprocess.run([self.script, "up", self.path], env=self.env, capture_output=True, text=True, timeout=90)
        if r.returncode != 0:
            sys.exit(f"FAIL: local.sh up {self.path}\n{r.stdout}{r.stderr}")
        return self

    def __exit__(self, *exc):
        subprocess.run([self.script, "down", self.path], env=self.env, capture_output=True, timeout=60)


def expect_identical(label, got, oracle):
    tokens, logits = got
    want_tokens, want_logits = oracle
    same = tokens == want_tokens and logits.shape == want_logits.shape and logits.tobytes() == want_logits.tobytes()
    print(f"{label}: tokens {tokens} {'bit-identical' if same else 'DIFFERENT'}")
    if not same:
        sys.exit(f"FAIL {label}: oracle tokens {want_tokens}, max |diff| "
                 f"{np.max(np.abs(logits - want_logits)) if logits.shape == want_logits.shape else 'shape'}")


def expect_error(label, cmd, env, needle, limit_s):
    start = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=limit_s + 30, env=env)
    took = time.time() - start
    print(f"{label}: status {r.returncode} after {took:.1f}s: {r.stderr.strip()}")
    if r.returncode == 0 or needle not in r.stderr or r.stderr.count("\n") != 1 or took > limit_s:
        sys.exit(f"FAIL {label}: expected one error line containing {needle!r} within {limit_s}s")


class Clients:
    """Clients generating continuously, each its own prompt, every output checked against its
    oracle; stop() joins them and returns (completed per client, failures)."""

    def __init__(self, h, model, prompts, oracles, cluster):
        self.stop_flag, self.done, self.failures = threading.Event(), [0] * len(prompts), []

        def client(i):
            n = 0
            while not self.stop_flag.is_set() and not self.failures:
                cmd, out = h.generate(model, prompts[i], cluster=cluster, name=f"c{i}-{n}", tokens=8)
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
                got = (json.loads(r.stdout)["tokens"], np.load(out)) if r.returncode == 0 else None
                if got is None or got[0] != oracles[i][0] or got[1].tobytes() != oracles[i][1].tobytes():
                    self.failures.append(f"client {i} run {n}: {r.stderr.strip() or 'output differs from the oracle'}")
                if os.path.exists(out):
                    os.remove(out)
                self.done[i] += 1
                n += 1

        self.threads = [threading.Thread(target=client, args=(i,)) for i in range(len(prompts))]
        for t in self.threads:
            t.start()

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=180)
        return self.done, self.failures


def expect_all_exact(done, failures, note=""):
    """Prints what each client completed (and `note`); fails naming the first wrong requests."""
    print(f"requests completed: {sum(done)} {done}{note}")
    if failures:
        sys.exit("FAIL: " + "; ".join(failures[:3]))


def wait_for(predicate, limit_s, what):
    deadline = time.time() + limit_s
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    sys.exit(f"FAIL: within {limit_s} s: {what}")


def status_of(h, c):
    r = subprocess.run([h.xmesh, "cluster", "status", "--cluster", c.path, "--json"], capture_output=True,
                       text=True, timeout=30)
    return json.loads(r.stdout)


def placement_of(h, c):
    r = subprocess.run([h.xmesh, "cluster", "placement", "--cluster", c.path, "--json"], capture_output=True,
                       text=True, timeout=30)
    return json.loads(r.stdout)


def hosts_of(placement):
    """Nodes that host at least one replica."""
    return {n for layer in placement["replicas"] for r in layer for n in r}


def gone(pid):
    """The process has exited (a zombie counts: its sockets are closed)."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def kill_and_wait(pid, limit_s=10):
    """SIGKILL, then wait until the process is gone."""
    os.kill(pid, 9)
    wait_for(lambda: gone(pid), limit_s, f"process {pid} to exit after SIGKILL")


def pid_of(c, name):
    return int(open(f"{c.env['XMESH_RUN_DIR']}/{name}.pid").read())


def threads_of(pid):
    """(name, nice, scheduling policy: os.SCHED_*) of each thread of process `pid`."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = open(f"/proc/{pid}/task/{tid}/stat").read()
        except OSError:  # it ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # from field 3 (state) on: nice 19, policy 41
        out.append((stat[stat.index("(") + 1:stat.rindex(")")], int(fields[16]), int(fields[38])))
    return out


def compute_cpus_of(pid):
    """The CPUs each of process `pid`'s expert-computing threads (xmesh.compute) may run on."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            if open(f"/proc/{pid}/task/{tid}/comm").read().strip() == "xmesh.compute":
                out.append(sorted(os.sched_getaffinity(int(tid))))
        except OSError:  # it ended meanwhile
            continue
    return out


def run_case(cases):
    """usage: SCRIPT XMESH REPO CASE [TRANSPORT]; runs cases[CASE](harness, transport), then PASS.
    XMESH_TEST_DIR keeps models, logs and outputs (debugging)."""
    xmesh, repo, case = sys.argv[1], sys.argv[2], sys.argv[3]
    transport = sys.argv[4] if len(sys.argv) > 4 else "zmq"
    if case not in cases:
        sys.exit(f"unknown case {case!r} ({', '.join(cases)})")
    keep = os.environ.get("XMESH_TEST_DIR")
    with (tempfile.TemporaryDirectory() if not keep else open(os.devnull)) as tmp:
        tmp = keep or tmp
        os.makedirs(tmp, exist_ok=True)
        cases[case](Harness(xmesh, repo, tmp), transport)
    print("PASS")


def fail(why):
    sys.exit(f"FAIL: {why}")


def root_test_model(xmesh, kind, seed):
    """For the tests that build network namespaces: None (after printing SKIP) without root, else
    (a working folder, a tiny Mixtral model in it); XMESH_TEST_DIR names the folder to keep."""
    if os.geteuid() != 0:
        print("SKIP: needs root (network namespaces)")
        return None
    tmp = os.environ.get("XMESH_TEST_DIR") or tempfile.mkdtemp(prefix=f"xmesh-{kind}-")
    os.makedirs(tmp, exist_ok=True)
    model = f"{tmp}/model"
    subprocess.run([xmesh, "gen-model", "--family", "mixtral", "--preset", "tiny", "--seed", str(seed), "--out",
                    model], check=True, stdout=subprocess.DEVNULL)
    return tmp, model


def netns_prefix(path):
    """The prefix deploy/netns.sh gives the namespaces of the cluster file at `path`."""
    return "xm" + hashlib.md5((os.path.realpath(path) + "\n").encode()).hexdigest()[:6] + "-"


def socket_inodes(pid):
    """The inodes of the process's sockets (what /proc/PID/net/tcp lists them by)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    return inodes


def accepted_on(pid, ports, from_ip=None):
    """Established connections the process holds whose local port is one of `ports` (and whose
    peer is the IPv4 address `from_ip`, when given). /proc/PID/net is the process's namespace."""
    inodes, n = socket_inodes(pid), 0
    peer = None if from_ip is None else "".join(f"{int(b):02X}" for b in reversed(from_ip.split("."))) + ":"
    for table in ("tcp", "tcp6"):
        for line in open(f"/proc/{pid}/net/{table}").read().splitlines()[1:]:
            f = line.split()
            if f[3] == "01" and int(f[1].split(":")[1], 16) in ports and f[9] in inodes and \
                    (peer is None or f[2].startswith(peer)):
                n += 1
    return n


def listening_ports(pid):
    """The TCP ports the process listens on."""
    inodes = socket_inodes(pid)
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in open(f"/proc/{pid}/net/{table}").read().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # LISTEN
                ports.add(int(f[1].split(":")[1], 16))
    return ports
