#!/usr/bin/env bash
# Transport benchmark: `xmesh bench transport` (ucx, zmq) against the raw baselines in the same
# environment (UCX_TLS=tcp UCX_NET_DEVICES=lo, loopback); prints one JSON object.
#   bench/transport/run.sh [BUILD_DIR]     env: SIZES ITERATIONS WINDOW REPEAT
# These VMs drift by 2x within minutes, so the comparison is paired: each of REPEAT rounds
# (default 5) measures ours and the raw baseline back to back per transport (alternating which
# goes first), and the report gives the median, min and max over rounds of each round's ratio.
# Raw UCX: ucx_perftest ucp_am_lat (one-way = half the round trip, doubled here) and ucp_am_bw
# (MiB/s, converted to MB/s), plain and with the features ours uses. Raw ZeroMQ:
# bench/transport/zmq_echo (a plain cppzmq ROUTER echo).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=${1:-${XMESH_BUILD_DIR:-$here/../../build}}
xmesh=$build/tools/xmesh
echo_bin=$build/bench/transport/xmesh_zmq_echo
sizes=${SIZES:-4096,65536,1048576}
iterations=${ITERATIONS:-2000}
window=${WINDOW:-8}
repeat=${REPEAT:-5}
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

ours() {  # TRANSPORT ROUND
  timeout 300 "$xmesh" bench transport --transport "$1" --sizes "$sizes" --iterations "$iterations" \
    --window "$window" --json >"$work/ours_$1.$2.json"
}

# The frame sizes ours actually sends (whole rows of hidden 1024): the raw runs use the same.
"$xmesh" bench transport --transport zmq --sizes "$sizes" --iterations 10 --window 1 --json >"$work/sizes.json"
frame_sizes=$(python3 -c 'import json,sys; print(",".join(str(r["frame_bytes"]) for r in json.load(open(sys.argv[1]))["results"]))' "$work/sizes.json")
IFS=, read -ra fs <<<"$frame_sizes"

raw_zmq() {  # ROUND
  local port
  port=$(free_port)
  "$echo_bin" serve "tcp://127.0.0.1:$port" & local srv=$!
  sleep 0.3
  timeout 300 "$echo_bin" client "tcp://127.0.0.1:$port" "$frame_sizes" "$iterations" "$window" >"$work/raw_zmq.$1.json"
  kill "$srv" 2>/dev/null || true
  wait "$srv" 2>/dev/null || true
}

perftest() {  # TEST SIZE N [FLAGS...] -> the "Final:" line (one server per test: it exits after one)
  local port t=$1 size=$2 n=$3
  shift 3
  port=$(free_port)
  ucx_perftest -p "$port" "$@" >/dev/null 2>&1 & local srv=$!
  pids+=("$srv")
  sleep 0.3
  timeout 120 ucx_perftest 127.0.0.1 -p "$port" -t "$t" -s "$size" -n "$n" "$@" 2>/dev/null | grep '^Final:' || echo "Final: 0 0 0 0 0 0 0 0"
  wait "$srv" 2>/dev/null || true
}

raw_ucx() {  # ROUND
  : >"$work/raw_ucx.$1.txt"
  for s in "${fs[@]}"; do
    local n=$iterations t
    (( s >= 1048576 )) && n=$(( iterations / 4 > 10 ? iterations / 4 : 10 ))
    # Plain UCX defaults, then with the features and settings ours uses (-e: peer error handling,
    # so a dead peer fails requests instead of hanging; over TCP it changes the rendezvous
    # protocol. -I: the wakeup feature; it also prints the protocol chosen. TX and RX segments of
    # 512 KiB as transport/ucx sets them), then that in UCX's own wakeup mode.
    for t in ucp_am_lat ucp_am_bw; do
      echo "$s $t $(perftest "$t" "$s" "$n")" >>"$work/raw_ucx.$1.txt"
      echo "$s ${t}_features $(UCX_TCP_TX_SEG_SIZE=512k UCX_TCP_RX_SEG_SIZE=512k perftest "$t" "$s" "$n" -e -I)" >>"$work/raw_ucx.$1.txt"
    done
    echo "$s ucp_am_lat_sleep $(UCX_TCP_TX_SEG_SIZE=512k UCX_TCP_RX_SEG_SIZE=512k perftest ucp_am_lat "$s" "$n" -e -I -E sleep)" >>"$work/raw_ucx.$1.txt"
  done
}

for round in $(seq 1 "$repeat"); do
  for transport in ucx zmq; do
    if (( round % 2 )); then ours "$transport" "$round"; "raw_$transport" "$round"
    else "raw_$transport" "$round"; ours "$transport" "$round"; fi
  done
done

