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

# A node is alive when its pid file names a live process (not a zombie: a just-killed node
# stays one until reaped) that is this node: a stale pid file may name an unrelated process.
is_node() {  # PID NAME
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  [[ $(echo "${stat##*) }" | cut -d' ' -f1) != Z ]] || return 1
  tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q -- " node .*--name $2\( \|$\)"
}
alive() { [[ -f "$run_dir/$1.pid" ]] && is_node "$(cat "$run_dir/$1.pid")" "$1"; }

up() {
  mkdir -p "$run_dir"
  local nodes
  nodes=$("$xmesh" cluster nodes --cluster "$file")
  for n in $nodes; do
    if alive "$n"; then echo "local.sh: $n already running (pid $(cat "$run_dir/$n.pid"))"; continue; fi
    # Logs are appended: a restart keeps the previous run's last lines (a crash's backtrace).
    echo "--- local.sh: starting $n at $(date -Is) ---" >>"$run_dir/$n.log"
    nohup "$xmesh" node --cluster "$file" --name "$n" >>"$run_dir/$n.log" 2>&1 &
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
  local pids=() names=()
  for f in "$run_dir"/*.pid; do
    [[ -e "$f" ]] || continue
    local n; n=$(basename "$f" .pid)
    if alive "$n"; then
      pids+=("$(cat "$f")") names+=("$n")
      kill -TERM "${pids[-1]}" 2>/dev/null || true
    fi
    rm -f "$f"
  done
  for i in "${!pids[@]}"; do  # all stop in parallel; a stuck one is killed after 5 s
    for _ in $(seq 50); do is_node "${pids[$i]}" "${names[$i]}" || break; sleep 0.1; done
    is_node "${pids[$i]}" "${names[$i]}" && kill -KILL "${pids[$i]}" 2>/dev/null || true
  done
  if ((${#pids[@]} == 0)); then
    echo "local.sh: no node of this cluster was running (run folder $run_dir)"
  else
    echo "local.sh: stopped ${#pids[@]} nodes: ${names[*]} (logs kept in $run_dir)"
  fi
}

case "$cmd" in
  up) up ;;
  status) status ;;
  down) down ;;
  *) usage ;;
esac
