#!/usr/bin/env python3
"""Cost of the metrics: decode tokens/s of the same 3-process loopback cluster (1 head +
coordinator, 2 expert nodes, bench shapes) with every node exporting /metrics (and a scrape every
second, as Prometheus would) against none, in alternating rounds on one machine (it is noisy:
compare the ratio of medians). Both clusters run side by side; only one generates at a time.
usage: bench/cluster/metrics.py [zmq|ucx] [MODEL_DIR] [ROUNDS]   (prints JSON)"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from bench_util import port

here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.dirname(os.path.dirname(here))
transport = sys.argv[1] if len(sys.argv) > 1 else "zmq"
model = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else f"{repo}/build/bench-model")
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
xmesh = os.environ.get("XMESH_BIN", f"{repo}/build/tools/xmesh")
tokens = os.environ.get("XMESH_BENCH_TOKENS", "48")
prompt = ",".join(str(i) for i in range(11, 75))
if not os.path.exists(f"{model}/config.json"):
    subprocess.run([xmesh, "gen-model", "--family", "mixtral", "--preset", "bench", "--seed", "1", "--dtype", "bf16",
                    "--out", model], check=True, stdout=subprocess.DEVNULL)



def cluster(tmp, name, metrics):
    lines = [f"model: {model}", f"transport: {transport}", "nodes:"]
    scrape = []
    for node, roles, threads in [("head", "[coordinator, head]", 2), ("experts-a", "[experts]", 1),
                                 ("experts-b", "[experts]", 1)]:
        extra = ""
        if metrics:
            m = port()
            scrape.append(m)
            extra = f", metrics_port: {m}"
        lines.append(f"  - {{name: {node}, control_port: {port()}, data_port: {port()}{extra}, roles: {roles}, "
                     f"threads: {threads}}}")
    path = f"{tmp}/{name}.yaml"
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path, scrape


def main():
    tmp = tempfile.mkdtemp(prefix="xmesh-metrics-bench-")
    env = dict(os.environ, XMESH_BIN=xmesh, UCX_NET_DEVICES=os.environ.get("UCX_NET_DEVICES", "lo"))
    on, scrape = cluster(tmp, "on", True)
    off, _ = cluster(tmp, "off", False)
    local = f"{repo}/deploy/local.sh"
    stop = threading.Event()

    def scraper():  # what Prometheus does: every node, every second
        while not stop.is_set():
            for p in scrape:
                with urllib.request.urlopen(f"http://127.0.0.1:{p}/metrics", timeout=5) as r:
                    r.read()
            time.sleep(1)

    runs = {"on": [], "off": []}
    try:
        for path, name in [(on, "on"), (off, "off")]:
            subprocess.run([local, "up", path], env=dict(env, XMESH_RUN_DIR=f"{tmp}/run-{name}"), check=True,
                           capture_output=True, timeout=300)
        threading.Thread(target=scraper, daemon=True).start()
        outputs = {}
        for r in range(rounds + 1):  # round 0 warms both up (connections, page cache)
            for name, path in ([("on", on), ("off", off)] if r % 2 else [("off", off), ("on", on)]):
                out = subprocess.run([xmesh, "generate", "--model", model, "--cluster", path, "--tokens", prompt,
                                      "--max-new-tokens", tokens, "--ignore-eos", "--json"], env=env, check=True,
                                     capture_output=True, text=True, timeout=600)
                j = json.loads(out.stdout)
                outputs.setdefault(name, j["tokens"])
                if r > 0:
                    runs[name].append(j["decode_tokens_per_s"])
    finally:
        stop.set()
        for path, name in [(on, "on"), (off, "off")]:
            subprocess.run([local, "down", path], env=dict(env, XMESH_RUN_DIR=f"{tmp}/run-{name}"),
                           capture_output=True, timeout=60)
    assert outputs["on"] == outputs["off"], "metrics changed the output"
    on_tps, off_tps = statistics.median(runs["on"]), statistics.median(runs["off"])
    print(json.dumps({
        "benchmark": "cluster_decode_metrics_cost", "transport": transport, "processes": 3,
        "model": os.path.basename(model), "new_tokens": int(tokens), "prompt_tokens": 64, "rounds": rounds,
        "metrics_on_decode_tokens_per_s": runs["on"], "metrics_off_decode_tokens_per_s": runs["off"],
        "median_on": on_tps, "median_off": off_tps, "on_over_off": on_tps / off_tps,
        "scrape_period_s": 1}, indent=1))


if __name__ == "__main__":
    main()
