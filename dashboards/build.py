#!/usr/bin/env python3
"""Writes the Grafana dashboards (dashboards/grafana/*.json) from the panel lists below: the one
place to edit them. Every dashboard has a Prometheus datasource variable and `node` / `layer`
variables; every query names only metrics of the catalogue (actors/metrics.cpp), which
tests/observability checks. usage: dashboards/build.py"""
import json
import os

DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
N = 'node=~"$node"'


def q(p, metric, by="le", extra=""):
    sel = f"{{{N}{extra}}}"
    return f"histogram_quantile({p}, sum by ({by}) (rate({metric}_bucket{sel}[{RATE}])))"


# (title, type, unit, [(expr, legend)])
DASHBOARDS = {
    "xmesh-overview": ("ExpertMesh: cluster overview", [
        ("Generated tokens/s", "timeseries", "short",
         [(f"sum by (node) (rate(xmesh_generation_tokens_total{{{N}}}[{RATE}]))", "{{node}}")]),
        ("Time to first token", "timeseries", "s",
         [(q(0.5, "xmesh_time_to_first_token_seconds"), "p50"),
          (q(0.99, "xmesh_time_to_first_token_seconds"), "p99")]),
        ("Time per output token", "timeseries", "s",
         [(q(0.5, "xmesh_time_per_output_token_seconds"), "p50"),
          (q(0.99, "xmesh_time_per_output_token_seconds"), "p99")]),
        ("End-to-end request latency", "timeseries", "s",
         [(q(0.5, "xmesh_e2e_request_latency_seconds"), "p50"),
          (q(0.99, "xmesh_e2e_request_latency_seconds"), "p99")]),
        ("Requests", "timeseries", "reqps",
         [(f"sum(rate(xmesh_requests_total{{{N}}}[{RATE}]))", "completed/s"),
          (f"sum by (reason) (rate(xmesh_requests_failed_total{{{N}}}[{RATE}]))", "failed/s {{reason}}"),
          (f"sum(xmesh_requests_running{{{N}}})", "running")]),
        ("Nodes up", "stat", "short", [("max(xmesh_nodes_up)", "nodes up")]),
        ("Placement version", "timeseries", "short",
         [(f"max by (node) (xmesh_placement_version{{{N}}})", "{{node}}")]),
        ("Rebalancing", "timeseries", "short", [("max(xmesh_rebalancing)", "rebalancing")]),
    ]),
    "xmesh-experts": ("ExpertMesh: experts", [
        ("Expert load (tokens/s per layer x expert)", "heatmap", "short",
         [(f'sum by (layer, expert) (rate(xmesh_tokens_routed_total{{{N}, layer=~"$layer"}}[{RATE}]))',
           "{{layer}}/{{expert}}")]),
        ("Replicas per expert", "timeseries", "short",
         [('max by (layer, expert) (xmesh_expert_replicas{layer=~"$layer"})', "{{layer}}/{{expert}}")]),
        ("Balancedness (ideal / actual expert time)", "timeseries", "percentunit",
         [("max(xmesh_balancedness)", "balancedness")]),
        ("Placement changes", "timeseries", "short",
         [(f"sum by (kind, outcome) (increase(xmesh_placement_orders_total[{RATE}]))", "{{kind}} {{outcome}}")]),
        ("Weights moved", "timeseries", "Bps", [(f"sum(rate(xmesh_bytes_moved_total[{RATE}]))", "bytes/s")]),
        ("Expert memory per node", "timeseries", "bytes",
         [(f"xmesh_expert_memory_bytes{{{N}}}", "{{node}} used"),
          (f"xmesh_expert_memory_budget_bytes{{{N}}}", "{{node}} budget")]),
        ("Expert batch compute time", "timeseries", "s",
         [(q(0.5, "xmesh_expert_compute_seconds", "le, node"), "{{node}} p50"),
          (q(0.99, "xmesh_expert_compute_seconds", "le, node"), "{{node}} p99")]),
        ("Rows computed by expert nodes", "timeseries", "short",
         [(f"sum by (node) (rate(xmesh_expert_rows_total{{{N}}}[{RATE}]))", "{{node}}")]),
        ("Expert stores: hits, misses, misses on the head, rows in q4, bytes from peers", "timeseries", "short",
         [(f"sum by (node) (rate(xmesh_store_hits_total{{{N}}}[{RATE}])) or vector(0)", "{{node}} hits/s"),
          (f"sum by (node) (rate(xmesh_store_misses_total{{{N}}}[{RATE}])) or vector(0)", "{{node}} misses/s"),
          (f"sum by (node) (rate(xmesh_store_misses_on_head_total{{{N}}}[{RATE}]))",
           "{{node}} computed on the head/s"),
          (f"sum by (node) (rate(xmesh_store_fallback_rows_total{{{N}}}[{RATE}])) or vector(0)",
           "{{node}} rows in q4 (fallback)/s"),
          (f"sum by (node) (rate(xmesh_store_peer_bytes_total{{{N}}}[{RATE}])) or vector(0)",
           "{{node}} bytes from a peer/s")]),
    ]),
    "xmesh-transport": ("ExpertMesh: transport", [
        ("Dispatch round trip per peer", "timeseries", "s",
         [(q(0.5, "xmesh_dispatch_round_trip_seconds", "le, peer, transport"), "{{peer}} p50 ({{transport}})"),
          (q(0.99, "xmesh_dispatch_round_trip_seconds", "le, peer, transport"), "{{peer}} p99 ({{transport}})")]),
        ("Bytes/s per peer", "timeseries", "Bps",
         [(f"sum by (peer) (rate(xmesh_bytes_sent_total{{{N}}}[{RATE}]))", "sent to {{peer}}"),
          (f"sum by (peer) (rate(xmesh_bytes_received_total{{{N}}}[{RATE}]))", "received from {{peer}}")]),
        ("Frames/s per peer", "timeseries", "short",
         [(f"sum by (peer) (rate(xmesh_frames_sent_total{{{N}}}[{RATE}]))", "sent to {{peer}}"),
          (f"sum by (node) (rate(xmesh_frames_served_total{{{N}}}[{RATE}]))", "served by {{node}}")]),
        ("Rows per frame", "timeseries", "short",
         [(q(0.5, "xmesh_frame_rows"), "p50"), (q(0.99, "xmesh_frame_rows"), "p99")]),
        ("Frames dropped by reason", "timeseries", "short",
         [(f"sum by (reason) (rate(xmesh_frames_dropped_total{{{N}}}[{RATE}]))", "{{reason}}")]),
        ("Rows re-sent by reason", "timeseries", "short",
         [(f"sum by (reason) (rate(xmesh_rows_resent_total{{{N}}}[{RATE}]))", "{{reason}}")]),
        ("Control connections by outcome", "timeseries", "short",
         [(f"sum by (outcome) (rate(xmesh_control_connections_total{{{N}}}[{RATE}]))", "{{outcome}}"),
          (f"sum(rate(xmesh_control_accept_backoffs_total{{{N}}}[{RATE}]))", "accept paused (no descriptors)")]),
        ("Data-plane connections by outcome", "timeseries", "short",
         [(f"sum by (outcome) (rate(xmesh_data_connections_total{{{N}}}[{RATE}]))", "{{outcome}}"),
          (f"sum(xmesh_data_connections{{{N}}})", "open")]),
    ]),
    "xmesh-failures": ("ExpertMesh: failures", [
        ("Nodes up", "timeseries", "short", [("max(xmesh_nodes_up)", "nodes up")]),
        ("Heartbeat age per node", "timeseries", "s", [("max by (peer) (xmesh_heartbeat_age_seconds)", "{{peer}}")]),
        ("Nodes declared dead and rejoined", "timeseries", "short",
         [(f"sum(increase(xmesh_failovers_total[{RATE}]))", "declared dead"),
          (f"sum(increase(xmesh_rejoins_total[{RATE}]))", "rejoined")]),
        ("Experts without a replica", "stat", "short",
         [("count(xmesh_expert_replicas == 0) or vector(0)", "experts")]),
        ("Requests failed by reason", "timeseries", "short",
         [(f"sum by (reason) (increase(xmesh_requests_failed_total{{{N}}}[{RATE}]))", "{{reason}}")]),
        ("Rows re-sent or computed on the head", "timeseries", "short",
         [(f"sum by (reason) (increase(xmesh_rows_resent_total{{{N}}}[{RATE}]))", "{{reason}}")]),
        ("Failed placement changes", "timeseries", "short",
         [(f'sum by (kind) (increase(xmesh_placement_orders_total{{outcome="failed"}}[{RATE}]))', "{{kind}}")]),
    ]),
}


