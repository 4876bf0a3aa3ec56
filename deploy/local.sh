#!/usr/bin/env bash
# deploy/local.sh up [--prometheus] | status | down CLUSTER.yaml: every node of a cluster file as
# a process on this machine (loopback), with one log and one pid file per node under the run
# folder. With --prometheus, `up` also starts Debian's prometheus on 127.0.0.1 (port
# XMESH_PROMETHEUS_PORT, default 19090) scraping every node with a metrics_port and loading the
# rules of dashboards/rules; `down` stops it.
set -euo pipefail

usage() { echo "usage: deploy/local.sh up [--prometheus] | status | down CLUSTER.yaml" >&2; exit 2; }
prometheus=0
args=()
for a in "$@"; do
  if [[ $a == --prometheus ]]; then prometheus=1; else args+=("$a"); fi
done
[[ ${#args[@]} -eq 2 ]] || usage
cmd=${args[0]}
[[ $prometheus -eq 0 || $cmd == up ]] || usage
file=$(realpath "${args[1]}")
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
  local nodes running=()
  nodes=$("$xmesh" cluster nodes --cluster "$file")
  for n in $nodes; do alive "$n" && running+=("$n"); done
  # A whole running cluster is refused; a partial one (a node died) gets its missing nodes back.
  if [[ ${#running[@]} -gt 0 && ${#running[@]} -eq $(echo $nodes | wc -w) ]]; then
    echo "local.sh: cluster $(basename "$file") is already running (${running[*]}; run folder $run_dir); 'down' first" >&2
    exit 1
  fi
  # The cluster's keys (control-plane TLS, the data plane's seal), made once beside the file.
  "$xmesh" cluster keygen --cluster "$file" | { grep -v "(kept)\|security: none" || true; }
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
  if ((prometheus)); then start_prometheus; fi
}

prometheus_alive() {
  [[ -f "$run_dir/prometheus.pid" ]] &&
    tr '\0' ' ' <"/proc/$(cat "$run_dir/prometheus.pid")/cmdline" 2>/dev/null |
    grep -q -- "--config.file=$run_dir/prometheus.yml"
}

start_prometheus() {
  local port=${XMESH_PROMETHEUS_PORT:-19090}
  if prometheus_alive; then
    echo "local.sh: prometheus already running (pid $(cat "$run_dir/prometheus.pid"))"
    return
  fi
  "$xmesh" prometheus-config --cluster "$file" --rules "$here/dashboards/rules/xmesh.rules.yml" \
    --interval "${XMESH_PROMETHEUS_INTERVAL_S:-5}" >"$run_dir/prometheus.yml"
  echo "--- local.sh: starting prometheus at $(date -Is) ---" >>"$run_dir/prometheus.log"
  # Listens on loopback only (Debian's default is every interface).
  nohup prometheus --config.file="$run_dir/prometheus.yml" --storage.tsdb.path="$run_dir/prometheus-data" \
    --web.listen-address="127.0.0.1:$port" --web.enable-lifecycle >>"$run_dir/prometheus.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$run_dir/prometheus.pid"
  for _ in $(seq 100); do
    if curl -sf "http://127.0.0.1:$port/-/ready" >/dev/null; then
      echo "local.sh: prometheus on http://127.0.0.1:$port (config $run_dir/prometheus.yml)"
      return
    fi
    # Whether it still runs, by pid: prometheus_alive reads its command line, which names
    # prometheus only once the child has exec'd (it may still be this script's fork).
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "local.sh: prometheus did not start; its log ($run_dir/prometheus.log) ends with:" >&2
  tail -n 5 "$run_dir/prometheus.log" >&2
  kill -TERM "$pid" 2>/dev/null || true
  down; exit 1
}

status() {
  for f in "$run_dir"/*.pid; do
    [[ -e "$f" ]] || continue
    local n; n=$(basename "$f" .pid)
    if [[ $n == prometheus ]]; then
      prometheus_alive && echo "prometheus: running (pid $(cat "$f"))" || echo "prometheus: not running"
      continue
    fi
    if alive "$n"; then echo "$n: running (pid $(cat "$f"))"; else echo "$n: not running"; fi
  done
  "$xmesh" cluster status --cluster "$file" --json
}

down() {
  if prometheus_alive; then
    local ppid; ppid=$(cat "$run_dir/prometheus.pid")
    kill -TERM "$ppid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$ppid" 2>/dev/null || break; sleep 0.1; done
    echo "local.sh: stopped prometheus"
  fi
  rm -f "$run_dir/prometheus.pid"
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
