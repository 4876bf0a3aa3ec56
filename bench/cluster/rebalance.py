#!/usr/bin/env python3
"""Load-aware rebalancing on a live 3-process loopback cluster (1 head + coordinator, 2 expert
nodes), bench shapes with skewed expert popularity. One stream of requests runs across the
automatic rebalance; prints one JSON object:
  - per-node expert time balancedness (mean/max) and decode tokens/s before and after it;
  - decode tokens/s of the requests that overlapped the rebalance, and how long it took;
  - the measured expert popularity;
  - time and bytes per migrated expert (the hosts' load times; operator migrate orders, each
    make-before-break, wall time end to end).
usage: bench/cluster/rebalance.py [ucx|zmq] [MODEL_DIR]
Every generated token sequence is compared with the first one (the same prompt): bit-identical.
"""
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

from bench_util import port

here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.dirname(os.path.dirname(here))
transport = sys.argv[1] if len(sys.argv) > 1 else "ucx"
model = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else f"{repo}/build/bench-skew")
xmesh = os.environ.get("XMESH_BIN", f"{repo}/build/tools/xmesh")
tokens = int(os.environ.get("XMESH_BENCH_TOKENS", "48"))
env = dict(os.environ, UCX_NET_DEVICES=os.environ.get("UCX_NET_DEVICES", "lo"))
if not os.path.exists(f"{model}/config.json"):
    subprocess.run([xmesh, "gen-model", "--family", "mixtral", "--preset", "bench", "--seed", "1", "--dtype",
                    "bf16", "--expert-skew", "1.0", "--out", model], check=True, stdout=subprocess.DEVNULL)



def run(*args, timeout=600):
    r = subprocess.run([xmesh, *args], capture_output=True, text=True, timeout=timeout, env=env)
    if r.returncode != 0:
        sys.exit(f"xmesh {' '.join(args[:2])} failed: {r.stderr}")
    return r.stdout


tmp = tempfile.mkdtemp()
cluster = f"{tmp}/cluster.yaml"
with open(cluster, "w") as f:
    f.write(f"""model: {model}
transport: {transport}
rebalance: {{period: 25s, window: 20s, min_gain: 0.02, hysteresis: 0.01}}
nodes:
  - {{name: head, control_port: {port()}, data_port: {port()}, roles: [coordinator, head], threads: 2}}
  - {{name: experts-a, control_port: {port()}, data_port: {port()}, roles: [experts], threads: 1}}
  - {{name: experts-b, control_port: {port()}, data_port: {port()}, roles: [experts], threads: 1}}
""")
run_env = dict(env, XMESH_RUN_DIR=f"{tmp}/run", XMESH_BIN=xmesh)
prompts = [",".join(str(11 + (i * 7 + j) % 500) for j in range(16)) for i in range(4)]
oracle = {}


def generate(prompt):
    out = json.loads(run("generate", "--model", model, "--cluster", cluster, "--tokens", prompt,
                         "--max-new-tokens", str(tokens), "--ignore-eos", "--json"))
    want = oracle.setdefault(prompt, out["tokens"])
    assert out["tokens"] == want, "output changed while the placement changed"
    return out["decode_tokens_per_s"]


def placement():
    return json.loads(run("cluster", "placement", "--cluster", cluster, "--json"))


result = {"benchmark": "cluster_rebalance", "transport": transport, "processes": 3, "model": model,
          "new_tokens": tokens}
