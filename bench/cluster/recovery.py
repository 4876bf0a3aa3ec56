#!/usr/bin/env python3
"""Recovery after an expert node dies, measured from the requests' side on a live loopback
cluster (1 head + coordinator, 3 expert nodes, default heartbeat 250 ms / 1 s, spread placement:
every expert has one replica, so the killed node's experts are orphans until re-placed).

Clients generate continuously; every few seconds one expert node is killed (-9) and restarted
once the coordinator has declared it dead, or (mode `stop`) stopped with SIGSTOP and resumed
once declared dead: a stalled node fails no connection, so only the heartbeat timeout finds it.
Either way it rejoins after `rejoin: 1s` of steady beats. For
each request in flight at a kill, the recovery gap is the longest pause between two consecutive
tokens (the head reports when each token was picked); requests that overlapped no kill give the
baseline. Every output is compared with the single-process oracle. Prints one JSON object.

usage: bench/cluster/recovery.py [zmq|ucx] [KILLS] [kill|stop]   (KILLS default 20)
"""
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time

from bench_util import port

here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.dirname(os.path.dirname(here))
transport = sys.argv[1] if len(sys.argv) > 1 else "zmq"
kills_wanted = int(sys.argv[2]) if len(sys.argv) > 2 else 20
mode = sys.argv[3] if len(sys.argv) > 3 else "kill"
xmesh = os.environ.get("XMESH_BIN", f"{repo}/build/tools/xmesh")
tokens = 96
prompts = [[5, 99, 311, 42], [1, 2, 3], [400, 12, 12, 77, 300, 8], [9]]
experts = ["experts-a", "experts-b", "experts-c"]



def percentile(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main():
    tmp = tempfile.mkdtemp(prefix="xmesh-recovery-")
    model = f"{tmp}/model"
    subprocess.run([xmesh, "gen-model", "--family", "mixtral", "--preset", "small", "--seed", "3", "--out", model],
                   check=True, stdout=subprocess.DEVNULL)
    oracles = []
    for p in prompts:
        r = subprocess.run([xmesh, "generate", "--model", model, "--tokens", ",".join(map(str, p)),
                            "--max-new-tokens", str(tokens), "--ignore-eos", "--json"],
                           check=True, capture_output=True, text=True)
        oracles.append(json.loads(r.stdout)["tokens"])
    nodes = [f"  - {{name: head, control_port: {port()}, data_port: {port()}, roles: [coordinator, head], "
             "threads: 1}"]
    nodes += [f"  - {{name: {n}, control_port: {port()}, data_port: {port()}, roles: [experts]}}" for n in experts]
    path = f"{tmp}/cluster.yaml"
    with open(path, "w") as f:
        f.write("\n".join([f"model: {model}", f"transport: {transport}", "placement: spread",
                           "heartbeat: {period: 250ms, timeout: 1s, rejoin: 1s}", "nodes:"] + nodes) + "\n")
    env = dict(os.environ, XMESH_BIN=xmesh, XMESH_RUN_DIR=f"{tmp}/run", UCX_NET_DEVICES="lo")
    local = f"{repo}/deploy/local.sh"

    def placed_on(name):
        r = subprocess.run([xmesh, "cluster", "placement", "--cluster", path, "--json"], capture_output=True,
                           text=True, timeout=30)
        return any(name in r for layer in json.loads(r.stdout)["replicas"] for r in layer)

    def status():
        r = subprocess.run([xmesh, "cluster", "status", "--cluster", path, "--json"], capture_output=True, text=True,
                           timeout=30)
        return json.loads(r.stdout)

    subprocess.run([local, "up", path], env=env, check=True, capture_output=True, timeout=120)
    stop = threading.Event()
    requests = []  # (start, end, ok, same_as_oracle, gaps)
    lock = threading.Lock()

    def client(i):
        while not stop.is_set():
            start = time.time()
            r = subprocess.run([xmesh, "generate", "--model", model, "--cluster", path, "--tokens",
                                ",".join(map(str, prompts[i])), "--max-new-tokens", str(tokens), "--ignore-eos",
                                "--json"], capture_output=True, text=True, timeout=300)
            end = time.time()
            ok = r.returncode == 0
            j = json.loads(r.stdout) if ok else {}
            t = j.get("token_seconds", [])
            gaps = [b - a for a, b in zip(t, t[1:])]
            with lock:
                requests.append((start, end, ok, ok and j["tokens"] == oracles[i], max(gaps, default=0),
                                 r.stderr.strip()))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    kills, detect = [], []
    rng = random.Random(7)
    try:
        time.sleep(2.0)
        for k in range(kills_wanted):
            victim = rng.choice(experts)
            pid = int(open(f"{tmp}/run/{victim}.pid").read())
            at = time.time()
            os.kill(pid, 9 if mode == "kill" else 19)
            kills.append(at)
            while placed_on(victim):  # the coordinator declares it dead: its replicas leave the table
                time.sleep(0.02)
            detect.append(time.time() - at)
            if mode == "kill":
                subprocess.run([local, "up", path], env=env, check=True, capture_output=True, timeout=120)
            else:
                os.kill(pid, 18)
            deadline = time.time() + 60
            while time.time() < deadline and (status()["rejoins"] < k + 1):
                time.sleep(0.2)
            time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=300)
        subprocess.run([local, "down", path], env=env, capture_output=True, timeout=60)
    hit = [r for r in requests if any(r[0] <= k <= r[1] for k in kills)]
    calm = [r for r in requests if not any(r[0] - 1 <= k <= r[1] + 1 for k in kills)]
    gaps = [r[4] for r in hit if r[2]]
    base = [r[4] for r in calm if r[2]]
    out = {
        "transport": transport,
        "failure": "kill -9" if mode == "kill" else "SIGSTOP, SIGCONT once declared dead",
        "model": "mixtral small preset (4 layers, 16 experts, top-4)",
        "cluster": "1 head + 3 expert nodes, spread placement (one replica each), loopback",
        "heartbeat": {"period_s": 0.25, "timeout_s": 1.0, "rejoin_s": 1.0},
        "kills": len(kills),
        "requests": len(requests),
        "requests_at_a_kill": len(hit),
        "failed": sum(not r[2] for r in requests),
        "changed_outputs": sum(r[2] and not r[3] for r in requests),
        "recovery_gap_s": {"p50": percentile(gaps, 0.5), "p99": percentile(gaps, 0.99), "max": max(gaps, default=None)},
        "baseline_longest_gap_s": {"p50": percentile(base, 0.5), "p99": percentile(base, 0.99)},
        "declared_dead_after_s": {"p50": percentile(detect, 0.5), "max": max(detect, default=None)},
        "errors": sorted({r[5] for r in requests if not r[2]})[:3],
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
