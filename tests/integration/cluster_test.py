#!/usr/bin/env python3
"""Multi-process cluster tests on loopback: real `xmesh node` processes launched by
deploy/local.sh, real sockets. The single-process run is the oracle: every distributed run must
give bit-identical tokens and logits.

usage: cluster_test.py XMESH REPO CASE [TRANSPORT]
  CASE: equivalence | concurrent | unreachable | failure | failure-replicated | failure-migrating | live |
        orders | stall |
        restart | two-heads | drain-join
"""
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


def free_ports(n):
    """n ports that are free now, below the kernel's ephemeral range: a port the kernel hands out
    for bind(0) can be taken by another test's outgoing connection before our node binds it."""
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    rng = random.Random(os.getpid() ^ int(time.time() * 1000))
    ports = []
    while len(ports) < n:
        p = rng.randrange(10000, low)
        if p in ports:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", p))
            ports.append(p)
        except OSError:
            pass
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


def placements(transport):
    if transport == "local":  # in-process transport: one node with every role
        return []
    half = "[0, 1, 2, 3]"
    return [("spread", None), ("static", {"experts-a": "[0, 1, 2, 3, 4, 5, 6, 7]", "experts-b": half})]


def case_equivalence(h, transport):
    for family in FAMILIES:
        model = h.model(family)
        oracle = h.run_generate(model, PROMPTS[0], name=f"{family}-oracle")
        if transport == "local":
            p = free_ports(2)
            text = (f"model: {model}\ntransport: local\nnodes:\n  - {{name: all, control_port: {p[0]}, "
                    f"data_port: {p[1]}, roles: [coordinator, head, experts], threads: 2}}\n")
            configs = [("one-node", text)]
        else:
            configs = [(pl, cluster_yaml(model, transport, pl, experts)) for pl, experts in placements(transport)]
        for label, text in configs:
            with h.cluster(text, f"{family}-{transport}-{label}") as c:
                got = h.run_generate(model, PROMPTS[0], cluster=c.path, name=f"{family}-{label}")
                expect_identical(f"{family} {transport} {label}", got, oracle)


def case_concurrent(h, transport):
    model = h.model("qwen2_moe")
    oracles = [h.run_generate(model, p, name=f"oracle{i}") for i, p in enumerate(PROMPTS)]
    with h.cluster(cluster_yaml(model, transport, "spread"), f"concurrent-{transport}") as c:
        runs = [h.generate(model, p, cluster=c.path, name=f"c{i}") for i, p in enumerate(PROMPTS)]
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for cmd, _ in runs]
        for i, (proc, (_, out)) in enumerate(zip(procs, runs)):
            stdout, stderr = proc.communicate(timeout=120)
            if proc.returncode != 0:
                sys.exit(f"FAIL concurrent request {i}: {stderr}")
            expect_identical(f"concurrent request {i} over {transport}", (json.loads(stdout)["tokens"], np.load(out)),
                             oracles[i])


def expect_error(label, cmd, env, needle, limit_s):
    start = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=limit_s + 30, env=env)
    took = time.time() - start
    print(f"{label}: status {r.returncode} after {took:.1f}s: {r.stderr.strip()}")
    if r.returncode == 0 or needle not in r.stderr or r.stderr.count("\n") != 1 or took > limit_s:
        sys.exit(f"FAIL {label}: expected one error line containing {needle!r} within {limit_s}s")