subprocess.run([f"{repo}/deploy/local.sh", "up", cluster], env=run_env, check=True, stdout=subprocess.DEVNULL)
try:
    for p in prompts:
        generate(p)  # warm-up: connections, page cache; fixes the oracle of each prompt
    # One stream of requests runs across the automatic rebalance while a poller records the
    # placement version and the nodes' counters every 0.25 s, the same before, during and after.
    requests, polls, stop = [], [], threading.Event()

    def stream():
        i = 0
        while not stop.is_set():
            t0 = time.time()
            rate = generate(prompts[i % len(prompts)])
            requests.append((t0, time.time(), rate))
            i += 1

    def poll():
        while not stop.is_set():
            s = json.loads(subprocess.run([xmesh, "cluster", "status", "--cluster", cluster, "--json"],
                                          capture_output=True, text=True, env=env).stdout)
            polls.append((time.time(), s["placement_version"], s["nodes"]))
            time.sleep(0.25)

    workers = [threading.Thread(target=stream), threading.Thread(target=poll)]
    for w in workers:
        w.start()
    deadline = time.time() + 150
    try:
        while time.time() < deadline:  # until the placement moved, then stayed put for 15 s
            time.sleep(0.5)
            changed = [i for i in range(1, len(polls)) if polls[i][1] != polls[i - 1][1]]
            if changed and time.time() - polls[changed[-1]][0] > 15:
                break
    finally:
        stop.set()
        for w in workers:
            w.join()
    changed = [i for i in range(1, len(polls)) if polls[i][1] != polls[i - 1][1]]
    if not changed:
        sys.exit("the automatic rebalance moved nothing within 150 s")
    first, last = changed[0] - 1, changed[-1]
    window = (polls[first][0], polls[last][0])

    def span(a, b):
        busy = [polls[b][2][n]["expert_seconds"] - polls[a][2][n]["expert_seconds"] for n in ("experts-a", "experts-b")]
        return {"expert_seconds_per_node": busy,
                "balancedness": (sum(busy) / len(busy)) / max(busy) if max(busy) > 0 else 1.0}

    def median(xs):
        xs = sorted(xs)
        return xs[len(xs) // 2] if xs else None

    before = [r for s0, e, r in requests if e < window[0]]
    during = [r for s0, e, r in requests if s0 <= window[1] and e >= window[0]]
    after = [r for s0, e, r in requests if s0 > window[1]]
    result["before"] = dict(span(0, first), decode_tokens_per_s=median(before), requests=len(before))
    result["after"] = dict(span(last, len(polls) - 1), decode_tokens_per_s=median(after), requests=len(after))
    result["during"] = {"rebalance_seconds": window[1] - window[0], "requests": len(during),
                        "decode_tokens_per_s_median": median(during),
                        "decode_tokens_per_s_min": min(during) if during else None,
                        "ratio_to_before": (median(during) / median(before)) if during and before else None}
    p = placement()
    # Measured expert popularity (the coordinator's last window of routed tokens): the share of
    # the most popular, second, ... expert of each layer, averaged over layers, and the Zipf
    # exponent that fits ranks 1..16 (least squares on log share vs. log rank).
    experts = len(p["replicas"][0])
    layers = [sorted(p["tokens"][l * experts:(l + 1) * experts], reverse=True) for l in range(len(p["replicas"]))]
    layers = [l for l in layers if sum(l) > 0]
    shares = [sum(l[r] / sum(l) for l in layers) / len(layers) for r in range(experts)]
    pts = [(math.log(r + 1), math.log(shares[r])) for r in range(min(16, experts)) if shares[r] > 0]
    mx, my = sum(x for x, _ in pts) / len(pts), sum(y for _, y in pts) / len(pts)
    slope = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
    result["popularity"] = {"top8_shares": [round(x, 4) for x in shares[:8]],
                            "uniform_share": 1 / experts, "zipf_exponent_fit": -slope}
    result["automatic_rebalance"] = {"replications": p["replications"], "retirements": p["retirements"],
                                     "bytes_moved": p["bytes_moved"], "version": p["version"],
                                     "rebalances": p["rebalances"],
                                     "coordinator_balancedness_after": p["balancedness"]}
    # Migrations: the hosts' load times, and operator orders timed end to end.
    loads = []
    for n in ("experts-a", "experts-b"):
        for line in open(f"{tmp}/run/{n}.log"):
            m = re.search(r"loaded expert \d+ of layer \d+ from .* \((\d+) bytes, ([0-9.]+) s\)", line)
            if m:
                loads.append((int(m.group(1)), float(m.group(2))))
    table = placement()
    order_times = []

    def migrate_once(i):
        layer = i % len(table["replicas"])
        reps = table["replicas"][layer]
        e = next(j for j, r in enumerate(reps) if len(r) == 1)
        src = reps[e][0]
        dst = "experts-b" if src == "experts-a" else "experts-a"
        t0 = time.time()
        r = subprocess.run([xmesh, "cluster", "migrate", "--cluster", cluster, "--layer", str(layer),
                            "--expert", str(e), "--from", src, "--to", dst], capture_output=True, text=True, env=env)
        if r.returncode == 0:
            order_times.append(time.time() - t0)
            reps[e] = [dst]

    for i in range(12):  # operator orders, one after another, timed end to end
        migrate_once(i)
    result["migration"] = {
        "loads": len(loads),
        "bytes_per_expert": (sum(b for b, _ in loads) / len(loads)) if loads else 0,
        "load_seconds_per_expert": (sum(s for _, s in loads) / len(loads)) if loads else 0,
        "orders_timed": len(order_times),
        "order_seconds_median": sorted(order_times)[len(order_times) // 2] if order_times else 0,
    }
    result["tokens_identical"] = True
finally:
    subprocess.run([f"{repo}/deploy/local.sh", "down", cluster], env=run_env, stdout=subprocess.DEVNULL)
print(json.dumps(result))
