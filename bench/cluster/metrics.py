#!/usr/bin/env python3
"""Cost of the metrics: decode tokens/s of the same 3-process loopback cluster (1 head +
coordinator, 2 expert nodes, bench shapes) with every node exporting /metrics (and a scrape every
second, as Prometheus would) against none, in alternating rounds on one machine (it is noisy:
compare the ratio of medians). Both clusters run side by side; only one generates at a time.
usage: bench/cluster/metrics.py [zmq|ucx] [MODEL_DIR] [ROUNDS]   (prints JSON)"""
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request

from bench_util import alternate, bench_model, port, repo, three_nodes

transport = sys.argv[1] if len(sys.argv) > 1 else "zmq"
model = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else f"{repo}/build/bench-model")
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
tokens = int(os.environ.get("XMESH_BENCH_TOKENS", "48"))


def main():
    bench_model(model)
    tmp = tempfile.mkdtemp(prefix="xmesh-metrics-bench-")
    scrape = []

    def metrics_port():
        scrape.append(port())
        return f", metrics_port: {scrape[-1]}"

    clusters = {"on": three_nodes(tmp, "on", model, transport, node_extra=metrics_port),
                "off": three_nodes(tmp, "off", model, transport)}
    stop = threading.Event()

    def scraper():  # what Prometheus does: every node, every second
        while not stop.is_set():
            for p in scrape:
                with urllib.request.urlopen(f"http://127.0.0.1:{p}/metrics", timeout=5) as r:
                    r.read()
            time.sleep(1)

    try:
        runs = alternate(clusters, model, rounds, tokens, tmp,
                         started=lambda: threading.Thread(target=scraper, daemon=True).start())
    finally:
        stop.set()
    on_tps, off_tps = statistics.median(runs["on"]), statistics.median(runs["off"])
    print(json.dumps({
        "benchmark": "cluster_decode_metrics_cost", "transport": transport, "processes": 3,
        "model": os.path.basename(model), "new_tokens": tokens, "prompt_tokens": 64, "rounds": rounds,
        "metrics_on_decode_tokens_per_s": runs["on"], "metrics_off_decode_tokens_per_s": runs["off"],
        "median_on": on_tps, "median_off": off_tps, "on_over_off": on_tps / off_tps,
        "scrape_period_s": 1}, indent=1))


if __name__ == "__main__":
    main()
