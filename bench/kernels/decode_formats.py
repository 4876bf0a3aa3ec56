#!/usr/bin/env python3
"""Decode and prefill of the same bench-shaped weights in every format, side by side: bf16, f16,
q8, q4 (and fp8), alternating rounds so machine noise spreads evenly; medians as JSON.

    decode_formats.py XMESH [--dir build] [--rounds 3] [--threads 2] [--formats bf16,f16,q8,q4]

Models are written once into DIR/bench-{format} (bf16 and f16 by gen-model --preset bench --seed
1, the others by xmesh quantize of the bf16 one)."""
import argparse
import json
import os
import statistics
import subprocess


def ensure_model(xmesh, root, fmt):
    path = os.path.abspath(os.path.join(root, f"bench-{fmt}"))
    if os.path.exists(os.path.join(path, "config.json")):
        return path
    if fmt in ("bf16", "f16"):
        cmd = [xmesh, "gen-model", "--family", "mixtral", "--preset", "bench", "--seed", "1", "--dtype", fmt,
               "--out", path]
    else:
        cmd = [xmesh, "quantize", "--model", ensure_model(xmesh, root, "bf16"), "--out", path, "--dtype", fmt]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return path


def bench(xmesh, model, threads, prompt):
    out = subprocess.run([xmesh, "bench", "decode", "--model", model, "--threads", str(threads),
                          "--prompt-tokens", str(prompt), "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("xmesh")
    ap.add_argument("--dir", default="build")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--formats", default="bf16,f16,q8,q4")
    a = ap.parse_args()
    formats = a.formats.split(",")
    models = {f: ensure_model(a.xmesh, a.dir, f) for f in formats}
    runs = {f: [] for f in formats}
    for _ in range(a.rounds):
        for f in formats:
            short, long_ = bench(a.xmesh, models[f], a.threads, 64), bench(a.xmesh, models[f], a.threads, 512)
            runs[f].append((short, long_))
    report = {"benchmark": "decode_formats", "threads": a.threads, "rounds": a.rounds,
              "isa": runs[formats[0]][0][0]["isa"], "formats": {}}
    for f in formats:
        med = lambda key, i=0: statistics.median(r[i][key] for r in runs[f])  # noqa: E731
        report["formats"][f] = {
            "decode_tokens_per_s": med("decode_tokens_per_s"),
            "prefill_64_tokens_per_s": med("prefill_tokens_per_s"),
            "prefill_512_tokens_per_s": med("prefill_tokens_per_s", 1),
            "weight_bytes": runs[f][0][0]["weight_bytes"],
            "weight_bytes_read_per_token": runs[f][0][0]["weight_bytes_read_per_token"],
            "plain_memory_read_bandwidth_bytes_per_s": med("plain_memory_read_bandwidth_bytes_per_s"),
            "fraction_of_plain_read_bandwidth": statistics.median(
                r[0]["decode_tokens_per_s"] * r[0]["weight_bytes_read_per_token"]
                / r[0]["plain_memory_read_bandwidth_bytes_per_s"] for r in runs[f]),
            "peak_rss_over_weights": max(r[0]["peak_rss_over_weights"] for r in runs[f]),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