def variables():
    return {"list": [
        {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0},
        {"name": "node", "label": "node", "type": "query", "datasource": DS,
         "query": {"query": "label_values(xmesh_placement_version, node)", "refId": "node"},
         "definition": "label_values(xmesh_placement_version, node)", "refresh": 2,
         "multi": True, "includeAll": True, "allValue": ".*", "current": {}, "hide": 0},
        {"name": "layer", "label": "layer", "type": "query", "datasource": DS,
         "query": {"query": "label_values(xmesh_tokens_routed_total, layer)", "refId": "layer"},
         "definition": "label_values(xmesh_tokens_routed_total, layer)", "refresh": 2,
         "multi": True, "includeAll": True, "allValue": ".*", "current": {}, "hide": 0},
    ]}


def dashboard(uid, title, panels):
    out = []
    for i, (name, kind, unit, targets) in enumerate(panels):
        out.append({
            "id": i + 1, "title": name, "type": kind, "datasource": DS,
            "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {} if kind != "heatmap" else {"calculate": False, "yAxis": {"unit": unit}},
            "targets": [{"refId": chr(ord("A") + j), "datasource": DS, "expr": expr, "legendFormat": legend}
                        for j, (expr, legend) in enumerate(targets)],
        })
    return {"uid": uid, "title": title, "tags": ["expertmesh"], "timezone": "browser", "schemaVersion": 38,
            "version": 1, "refresh": "10s", "time": {"from": "now-15m", "to": "now"},
            "templating": variables(), "annotations": {"list": []}, "panels": out}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    for uid, (title, panels) in DASHBOARDS.items():
        with open(f"{here}/grafana/{uid}.json", "w") as f:
            json.dump(dashboard(uid, title, panels), f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