python3 - "$work" "$repeat" <<'PY'
import json, statistics, sys
w, rounds = sys.argv[1], range(1, int(sys.argv[2]) + 1)
def load_raw_ucx(i):
    out = {}
    for line in open(f"{w}/raw_ucx.{i}.txt"):
        f = line.split()
        # cols: iters p50 avg overall bw_avg bw_overall msgrate_avg msgrate_overall (-I appends
        # a description of the protocol after them)
        out.setdefault(int(f[0]), {})[f[1]] = [float(c) for c in f[3:11]]
    return out
def rtt(raw, t): return 2 * raw.get(t, [0, 0])[1]              # one-way p50 -> round trip
def bw(raw, t): return raw.get(t, [0] * 5)[4] * 1.048576       # MiB/s -> MB/s
def per_round(i):
    """{(transport, frame_bytes): {metric: value}} for round i, ratios paired within the round."""
    rows = {}
    raw_ucx = load_raw_ucx(i)
    for r in json.load(open(f"{w}/ours_ucx.{i}.json"))["results"]:
        raw = raw_ucx.get(r["frame_bytes"], {})
        m = {"ours_rtt_p50_us": r["rtt_p50_us"], "ours_rtt_p99_us": r["rtt_p99_us"],
             "ours_throughput_mbps": r["throughput_mbps"],
             "ours_one_way_throughput_mbps": r["one_way_throughput_mbps"],
             "raw_am_rtt_p50_us": rtt(raw, "ucp_am_lat"),
             "raw_am_rtt_p50_us_same_features": rtt(raw, "ucp_am_lat_features"),
             "raw_am_rtt_p50_us_wakeup_mode": rtt(raw, "ucp_am_lat_sleep"),
             "raw_am_bw_mbps": bw(raw, "ucp_am_bw"),
             "raw_am_bw_mbps_same_features": bw(raw, "ucp_am_bw_features")}
        m["rtt_ratio_vs_am"] = m["ours_rtt_p50_us"] / m["raw_am_rtt_p50_us"]
        m["rtt_ratio_vs_am_same_features"] = m["ours_rtt_p50_us"] / m["raw_am_rtt_p50_us_same_features"]
        m["rtt_ratio_vs_am_wakeup_mode"] = m["ours_rtt_p50_us"] / m["raw_am_rtt_p50_us_wakeup_mode"]
        # like for like: the raw bandwidth tests stream one way, so compare the one-way run
        m["one_way_throughput_ratio_vs_am_bw"] = m["ours_one_way_throughput_mbps"] / m["raw_am_bw_mbps"]
        m["one_way_throughput_ratio_vs_am_bw_same_features"] = (
            m["ours_one_way_throughput_mbps"] / m["raw_am_bw_mbps_same_features"])
        rows[("ucx", r["size"], r["frame_bytes"])] = m
    raw_zmq = {r["size"]: r for r in json.load(open(f"{w}/raw_zmq.{i}.json"))}
    for r in json.load(open(f"{w}/ours_zmq.{i}.json"))["results"]:
        raw = raw_zmq[r["frame_bytes"]]
        rows[("zmq", r["size"], r["frame_bytes"])] = {
            "ours_rtt_p50_us": r["rtt_p50_us"], "ours_rtt_p99_us": r["rtt_p99_us"],
            "ours_throughput_mbps": r["throughput_mbps"],
            "raw_rtt_p50_us": raw["rtt_p50_us"], "raw_throughput_mbps": raw["throughput_mbps"],
            "rtt_ratio": r["rtt_p50_us"] / raw["rtt_p50_us"],
            "throughput_ratio": r["throughput_mbps"] / raw["throughput_mbps"]}
    return rows
all_rounds = [per_round(i) for i in rounds]
out = {"machine": json.load(open(f"{w}/ours_ucx.1.json"))["machine"],
       "env": "UCX_TLS=tcp UCX_NET_DEVICES=lo, loopback", "rounds": len(all_rounds),
       "statistic": "median over rounds; *_range: [min, max] of a ratio over rounds",
       "ucx": [], "zmq": []}
for key in all_rounds[0]:
    row = {"size": key[1], "frame_bytes": key[2]}
    for metric in all_rounds[0][key]:
        values = [r[key][metric] for r in all_rounds]
        row[metric] = round(statistics.median(values), 3)
        if "ratio" in metric:
            row[metric + "_range"] = [round(min(values), 3), round(max(values), 3)]
    out[key[0]].append(row)
out["targets"] = {"ucx_rtt_ratio_4k_max": 1.5, "ucx_throughput_ratio_1m_min": 0.8,
                  "zmq_rtt_ratio_max": 1.3}
print(json.dumps(out, indent=2))
PY
