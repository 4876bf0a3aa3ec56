#!/usr/bin/env bash
# Decode throughput of the 3-process loopback cluster (1 head + coordinator, 2 expert nodes)
# against the single-process run at the same total thread count, on the bench preset (bf16):
# `xmesh generate` without a cluster (every role in one process, through the same actors) and
# `xmesh bench decode` (the engine alone, no actors or frames).
# usage: bench/cluster/run.sh [ucx|zmq] [MODEL_DIR]   (prints JSON)   env: XMESH_BENCH_REPEAT (5)
# The cluster is authenticated (the default: TLS on the control plane, sealed data-plane frames);
# XMESH_BENCH_SECURITY=none runs it with `security: none`.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
transport=${1:-ucx}
model=${2:-$here/build/bench-model}
xmesh=${XMESH_BIN:-$here/build/tools/xmesh}
new_tokens=${XMESH_BENCH_TOKENS:-64}
export UCX_NET_DEVICES=${UCX_NET_DEVICES:-lo}
[[ -f "$model/config.json" ]] || "$xmesh" gen-model --family mixtral --preset bench --seed 1 --dtype bf16 --out "$model" >&2

prompt=$(seq -s, 11 74)  # 64 prompt tokens
run_dir=$(mktemp -d)
trap 'XMESH_RUN_DIR=$run_dir/run "$here/deploy/local.sh" down "$run_dir/cluster.yaml" >/dev/null 2>&1 || true; rm -rf "$run_dir"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
security=""
[[ ${XMESH_BENCH_SECURITY:-} == none ]] && security="security: none"
cat >"$run_dir/cluster.yaml" <<YAML
model: $model
transport: $transport
$security
nodes:
  - {name: head, control_port: $(port), data_port: $(port), roles: [coordinator, head], threads: 2}
  - {name: experts-a, control_port: $(port), data_port: $(port), roles: [experts], threads: 1}
  - {name: experts-b, control_port: $(port), data_port: $(port), roles: [experts], threads: 1}
YAML

generate() { "$xmesh" generate --model "$model" --tokens "$prompt" --max-new-tokens "$new_tokens" --ignore-eos --json "$@"; }
XMESH_RUN_DIR=$run_dir/run "$here/deploy/local.sh" up "$run_dir/cluster.yaml" >&2
generate --cluster "$run_dir/cluster.yaml" >/dev/null  # warm-up: connections, page cache
status() { "$xmesh" cluster status --cluster "$run_dir/cluster.yaml" --json; }
# These VMs drift by 2x within minutes, so the comparison is paired: each of REPEAT rounds runs
# the engine alone, the single process and the cluster back to back (rotating which goes first);
# the report gives the median of the rounds' ratios, and their range.
rounds=${XMESH_BENCH_REPEAT:-5}
: >"$run_dir/rounds"
engine() { "$xmesh" bench decode --model "$model" --threads 2 --new-tokens "$new_tokens" --json; }
before=$(status)
for ((r = 0; r < rounds; r++)); do
  case $((r % 3)) in
    0) single=$(generate --threads 2); cluster=$(generate --cluster "$run_dir/cluster.yaml"); alone=$(engine) ;;
    1) cluster=$(generate --cluster "$run_dir/cluster.yaml"); alone=$(engine); single=$(generate --threads 2) ;;
    2) alone=$(engine); single=$(generate --threads 2); cluster=$(generate --cluster "$run_dir/cluster.yaml") ;;
  esac
  echo "{\"single\": $single, \"cluster\": $cluster, \"engine\": $alone}" >>"$run_dir/rounds"
done
after=$(status)
python3 - "$run_dir/rounds" "$transport" "$before" "$after" <<'PY'
import json, statistics, sys
rounds = [json.loads(line) for line in open(sys.argv[1])]
transport = sys.argv[2]
before, after = json.loads(sys.argv[3])["nodes"], json.loads(sys.argv[4])["nodes"]
delta = lambda node, key: after[node][key] - before[node][key]
sent = delta("head", "frames_sent")
hosts = [n for n in after if n != "head"]
served = sum(delta(n, "frames_served") for n in hosts)
service = sum(delta(n, "service_seconds") for n in hosts) / served
frame_rtt = delta("head", "round_trip_seconds") / sent
# One dispatch frame's life, in microseconds: what the head does, what the expert node does
# (arrival to reply: queueing on its actors and the experts' compute), and the rest (transport,
# wake-ups and hand-offs on both sides).
split = {"head_encode_us": 1e6 * delta("head", "encode_seconds") / sent,
         "head_reply_us": 1e6 * delta("head", "decode_seconds") / sent,
         "expert_node_service_us": 1e6 * service,
         "expert_compute_us_summed_over_actors": 1e6 * sum(delta(n, "expert_seconds") for n in hosts) / served,
         "transport_and_handoffs_us": 1e6 * (frame_rtt - service),
         "frame_round_trip_us": 1e6 * frame_rtt}
for r in rounds:
    assert r["single"]["tokens"] == r["cluster"]["tokens"], "cluster output differs from the single-process run"
tps = lambda side: [r[side]["decode_tokens_per_s"] for r in rounds]
ratios = [c / s for c, s in zip(tps("cluster"), tps("single"))]
to_engine = lambda side: [x / e for x, e in zip(tps(side), tps("engine"))]
median = statistics.median
print(json.dumps({
    "benchmark": "cluster_decode", "transport": transport, "processes": 3, "rounds": len(rounds),
    "statistic": "median over rounds; *_range: [min, max] over rounds",
    "single_process_decode_tokens_per_s": median(tps("single")),
    "cluster_decode_tokens_per_s": median(tps("cluster")),
    "ratio": median(ratios),
    "ratio_range": [min(ratios), max(ratios)],
    "engine_only_decode_tokens_per_s": median(tps("engine")),
    "single_process_to_engine_only": median(to_engine("single")),
    "single_process_to_engine_only_range": [min(to_engine("single")), max(to_engine("single"))],
    "ratio_to_engine_only": median(to_engine("cluster")),
    "single_process_dispatch_round_trip_s": median(r["single"]["dispatch_round_trip_s"] for r in rounds),
    "cluster_dispatch_round_trip_s": median(r["cluster"]["dispatch_round_trip_s"] for r in rounds),
    "cluster_frame_split": split,
    "tokens_identical": True}))
PY
