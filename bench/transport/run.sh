#!/usr/bin/env bash
# Transport benchmark: `xmesh bench transport` (ucx, zmq) against the raw baselines, in the same
# run and the same environment (UCX_TLS=tcp UCX_NET_DEVICES=lo, loopback), printing one JSON
# object with our numbers, the raw numbers and the ratios.
#   bench/transport/run.sh [BUILD_DIR]     env: SIZES ITERATIONS WINDOW REPEAT
# Raw UCX: ucx_perftest ucp_am_lat (one-way = half the round trip, doubled here) and ucp_am_bw
# (MiB/s, converted to MB/s), plain and with the features ours uses. Raw ZeroMQ: bench/transport/zmq_echo.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=${1:-${XMESH_BUILD_DIR:-$here/../../build}}
xmesh=$build/tools/xmesh
echo_bin=$build/bench/transport/xmesh_zmq_echo
sizes=${SIZES:-4096,65536,1048576}
iterations=${ITERATIONS:-2000}
window=${WINDOW:-8}
for f in "$xmesh" "$echo_bin"; do
  [[ -x $f ]] || { echo "missing $f (build targets xmesh and xmesh_zmq_echo)" >&2; exit 2; }
done
command -v ucx_perftest >/dev/null || { echo "ucx_perftest not found (package ucx-utils)" >&2; exit 2; }

export UCX_TLS=tcp UCX_NET_DEVICES=lo
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Raw UCX: one ucx_perftest server per test (it exits after one).
perftest() {  # TEST SIZE N [FLAGS...] -> the "Final:" line
  local port t=$1 size=$2 n=$3
  shift 3
  port=$(free_port)
  ucx_perftest -p "$port" >/dev/null 2>&1 & local srv=$!
  pids+=("$srv")
  sleep 0.3
  timeout 120 ucx_perftest 127.0.0.1 -p "$port" -t "$t" -s "$size" -n "$n" "$@" 2>/dev/null | grep '^Final:' || echo "Final: 0 0 0 0 0 0 0 0"
  wait "$srv" 2>/dev/null || true
}

repeat=${REPEAT:-3}
for round in $(seq 1 "$repeat"); do
  # Ours.
  timeout 300 "$xmesh" bench transport --transport ucx --sizes "$sizes" --iterations "$iterations" \
    --window "$window" --json >"$work/ours_ucx.$round.json"
  timeout 300 "$xmesh" bench transport --transport zmq --sizes "$sizes" --iterations "$iterations" \
    --window "$window" --json >"$work/ours_zmq.$round.json"

  # Raw ZeroMQ echo, same sizes (the frame sizes ours actually sent).
  frame_sizes=$(python3 -c 'import json,sys; print(",".join(str(r["frame_bytes"]) for r in json.load(open(sys.argv[1]))["results"]))' "$work/ours_zmq.$round.json")
  port=$(free_port)
  "$echo_bin" serve "tcp://127.0.0.1:$port" & pids+=($!)
  sleep 0.3
  timeout 300 "$echo_bin" client "tcp://127.0.0.1:$port" "$frame_sizes" "$iterations" "$window" >"$work/raw_zmq.$round.json"

  : >"$work/raw_ucx.$round.txt"
  IFS=, read -ra fs <<<"$frame_sizes"
  for s in "${fs[@]}"; do
    n=$iterations
    (( s >= 1048576 )) && n=$(( iterations / 4 > 10 ? iterations / 4 : 10 ))
    # Plain, then with the UCX features ours needs (-e: peer error handling, so a dead peer
    # fails requests instead of hanging; it changes the rendezvous protocol over TCP. -I: the
    # wakeup feature; it also prints the protocol chosen), then that in UCX's own wakeup mode (worker_wait between messages).
    for t in ucp_am_lat ucp_am_bw; do
      echo "$s $t $(perftest "$t" "$s" "$n")" >>"$work/raw_ucx.$round.txt"
      echo "$s ${t}_features $(perftest "$t" "$s" "$n" -e -I)" >>"$work/raw_ucx.$round.txt"
    done
    echo "$s ucp_am_lat_sleep $(perftest ucp_am_lat "$s" "$n" -e -I -E sleep)" >>"$work/raw_ucx.$round.txt"
  done
  kill "${pids[@]}" 2>/dev/null || true
  pids=()
done

python3 - "$work" "$repeat" <<'PY'
import json, statistics, sys
w, rounds = sys.argv[1], range(1, int(sys.argv[2]) + 1)
def median_rows(rows_per_round, key):
    # rows_per_round: one list of result dicts per round -> one dict of per-key medians by `key`
    out = {}
    for rows in rows_per_round:
        for r in rows:
            for k, v in r.items():
                out.setdefault(r[key], {}).setdefault(k, []).append(v)
    return {s: {k: statistics.median(v) if isinstance(v[0], (int, float)) else v[0]
                for k, v in d.items()} for s, d in out.items()}
