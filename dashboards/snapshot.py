#!/usr/bin/env python3
"""Draws the main dashboard panels from a Prometheus that scraped an ExpertMesh cluster, as one
PNG for humans (the README shows one). Queries are the dashboards' own (dashboards/grafana).
usage: dashboards/snapshot.py PROMETHEUS_URL OUT.png [MINUTES]   (default: the last 5 minutes)"""
import json
import sys
import time
import urllib.parse
import urllib.request

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RATE = "30s"
PANELS = [  # (title, unit, [(query, legend label)])
    ("Generated tokens/s", "tokens/s", [("sum(rate(xmesh_generation_tokens_total[30s]))", "cluster")]),
    ("Time per output token", "s", [
        ("histogram_quantile(0.5, sum by (le) (rate(xmesh_time_per_output_token_seconds_bucket[30s])))", "p50"),
        ("histogram_quantile(0.99, sum by (le) (rate(xmesh_time_per_output_token_seconds_bucket[30s])))", "p99")]),
    ("Dispatch round trip p99 per peer", "s", [
        ("histogram_quantile(0.99, sum by (le, peer) (rate(xmesh_dispatch_round_trip_seconds_bucket[30s])))",
         "{peer}")]),
    ("Balancedness", "ideal / actual", [("max(xmesh_balancedness)", "balancedness")]),
    ("Placement version and rebalancing", "", [("max(xmesh_placement_version)", "version"),
                                               ("max(xmesh_rebalancing)", "rebalancing")]),
]


def get(url, path, params):
    with urllib.request.urlopen(f"{url}{path}?{urllib.parse.urlencode(params)}", timeout=30) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{path} {params}: {body}")
    return body["data"]["result"]


def main():
    url, out = sys.argv[1].rstrip("/"), sys.argv[2]
    minutes = float(sys.argv[3]) if len(sys.argv) > 3 else 5
    end = time.time()
    start = end - 60 * minutes
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5))
    for ax, (title, unit, queries) in zip(axes.flat, PANELS):
        for query, label in queries:
            for series in get(url, "/api/v1/query_range", {"query": query, "start": start, "end": end, "step": 2}):
                t = [float(v[0]) - end for v in series["values"]]
                y = [float(v[1]) for v in series["values"]]
                ax.plot(t, y, label=label.format(**series["metric"]))
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("seconds before the snapshot", fontsize=8)
        ax.set_ylabel(unit, fontsize=8)
        ax.tick_params(labelsize=7)
        if ax.lines:
            ax.legend(fontsize=7)
    # Expert load: tokens routed per (layer, expert) over the window, as a heatmap.
    ax = axes.flat[5]
    load = get(url, "/api/v1/query", {"query": f"sum by (layer, expert) (increase(xmesh_tokens_routed_total[{int(minutes)}m]))"})
    cells = {(int(s["metric"]["layer"]), s["metric"]["expert"]): float(s["value"][1]) for s in load}
    if cells:
        layers = sorted({l for l, _ in cells})
        experts = sorted({e for _, e in cells}, key=lambda e: (e == "all", int(e) if e.isdigit() else 0))
        grid = [[cells.get((l, e), 0.0) for e in experts] for l in layers]
        im = ax.imshow(grid, aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(experts)), experts, fontsize=7)
        ax.set_yticks(range(len(layers)), layers, fontsize=7)
        fig.colorbar(im, ax=ax)
    ax.set_title("Tokens routed per layer x expert", fontsize=10)
    ax.set_xlabel("expert", fontsize=8)
    ax.set_ylabel("layer", fontsize=8)
    fig.suptitle("ExpertMesh dashboards (snapshot)")
    fig.tight_layout()
    fig.savefig(out, dpi=80)


if __name__ == "__main__":
    main()
