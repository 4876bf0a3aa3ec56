#!/usr/bin/env python3
"""Cost of the metrics: decode tokens/s of the same 3-process loopback cluster (1 head +
coordinator, 2 expert nodes, bench shapes) with every node exporting /metrics (and a scrape every
second, as Prometheus would) against none, in alternating rounds on one machine (it is noisy:
compare the ratio of medians). Both clusters run side by side; only one generates at a time.
usage: bench/cluster/metrics.py [zmq|ucx] [MODEL_DIR] [ROUNDS]   (prints JSON)"""
import json
import os
import statistics
import tempfile
import threading
import urllib.request

from bench_util import ab_args, alternate, port, three_nodes

transport, model, rounds, tokens = ab_args(5)


def main():
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
            stop.wait(1)

    thread = threading.Thread(target=scraper, daemon=True)

    def finishing():  # the scrapes end before the nodes go down
        stop.set()
        if thread.is_alive():
            thread.join()

    runs = alternate(clusters, model, rounds, tokens, tmp, started=thread.start, finishing=finishing)
    on_tps, off_tps = statistics.median(runs["on"]), statistics.median(runs["off"])
    print(json.dumps({
        "benchmark": "cluster_decode_metrics_cost", "transport": transport, "processes": 3,
        "model": os.path.basename(model), "new_tokens": tokens, "prompt_tokens": 64, "rounds": rounds,
        "metrics_on_decode_tokens_per_s": runs["on"], "metrics_off_decode_tokens_per_s": runs["off"],
        "median_on": on_tps, "median_off": off_tps, "on_over_off": on_tps / off_tps,
        "scrape_period_s": 1}, indent=1))


if __name__ == "__main__":
    main()