def case_unreachable(h, transport):
    model = h.model("mixtral")
    text = cluster_yaml(model, transport, "spread")
    path = f"{h.tmp}/unreachable.yaml"
    with open(path, "w") as f:
        f.write(text)
    env = dict(h.env, XMESH_CONNECT_TIMEOUT_MS="2000")
    cmd, _ = h.generate(model, [1, 2], cluster=path)
    expect_error("no head running", cmd, env, "cannot reach head 'head' at 127.0.0.1:", 20)
    expect_error("rebalance without a coordinator", [h.xmesh, "cluster", "rebalance", "--cluster", path], env,
                 "cannot reach coordinator 'head' at 127.0.0.1:", 20)
    expect_error("expert node without coordinator", [h.xmesh, "node", "--cluster", path, "--name", "experts-a"],
                 env, "cannot reach coordinator 'head' at 127.0.0.1:", 20)
    # A node still waiting for its coordinator stops at once on SIGTERM.
    waiting = subprocess.Popen([h.xmesh, "node", "--cluster", path, "--name", "experts-a"],
                               env=dict(env, XMESH_CONNECT_TIMEOUT_MS="30000"), stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    start = time.time()
    waiting.terminate()
    _, err = waiting.communicate(timeout=20)
    print(f"SIGTERM while waiting for the coordinator: exit {waiting.returncode} after {time.time() - start:.1f}s")
    if time.time() - start > 2 or "stopped during start-up" not in err:
        sys.exit(f"FAIL: a node waiting for its coordinator must stop at once on SIGTERM: {err}")
    head = subprocess.Popen([h.xmesh, "node", "--cluster", path, "--name", "head"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # No expert node ever came up: the live placement has no replica (it holds only what nodes
        # report), so the head computes every expert from its own model files, with the oracle's
        # output.
        time.sleep(1.0)
        oracle = h.run_generate(model, [1, 2], name="unreachable-oracle")
        start = time.time()
        got = h.run_generate(model, [1, 2], cluster=path, name="unreachable-head-only")
        print(f"expert nodes down: served by the head in {time.time() - start:.1f} s")
        expect_identical("expert nodes down, head computes from its files", got, oracle)
    finally:
        head.terminate()
        head.wait(timeout=20)


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


LIVE_PROMPTS = [[5, 99, 311, 42], [1, 2, 3], [400, 12, 12, 77, 300, 8], [9], [17, 17, 4], [250, 3, 60, 61, 62],
                [33, 44], [7, 70, 500]]


# Every expert on two of the three expert nodes: killing one leaves each expert a replica.
REPLICATED = "placement: static\nstatic_placement:\n  experts-a: [0, 1, 2, 3, 4, 5]\n" \
             "  experts-b: [0, 1, 4, 5, 6, 7]\n  experts-c: [2, 3, 6, 7]"


def case_failure(h, transport, during_migrations=False, replicated=False):
    """An expert node is killed (-9) while 8 clients generate: every request completes bit-identical
    to the oracle (rows in flight go to another replica or are computed by the head from its own
    files); the coordinator declares the node dead within the heartbeat timeout and re-places the
    experts it held alone (with `replicated`, every expert keeps a replica and nothing is copied);
    it is reported dead; restarted, it loads what it held, registers, and serves again after the
    rejoin wait."""
    model = h.model("olmoe")
    oracles = [h.run_generate(model, p, name=f"oracle{i}", tokens=8) for i, p in enumerate(LIVE_PROMPTS)]
    text = live_yaml(model, transport).replace(
        "rebalance: {period: 1500ms, window: 3s, min_gain: 0, hysteresis: 0}", "heartbeat: {period: 250ms, timeout: 1s, rejoin: 1s}")
    if replicated:
        text = text.replace("placement: spread", REPLICATED)
    with h.cluster(text, f"failure-{transport}") as c:
        def placement():
            r = subprocess.run([h.xmesh, "cluster", "placement", "--cluster", c.path, "--json"], capture_output=True,
                               text=True, timeout=30)
            return json.loads(r.stdout)

        clients = Clients(h, model, LIVE_PROMPTS, oracles, c.path)
        mover_stop = threading.Event()

        def mover():  # experts-b gains and loses replicas while it dies
            i = 0
            while not mover_stop.is_set():
                layer, expert = i % 2, (i // 2) % 8
                p = placement()["replicas"][layer][expert]
                kind = ["retire", "--node", "experts-b"] if "experts-b" in p and len(p) > 1 else \
                    ["replicate", "--to", "experts-b"]
                subprocess.run([h.xmesh, "cluster", kind[0], "--cluster", c.path, "--layer", str(layer), "--expert",
                                str(expert), *kind[1:]], capture_output=True, timeout=200)
                i += 1

        movers = [threading.Thread(target=mover)] if during_migrations else []
        for m in movers:
            m.start()
        try:
            time.sleep(1.5)
            killed_at = time.time()
            os.kill(int(open(f"{c.env['XMESH_RUN_DIR']}/experts-b.pid").read()), 9)
            deadline = time.time() + 30
            while time.time() < deadline and not clients.failures:
                p = placement()
                held = [r for layer in p["replicas"] for r in layer]
                if all(r and "experts-b" not in r for r in held):
                    break
                time.sleep(0.2)
            recovered = time.time() - killed_at
            mover_stop.set()
            time.sleep(1.5)  # requests keep flowing on the new placement
        finally:
            mover_stop.set()
            for m in movers:
                m.join(timeout=240)
            done, failures = clients.stop()
        print(f"requests completed: {sum(done)} {done}; experts re-placed {recovered:.1f} s after the kill")
        if failures:
            sys.exit("FAIL: " + "; ".join(failures[:3]))
        if any(not r or "experts-b" in r for layer in placement()["replicas"] for r in layer):
            sys.exit("FAIL: experts-b's experts should be re-placed on the live nodes")
        if replicated and placement()["replications"] != 0:
            sys.exit("FAIL: every expert kept a replica: nothing should have been copied")
        r = subprocess.run([h.xmesh, "cluster", "status", "--cluster", c.path, "--json"], capture_output=True,
                           text=True, timeout=30)
        status = json.loads(r.stdout)
        print(f"status after the kill: exit {r.returncode}, dead {status['dead']}, deaths {status['deaths']}")
        if r.returncode != 3 or status["dead"] != ["experts-b"] or status["deaths"] != 1:
            sys.exit("FAIL: the coordinator should report experts-b dead")
        c.__enter__()  # local.sh up starts only the node that is down, and waits for it
        wait_for(lambda: status_of(h, c)["rejoins"] == 1 and "experts-b" in hosts_of(placement()), 20,
                 "the restarted experts-b serves again")
        expect_identical(f"after experts-b came back ({transport})",
                         h.run_generate(model, PROMPTS[2], cluster=c.path, name="after"),
                         h.run_generate(model, PROMPTS[2], name="oracle-after"))


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


def pid_of(c, name):
    return int(open(f"{c.env['XMESH_RUN_DIR']}/{name}.pid").read())


def case_stall(h, transport):
    """SIGSTOP of an expert node under 8 clients: it never fails a frame, but the coordinator
    declares it dead after the heartbeat timeout and the heads re-send what it was sent; every
    request completes bit-identical. After SIGCONT its late replies are ignored, it learns it was
    declared dead, registers again with what it holds, and serves after the rejoin wait."""
    model = h.model("olmoe")
    oracles = [h.run_generate(model, p, name=f"oracle{i}", tokens=8) for i, p in enumerate(LIVE_PROMPTS)]
    text = live_yaml(model, transport).replace(
        "rebalance: {period: 1500ms, window: 3s, min_gain: 0, hysteresis: 0}",
        "heartbeat: {period: 250ms, timeout: 1s, rejoin: 1s}")
    with h.cluster(text, f"stall-{transport}") as c:
        clients = Clients(h, model, LIVE_PROMPTS, oracles, c.path)
        try:
            time.sleep(1.0)
            pid = pid_of(c, "experts-b")
            os.kill(pid, 19)  # SIGSTOP
            stopped_at = time.time()
            try:
                wait_for(lambda: status_of(h, c)["dead"] == ["experts-b"], 10, "the stopped node is declared dead")
                print(f"cluster status shows experts-b dead {time.time() - stopped_at:.1f} s after SIGSTOP")
                time.sleep(2.0)  # requests keep flowing without it
            finally:
                os.kill(pid, 18)  # SIGCONT
            wait_for(lambda: status_of(h, c)["rejoins"] == 1 and "experts-b" in hosts_of(placement_of(h, c)), 20,
                     "the resumed node serves again")
            print(f"experts-b serves again {time.time() - stopped_at:.1f} s after SIGSTOP")
            time.sleep(1.5)  # and requests flow through it again
        finally:
            done, failures = clients.stop()
        print(f"requests completed: {sum(done)} {done}")
        if failures:
            sys.exit("FAIL: " + "; ".join(failures[:3]))
        st = status_of(h, c)
        if st["registered"] != ["head", "experts-a", "experts-b", "experts-c"] or st["dead"]:
            sys.exit(f"FAIL: every node should be a live member again: {st}")


def case_restart(h, transport):
    """kill -9 of the head (which is the coordinator) after the placement moved away from the
    cluster file's: the expert nodes keep running, re-register on their own with what they hold
    when the head comes back, and the coordinator rebuilds the live placement from their reports
    (the moved replica is where it was moved to, nothing orphaned or copied); clients fail at once
    while the head is down, and outputs are bit-identical afterwards."""
    model = h.model("mixtral")
    oracle = h.run_generate(model, PROMPTS[0], name="oracle")
    text = live_yaml(model, transport).replace("rebalance: {period: 1500ms, window: 3s, min_gain: 0, hysteresis: 0}",
                                               "heartbeat: {period: 250ms, timeout: 1s}")
    with h.cluster(text, f"restart-{transport}") as c:
        before = placement_of(h, c)
        owner = before["replicas"][1][3][0]
        target = next(n for n in ["experts-a", "experts-b", "experts-c"] if n != owner)
        r = subprocess.run([h.xmesh, "cluster", "migrate", "--cluster", c.path, "--layer", "1", "--expert", "3",
                            "--from", owner, "--to", target], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            sys.exit(f"FAIL: migrate: {r.stderr}")
        moved = placement_of(h, c)
        experts = {n: pid_of(c, n) for n in ["experts-a", "experts-b", "experts-c"]}
        os.kill(pid_of(c, "head"), 9)
        time.sleep(0.5)
        cmd, _ = h.generate(model, PROMPTS[0], cluster=c.path)
        expect_error("head down", cmd, dict(h.env, XMESH_CONNECT_TIMEOUT_MS="1000"), "cannot reach head 'head'", 10)
        c.__enter__()  # starts the head only
        wait_for(lambda: status_of(h, c)["registered"] == ["head", "experts-a", "experts-b", "experts-c"], 20,
                 "the expert nodes register with the restarted coordinator")
        for n, pid in experts.items():
            if pid_of(c, n) != pid:
                sys.exit(f"FAIL: {n} was restarted; it should have re-registered on its own")
        rebuilt = placement_of(h, c)
        print(f"placement before the kill: version {moved['version']}, after the restart: version "
              f"{rebuilt['version']}, layer 1 expert 3 on {rebuilt['replicas'][1][3]}")
        if rebuilt["replicas"] != moved["replicas"] or rebuilt["version"] <= moved["version"]:
            sys.exit(f"FAIL: the rebuilt placement should be the one the nodes hold, with a newer version")
        if rebuilt["replications"] != 0:
            sys.exit("FAIL: nothing should have been copied")
        expect_identical(f"after the head restarted ({transport})",
                         h.run_generate(model, PROMPTS[0], cluster=c.path, name="after"), oracle)


def two_heads_yaml(model, transport):
    p = free_ports(8)
    return "\n".join([
        f"model: {model}", f"transport: {transport}", "placement: spread", "nodes:",
        f"  - {{name: head-a, control_port: {p[0]}, data_port: {p[1]}, roles: [head], threads: 1}}",
        f"  - {{name: head-b, control_port: {p[2]}, data_port: {p[3]}, roles: [coordinator, head], threads: 1}}",
        f"  - {{name: experts-a, control_port: {p[4]}, data_port: {p[5]}, roles: [experts], memory_budget: 1GiB}}",
        f"  - {{name: experts-b, control_port: {p[6]}, data_port: {p[7]}, roles: [experts], memory_budget: 1GiB}}",
    ]) + "\n"


def case_two_heads(h, transport):
    """Two heads; 8 clients mid-request on head-a when it is killed (-9): each client replays its
    request on head-b and gets the reply head-a would have given, bit-identical to the oracle."""
    model = h.model("qwen3_moe")
    tokens = 500  # the context holds 512: each request takes a second or more on the cluster
    oracles = [h.run_generate(model, p, name=f"oracle{i}", tokens=tokens) for i, p in enumerate(LIVE_PROMPTS)]
    with h.cluster(two_heads_yaml(model, transport), f"two-heads-{transport}") as c:
        runs = []
        for i, p in enumerate(LIVE_PROMPTS):
            cmd, out = h.generate(model, p, cluster=c.path, name=f"two-heads-{i}", tokens=tokens)
            runs.append((subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), out))
        # Kill as soon as head-a routes frames: the clients are mid-request.
        wait_for(lambda: status_of(h, c)["nodes"].get("head-a", {}).get("frames_sent", 0) > 0, 20,
                 "head-a serves the clients")
        os.kill(pid_of(c, "head-a"), 9)
        killed_at = time.time()
        replayed = 0
        for i, (proc, out) in enumerate(runs):
            stdout, stderr = proc.communicate(timeout=120)
            if proc.returncode != 0:
                sys.exit(f"FAIL: client {i}: {stderr}")
            replayed += "replaying on head 'head-b'" in stderr
            got = (json.loads(stdout)["tokens"], np.load(out))
            if got[0] != oracles[i][0] or got[1].tobytes() != oracles[i][1].tobytes():
                sys.exit(f"FAIL: client {i}: the replayed reply differs from the oracle")
        print(f"head-a killed: {replayed} of {len(runs)} clients replayed on head-b, all bit-identical, "
              f"last done {time.time() - killed_at:.1f} s after the kill")
        if replayed != len(runs):
            sys.exit("FAIL: every client was on head-a: each must have replayed on head-b")


def case_drain_join(h, transport):
    """Under 8 clients: a node the cluster file does not list joins (`xmesh node --join`), then an
    operator drains experts-b (its experts move away make-before-break, then it stops): zero failed
    requests, every output bit-identical. A drain that cannot be done and a join with another model
    are refused, naming the reason and both models."""
    model = h.model("olmoe")
    other = h.model("mixtral")
    oracles = [h.run_generate(model, p, name=f"oracle{i}", tokens=8) for i, p in enumerate(LIVE_PROMPTS)]
    text = live_yaml(model, transport).replace("rebalance: {period: 1500ms, window: 3s, min_gain: 0, hysteresis: 0}",
                                               "heartbeat: {period: 250ms, timeout: 1s}")
    with h.cluster(text, f"drain-{transport}") as c:
        coord = next(l for l in text.splitlines() if "name: head" in l).split("control_port: ")[1].split(",")[0]
        port = free_ports(1)[0]
        join = [h.xmesh, "node", "--join", f"127.0.0.1:{coord}", "--name", "experts-d", "--data-port", str(port),
                "--transport", transport, "--memory-budget", "1GiB"]
        r = subprocess.run(join + ["--model", other], capture_output=True, text=True, timeout=60, env=h.env)
        print(f"join with another model: exit {r.returncode}: {r.stderr.strip()}")
        if r.returncode == 0 or "serves model mixtral-skew0 (config" not in r.stderr or \
                "but the cluster serves olmoe-skew0 (config" not in r.stderr:
            sys.exit("FAIL: a join with another model must be refused naming both")
        clients = Clients(h, model, LIVE_PROMPTS, oracles, c.path)
        joined = subprocess.Popen(join + ["--model", model], stdout=subprocess.DEVNULL,
                                  stderr=open(f"{h.tmp}/experts-d.log", "w"), env=h.env)
        try:
            wait_for(lambda: "experts-d" in status_of(h, c)["registered"], 20, "experts-d joins")
            time.sleep(1.0)
            start = time.time()
            r = subprocess.run([h.xmesh, "cluster", "drain", "--cluster", c.path, "--node", "experts-b"],
                               capture_output=True, text=True, timeout=120)
            print(f"drain: exit {r.returncode} after {time.time() - start:.1f} s: {r.stdout.strip()}{r.stderr.strip()}")
            if r.returncode != 0:
                sys.exit("FAIL: the drain should succeed")
            wait_for(lambda: not os.path.exists(f"/proc/{pid_of(c, 'experts-b')}") or
                     open(f"/proc/{pid_of(c, 'experts-b')}/stat").read().split()[2] == "Z", 10,
                     "the drained node stops")
            time.sleep(1.0)  # requests keep flowing without it
        finally:
            done, failures = clients.stop()
        print(f"requests completed: {sum(done)} {done}")
        if failures:
            sys.exit("FAIL: " + "; ".join(failures[:3]))
        p = placement_of(h, c)
        st = status_of(h, c)
        if "experts-b" in hosts_of(p) or st["drained"] != ["experts-b"] or "experts-d" not in st["registered"]:
            sys.exit(f"FAIL: experts-b should be drained and experts-d a member: {st}")
        if "experts-d" not in hosts_of(p):
            sys.exit("FAIL: the joined node should have taken replicas (the roomiest node)")
        if any(not r for layer in p["replicas"] for r in layer):
            sys.exit("FAIL: every expert should keep a replica")
        r = subprocess.run([h.xmesh, "cluster", "drain", "--cluster", c.path, "--node", "head"],
                           capture_output=True, text=True, timeout=30)
        print(f"drain of the head: exit {r.returncode}: {r.stderr.strip()}")
        if r.returncode == 0 or "cannot drain 'head': it is not an expert node of this cluster" not in r.stderr:
            sys.exit("FAIL: draining a node without experts must be refused")
        cmd, _ = h.generate(other, [1, 2], cluster=c.path)
        expect_error("client with another model", cmd, h.env,
                     "the cluster serves model olmoe-skew0 (config", 20)
        joined.terminate()
        joined.wait(timeout=20)


def live_yaml(model, transport):
    p = free_ports(8)
    nodes = [f"  - {{name: head, control_port: {p[0]}, data_port: {p[1]}, roles: [coordinator, head], threads: 1}}"]
    for i, name in enumerate(["experts-a", "experts-b", "experts-c"]):
        nodes.append(f"  - {{name: {name}, control_port: {p[2 + 2 * i]}, data_port: {p[3 + 2 * i]}, "
                     "roles: [experts], memory_budget: 1GiB}")
    return "\n".join([f"model: {model}", f"transport: {transport}", "placement: spread",
                      "rebalance: {period: 1500ms, window: 3s, min_gain: 0, hysteresis: 0}", "nodes:"] + nodes) + "\n"


def case_live(h, transport):
    """1 head + 3 expert nodes; 8 clients generate continuously while the placement changes under
    them (operator orders, requested and automatic rebalances): every request is bit-identical to
    the single-process run, and at least 20 replicas are added."""
    model = h.model("mixtral", skew=1.0)
    prompts = LIVE_PROMPTS
    oracles = [h.run_generate(model, p, name=f"oracle{i}", tokens=8) for i, p in enumerate(prompts)]
    with h.cluster(live_yaml(model, transport), f"live-{transport}") as c:
        def ctl(*args, expect_ok=True):
            r = subprocess.run([h.xmesh, "cluster", *args, "--cluster", c.path], capture_output=True, text=True,
                               timeout=120)
            if expect_ok and r.returncode != 0:
                sys.exit(f"FAIL: xmesh cluster {' '.join(args)}: {r.stderr}")
            return r

        def placement():
            return json.loads(ctl("placement", "--json").stdout)

        clients = Clients(h, model, prompts, oracles, c.path)
        try:
            time.sleep(2.0)
            first = json.loads(ctl("rebalance", "--json").stdout)
            print(f"requested rebalance: {first}")
            p = placement()
            nodes = p["nodes"]
            experts = len(p["replicas"][0])
            tokens = p["tokens"][:experts]
            hot = max(range(experts), key=lambda e: tokens[e])
            # The automatic loop runs meanwhile, so an order is re-planned from the live table when
            # the loop moved its expert first (refused: already hosts, does not host, or the
            # loop retired the other replica).
            def move(kind, layer, e, pick):
                for _ in range(5):
                    have = placement()["replicas"][layer][e]
                    args = pick(have)
                    if args is None:
                        return
                    r = ctl(kind, "--layer", str(layer), "--expert", str(e), *args, expect_ok=False)
                    if r.returncode == 0:
                        return
                    raced = ("already hosts", "does not host", "without a replica")
                    if not any(reason in r.stderr for reason in raced):
                        sys.exit(f"FAIL: {kind} {layer}/{e} {args}: {r.stderr}")
                sys.exit(f"FAIL: {kind} {layer}/{e} kept racing with the automatic loop")

            def away(have):
                target = [n for n in nodes if n not in have]
                return ["--from", have[0], "--to", target[0]] if target else None

            # The hot expert moves twice, gains a replica and loses one while batches are in flight.
            move("migrate", 0, hot, away)
            move("migrate", 0, hot, away)
            move("replicate", 0, hot, lambda have: ["--to", next(n for n in nodes if n not in have)]
                 if len(have) < len(nodes) else None)
            move("retire", 0, hot, lambda have: ["--node", have[-1]] if len(have) > 1 else None)
            # Every other expert of both layers moves once: to the next node that lacks it.
            for layer in range(len(p["replicas"])):
                for e in range(experts):
                    if (layer, e) != (0, hot):
                        move("migrate", layer, e, away)
            # Refused orders name their reason and change nothing (re-tried when the automatic
            # loop moved the chosen expert in between).
            for _ in range(5):
                p = placement()
                single = next((l, e) for l in range(len(p["replicas"])) for e in range(experts)
                              if len(p["replicas"][l][e]) == 1)
                r = ctl("retire", "--layer", str(single[0]), "--expert", str(single[1]), "--node",
                        p["replicas"][single[0]][single[1]][0], expect_ok=False)
                if "does not host" not in r.stderr:
                    break
            if r.returncode == 0 or "without a replica" not in r.stderr or r.stderr.count("\n") != 1:
                sys.exit(f"FAIL: retiring the last replica should be refused: {r.stderr}")
            # The automatic loop (every 1.5 s) rebalances what the manual moves disturbed.
            deadline = time.time() + 60
            while placement()["automatic_rebalances"] < 1 and time.time() < deadline and not clients.failures:
                time.sleep(0.5)
        finally:
            done, failures = clients.stop()
        p = placement()
        print(f"requests completed: {sum(done)} ({done}); placement version {p['version']}, "
              f"{p['replications']} replications, {p['retirements']} retirements, {p['bytes_moved']} bytes moved, "
              f"{p['rebalances']} rebalances ({p['automatic_rebalances']} automatic), failed moves {p['failed_moves']}")
        if failures:
            sys.exit("FAIL: " + "; ".join(failures[:3]))
        if p["automatic_rebalances"] < 1:
            sys.exit("FAIL: the automatic loop carried out no rebalance")
        if p["replications"] < 20 or min(done) < 2:
            sys.exit("FAIL: expected at least 20 replications and every client to finish 2 requests")
        print(f"live placement over {transport}: every request bit-identical")


def case_orders(h, transport):
    """Replicas streamed from a peer for a node without its own copy, a peer whose copy is corrupt
    (checksum), a memory budget that cannot take one more replica: each order succeeds or is refused
    with one line naming the reason, and nothing is served from bad weights."""
    model = h.model("mixtral")
    config = json.load(open(f"{model}/config.json"))
    expert_bytes = 3 * config["hidden_size"] * config["intermediate_size"] * 4  # f32
    oracle = h.run_generate(model, PROMPTS[0], name="oracle")
    p = free_ports(8)
    text = "\n".join([
        f"model: {model}", f"transport: {transport}", "placement: static", "static_placement:",
        "  experts-a: [0, 1, 2]", "  experts-b: [3, 4, 5]", "  experts-c: [6, 7]", "nodes:",
        f"  - {{name: head, control_port: {p[0]}, data_port: {p[1]}, roles: [coordinator, head], threads: 1}}",
        f"  - {{name: experts-a, control_port: {p[2]}, data_port: {p[3]}, roles: [experts], "
        f"memory_budget: {6 * expert_bytes}B}}",
        f"  - {{name: experts-b, control_port: {p[4]}, data_port: {p[5]}, roles: [experts]}}",
        f"  - {{name: experts-c, control_port: {p[6]}, data_port: {p[7]}, roles: [experts], expert_source: peer}}",
    ]) + "\n"
    h.env["XMESH_FAULT_CORRUPT_WEIGHTS"] = "experts-b"  # b streams a corrupted copy to its peers
    try:
        with h.cluster(text, f"orders-{transport}") as c:
            def ctl(*args):
                return subprocess.run([h.xmesh, "cluster", *args, "--cluster", c.path], capture_output=True,
                                      text=True, timeout=120)

            def replicas(layer, expert):
                out = ctl("placement", "--json")
                return json.loads(out.stdout)["replicas"][layer][expert]

            r = ctl("replicate", "--layer", "1", "--expert", "2", "--to", "experts-c")
            log = open(f"{c.env['XMESH_RUN_DIR']}/experts-c.log").read()
            print(f"replicate from a peer: {r.stdout.strip()} {r.stderr.strip()}")
            if r.returncode != 0 or "from peer experts-a" not in log or replicas(1, 2) != ["experts-a", "experts-c"]:
                sys.exit(f"FAIL: experts-c should stream expert 2 of layer 1 from experts-a\n{log}")
            r = ctl("replicate", "--layer", "0", "--expert", "4", "--to", "experts-c")
            print(f"replicate from a corrupt peer: status {r.returncode}: {r.stderr.strip()}")
            if (r.returncode == 0 or "checksum" not in r.stderr or "experts-b" not in r.stderr
                    or r.stderr.count("\n") != 1 or replicas(0, 4) != ["experts-b"]):
                sys.exit("FAIL: a corrupt peer copy must be refused with one line naming the checksum")
            r = ctl("replicate", "--layer", "0", "--expert", "7", "--to", "experts-a")
            print(f"replicate beyond a budget: status {r.returncode}: {r.stderr.strip()}")
            if r.returncode == 0 or "memory budget holds 6 experts" not in r.stderr or replicas(0, 7) != ["experts-c"]:
                sys.exit("FAIL: a replica beyond experts-a's budget must be refused naming the budget")
            r = ctl("migrate", "--layer", "0", "--expert", "6", "--from", "experts-c", "--to", "experts-a")
            if r.returncode == 0 or "memory budget" not in r.stderr:
                sys.exit(f"FAIL: a migration into a full node must be refused: {r.stderr}")
            expect_identical(f"after the orders ({transport})",
                             h.run_generate(model, PROMPTS[0], cluster=c.path, name="after"), oracle)
    finally:
        del h.env["XMESH_FAULT_CORRUPT_WEIGHTS"]


def main():
    xmesh, repo, case = sys.argv[1], sys.argv[2], sys.argv[3]
    transport = sys.argv[4] if len(sys.argv) > 4 else "zmq"
    keep = os.environ.get("XMESH_TEST_DIR")  # keep models, logs and outputs there (debugging)
    with (tempfile.TemporaryDirectory() if not keep else open(os.devnull)) as tmp:
        tmp = keep or tmp
        os.makedirs(tmp, exist_ok=True)
        h = Harness(xmesh, repo, tmp)
        {"equivalence": case_equivalence, "concurrent": case_concurrent, "unreachable": case_unreachable,
         "failure": case_failure, "live": case_live,
         "failure-migrating": lambda h, t: case_failure(h, t, during_migrations=True),
         "failure-replicated": lambda h, t: case_failure(h, t, replicated=True),
         "orders": case_orders, "stall": case_stall, "restart": case_restart, "two-heads": case_two_heads,
         "drain-join": case_drain_join}[case](
            h, transport)
    print("PASS")


if __name__ == "__main__":
    main()
