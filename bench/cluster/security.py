#!/usr/bin/env python3
"""Cost of authentication: decode tokens/s of the same 3-process loopback cluster (1 head +
coordinator, 2 expert nodes, bench shapes) authenticated (the default: mutual TLS on the control
plane, every data-plane frame sealed) against `security: none`, in alternating rounds on one
machine (it is noisy: compare the ratio of medians). Both clusters run side by side; only one
generates at a time. Target: within 5 %.
usage: bench/cluster/security.py [zmq|ucx] [MODEL_DIR] [ROUNDS]   (prints JSON)"""
import json
import os
import statistics
import tempfile

from bench_util import ab_args, alternate, three_nodes

transport, model, rounds, tokens = ab_args(10)


def main():
    tmp = tempfile.mkdtemp(prefix="xmesh-security-bench-")
    clusters = {"authenticated": three_nodes(tmp, "authenticated", model, transport),
                "none": three_nodes(tmp, "none", model, transport, header="security: none")}
    runs = alternate(clusters, model, rounds, tokens, tmp)
    on, off = statistics.median(runs["authenticated"]), statistics.median(runs["none"])
    print(json.dumps({
        "benchmark": "cluster_decode_security_cost", "transport": transport, "processes": 3,
        "model": os.path.basename(model), "new_tokens": tokens, "prompt_tokens": 64, "rounds": rounds,
        "authenticated_decode_tokens_per_s": runs["authenticated"], "none_decode_tokens_per_s": runs["none"],
        "median_authenticated": on, "median_none": off, "authenticated_over_none": on / off}, indent=1))


if __name__ == "__main__":
    main()