first = json.load(open(f"{w}/ours_ucx.1.json"))
ours_ucx = {"machine": first["machine"], "results": list(median_rows(
    [json.load(open(f"{w}/ours_ucx.{i}.json"))["results"] for i in rounds], "size").values())}
ours_zmq = {"results": list(median_rows(
    [json.load(open(f"{w}/ours_zmq.{i}.json"))["results"] for i in rounds], "size").values())}
raw_zmq = median_rows([json.load(open(f"{w}/raw_zmq.{i}.json")) for i in rounds], "size")
raw_ucx = {}
for i in rounds:
    for line in open(f"{w}/raw_ucx.{i}.txt"):
        f = line.split()
        # cols: iters p50 avg overall bw_avg bw_overall msgrate_avg msgrate_overall (-I appends
        # a description of the protocol after them)
        size, test, cols = int(f[0]), f[1], f[3:11]
        raw_ucx.setdefault(size, {}).setdefault(test, []).append([float(c) for c in cols])
raw_ucx = {s: {t: [statistics.median(col) for col in zip(*runs)] for t, runs in d.items()}
           for s, d in raw_ucx.items()}
def ratio(a, b):
    return round(a / b, 3) if b else None
out = {"machine": ours_ucx["machine"], "env": "UCX_TLS=tcp UCX_NET_DEVICES=lo, loopback",
       "rounds": len(rounds), "statistic": "median over rounds of each number",
       "ucx": [], "zmq": []}
for r in ours_ucx["results"]:
    raw = raw_ucx.get(r["frame_bytes"], {})
    rtt = lambda t: 2 * float(raw.get(t, [0, 0])[1])                 # one-way p50 -> round trip
    bw = lambda t: float(raw.get(t, [0] * 5)[4]) * 1.048576          # MiB/s -> MB/s
    am_rtt, feat_rtt, sleep_rtt = rtt("ucp_am_lat"), rtt("ucp_am_lat_features"), rtt("ucp_am_lat_sleep")
    am_bw, feat_bw = bw("ucp_am_bw"), bw("ucp_am_bw_features")
    out["ucx"].append({
        "size": r["size"], "frame_bytes": r["frame_bytes"],
        "ours_rtt_p50_us": round(r["rtt_p50_us"], 2), "ours_rtt_p99_us": round(r["rtt_p99_us"], 2),
        "ours_throughput_mbps": round(r["throughput_mbps"], 1),
        "ours_one_way_throughput_mbps": round(r["one_way_throughput_mbps"], 1),
        "raw_am_rtt_p50_us": am_rtt, "raw_am_rtt_p50_us_same_features": feat_rtt,
        "raw_am_rtt_p50_us_wakeup_mode": sleep_rtt,
        "raw_am_bw_mbps": round(am_bw, 1), "raw_am_bw_mbps_same_features": round(feat_bw, 1),
        "rtt_ratio_vs_am": ratio(r["rtt_p50_us"], am_rtt),
        "rtt_ratio_vs_am_same_features": ratio(r["rtt_p50_us"], feat_rtt),
        "rtt_ratio_vs_am_wakeup_mode": ratio(r["rtt_p50_us"], sleep_rtt),
        # like for like: the raw bandwidth tests stream one way, so compare the one-way run
        "one_way_throughput_ratio_vs_am_bw": ratio(r["one_way_throughput_mbps"], am_bw),
        "one_way_throughput_ratio_vs_am_bw_same_features":
            ratio(r["one_way_throughput_mbps"], feat_bw),
        "echo_throughput_ratio_vs_am_bw": ratio(r["throughput_mbps"], am_bw)})
for r in ours_zmq["results"]:
    raw = raw_zmq.get(r["frame_bytes"], {})
    out["zmq"].append({
        "size": r["size"], "frame_bytes": r["frame_bytes"],
        "ours_rtt_p50_us": round(r["rtt_p50_us"], 2), "ours_rtt_p99_us": round(r["rtt_p99_us"], 2),
        "ours_throughput_mbps": round(r["throughput_mbps"], 1),
        "raw_rtt_p50_us": raw.get("rtt_p50_us"), "raw_rtt_p99_us": raw.get("rtt_p99_us"),
        "raw_throughput_mbps": raw.get("throughput_mbps"),
        "rtt_ratio": ratio(r["rtt_p50_us"], raw.get("rtt_p50_us", 0)),
        "throughput_ratio": ratio(r["throughput_mbps"], raw.get("throughput_mbps", 0))})
out["targets"] = {"ucx_rtt_ratio_4k_max": 1.5, "ucx_throughput_ratio_1m_min": 0.8,
                  "zmq_rtt_ratio_max": 1.3}
print(json.dumps(out, indent=2))
PY
