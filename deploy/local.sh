#!/usr/bin/env bash
# deploy/local.sh up|status|down CLUSTER.yaml: every node of a cluster file as a process on this
# machine (loopback), with one log and one pid file per node under the run folder.
set -euo pipefail

usage() { echo "usage: deploy/local.sh up|status|down CLUSTER.yaml" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
cmd=$1
file=$(realpath "$2")
here=$(cd "$(dirname "$0")/.." && pwd)
xmesh=${XMESH_BIN:-$here/build/tools/xmesh}
run_dir=${XMESH_RUN_DIR:-/tmp/xmesh-run/$(basename "$file" .yaml)-$(echo "$file" | md5sum | cut -c1-8)}
wait_s=${XMESH_UP_TIMEOUT_S:-60}

alive() { [[ -f "$run_dir/$1.pid" ]] && kill -0 "$(cat "$run_dir/$1.pid")" 2>/dev/null; }

up() {
  mkdir -p "$run_dir"
  local nodes
  nodes=$("$xmesh" cluster nodes --cluster "$file")
  for n in $nodes; do
    if alive "$n"; then echo "local.sh: $n already running (pid $(cat "$run_dir/$n.pid"))"; continue; fi
    nohup "$xmesh" node --cluster "$file" --name "$n" >"$run_dir/$n.log" 2>&1 &
    echo $! >"$run_dir/$n.pid"
  done
  local deadline=$((SECONDS + wait_s))
  until "$xmesh" cluster status --cluster "$file" >/dev/null 2>&1; do
    for n in $nodes; do
      if ! alive "$n"; then
        echo "local.sh: node $n exited during start-up; its log ($run_dir/$n.log) ends with:" >&2
        tail -n 5 "$run_dir/$n.log" >&2
        down; exit 1
      fi
    done
    if ((SECONDS >= deadline)); then
      echo "local.sh: cluster not registered within ${wait_s}s; logs in $run_dir" >&2
      down; exit 1
    fi
    sleep 0.2
  done
  echo "local.sh: all nodes registered ($(echo $nodes | wc -w) nodes, logs in $run_dir)"
}

status() {
  for f in "$run_dir"/*.pid; do
    [[ -e "$f" ]] || continue
    local n; n=$(basename "$f" .pid)
    if alive "$n"; then echo "$n: running (pid $(cat "$f"))"; else echo "$n: not running"; fi
  done
  "$xmesh" cluster status --cluster "$file" --json
}

down() {
  local pids=()
  for f in "$run_dir"/*.pid; do
    [[ -e "$f" ]] || continue
    pids+=("$(cat "$f")")
    kill -TERM "${pids[-1]}" 2>/dev/null || true
    rm -f "$f"
  done
  for pid in "${pids[@]}"; do  # all stop in parallel; a stuck one is killed after 5 s
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  echo "local.sh: stopped (logs kept in $run_dir)"
}

case "$cmd" in
  up) up ;;
  status) status ;;
  down) down ;;
  *) usage ;;
esac
