#!/usr/bin/env python3
"""Load-aware rebalancing on a live 3-process loopback cluster (1 head + coordinator, 2 expert
nodes), bench shapes with skewed expert popularity. Prints one JSON object:
  - per-node expert time balancedness (mean/max) and decode tokens/s, before and after the
    automatic rebalance, in one run;
  - time and bytes per migrated expert (the hosts' load times; the operators' make-before-break
    migrate orders, wall time end to end);
  - decode tokens/s while operator migrations run back to back, against the same client churn
    without migrations (a `cluster placement` call in a loop: each order is a new process on the
    same 2 cores) and against no churn.
usage: bench/cluster/rebalance.py [ucx|zmq] [MODEL_DIR]
Every generated token sequence is compared with the first one (the same prompt): bit-identical.
"""
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

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


def port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


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


def node_stats():
    return json.loads(subprocess.run([xmesh, "cluster", "status", "--cluster", cluster, "--json"],
                                     capture_output=True, text=True, env=env).stdout)["nodes"]


def phase(label, seconds):
    """Generates for `seconds`; returns decode tok/s (median) and per-node expert-time balancedness."""
    before = node_stats()
    rates, end = [], time.time() + seconds
    while time.time() < end:
        rates.append(generate(prompts[len(rates) % len(prompts)]))
    after = node_stats()
    busy = [after[n]["expert_seconds"] - before[n]["expert_seconds"] for n in ("experts-a", "experts-b")]
    rates.sort()
    return {"decode_tokens_per_s": rates[len(rates) // 2], "requests": len(rates),
            "expert_seconds_per_node": busy,
            "balancedness": (sum(busy) / len(busy)) / max(busy) if max(busy) > 0 else 1.0}


def placement():
    return json.loads(run("cluster", "placement", "--cluster", cluster, "--json"))


result = {"benchmark": "cluster_rebalance", "transport": transport, "processes": 3, "model": model,
          "new_tokens": tokens}
subprocess.run([f"{repo}/deploy/local.sh", "up", cluster], env=run_env, check=True, stdout=subprocess.DEVNULL)
try:
    for p in prompts:
        generate(p)  # warm-up: connections, page cache; fixes the oracle of each prompt
    result["before"] = phase("before", 15)
    deadline = time.time() + 120
    while placement()["automatic_rebalances"] < 1 and time.time() < deadline:
        generate(prompts[0])
    p = placement()
    # Measured expert popularity (the coordinator's last window of routed tokens): the share of
    # the most popular, second, ... expert of each layer, averaged over layers, and the Zipf
    # exponent that fits ranks 1..16 (least squares on log share vs. log rank).
    experts = len(p["replicas"][0])
    layers = [sorted(p["tokens"][l * experts:(l + 1) * experts], reverse=True) for l in range(len(p["replicas"]))]
    layers = [l for l in layers if sum(l) > 0]
    shares = [sum(l[r] / sum(l) for l in layers) / len(layers) for r in range(experts)]
    import math
    pts = [(math.log(r + 1), math.log(shares[r])) for r in range(min(16, experts)) if shares[r] > 0]
    mx, my = sum(x for x, _ in pts) / len(pts), sum(y for _, y in pts) / len(pts)
    slope = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
    result["popularity"] = {"top8_shares": [round(x, 4) for x in shares[:8]],
                            "uniform_share": 1 / experts, "zipf_exponent_fit": -slope}
    result["automatic_rebalance"] = {"replications": p["replications"], "retirements": p["retirements"],
                                     "bytes_moved": p["bytes_moved"], "version": p["version"],
                                     "coordinator_balancedness_after": p["balancedness"]}
    result["after"] = phase("after", 15)
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

    def placement_once(i):  # the control: the same client churn, no migration
        subprocess.run([xmesh, "cluster", "placement", "--cluster", cluster, "--json"], capture_output=True, env=env)

    def while_looping(action):
        stop = threading.Event()

        def loop():
            i = 0
            while not stop.is_set():
                action(i)
                i += 1

        t = threading.Thread(target=loop)
        t.start()
        try:
            rates = sorted(generate(prompts[0]) for _ in range(3))
        finally:
            stop.set()
            t.join()
        return rates[1]

    quiet = while_looping(lambda i: time.sleep(0.05))
    control = while_looping(placement_once)
    during = while_looping(migrate_once)
    result["migration"] = {
        "loads": len(loads),
        "bytes_per_expert": (sum(b for b, _ in loads) / len(loads)) if loads else 0,
        "load_seconds_per_expert": (sum(s for _, s in loads) / len(loads)) if loads else 0,
        "orders_timed": len(order_times),
        "order_seconds_median": sorted(order_times)[len(order_times) // 2] if order_times else 0,
        "decode_tokens_per_s_quiet": quiet,
        "decode_tokens_per_s_client_churn": control,
        "decode_tokens_per_s_during_migrations": during,
        "ratio_during_to_churn": during / control,
        "ratio_during_to_quiet": during / quiet,
    }
    result["tokens_identical"] = True
finally:
    subprocess.run([f"{repo}/deploy/local.sh", "down", cluster], env=run_env, stdout=subprocess.DEVNULL)
print(json.dumps(result))
