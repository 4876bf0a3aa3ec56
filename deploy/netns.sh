#!/usr/bin/env bash
# deploy/netns.sh up|net|down|status|exec|guest CLUSTER.yaml [ADDRESS] [-- COMMAND...]: a cluster over emulated links
# on one machine (root). Every distinct `host` of the cluster file gets a network namespace with
# that address on eth0, joined by a bridge in a namespace of its own (the root namespace is not
# touched). Each node's `link` profile shapes its host's access link: the rate with tbf (up: the
# host's egress; down: the bridge port toward it), delay, jitter and loss with xmesh-delayer on
# every receiver's ingress (a packet from A to B waits A's up delay plus B's down delay). These
# kernels have no netem. `status` measures each link's RTT, loss and rate next to its profile;
# `net` builds the namespaces and links without starting nodes; `exec` runs a command in the
# first head's namespace (where clients reach the cluster); `guest ADDRESS` runs one in a host of
# its own at ADDRESS on the same bridge, unshaped (a client or a stranger on the cluster's network). RTTs are
# measured with `ping -U` (user to user): ping's kernel receive timestamps would hide the delay
# the receiver's ingress adds.
set -euo pipefail

usage() { echo "usage: deploy/netns.sh up|net|down|status|exec|guest CLUSTER.yaml [ADDRESS] [-- COMMAND...]" >&2; exit 2; }
start_nodes=1  # `net`: the namespaces and links only (e.g. for deploy/ssh.sh to launch into)
[[ $# -ge 2 ]] || usage
cmd=$1
file=$(realpath "$2")
shift 2
here=$(cd "$(dirname "$0")/.." && pwd)
xmesh=${XMESH_BIN:-$here/build/tools/xmesh}
delayer=${XMESH_DELAYER:-$(dirname "$xmesh")/../deploy/delayer/xmesh-delayer}
id=$(echo "$file" | md5sum | cut -c1-6)
run_dir=${XMESH_RUN_DIR:-/tmp/xmesh-netns/$(basename "$file" .yaml)-$id}
sw="xm$id-sw"
[[ $(id -u) -eq 0 ]] || { echo "netns.sh: needs root (network namespaces)" >&2; exit 1; }

# name host profile up_rate up_delay up_jitter up_loss down_rate down_delay down_jitter down_loss
plan() { "$xmesh" cluster links --cluster "$file"; }
hosts() { plan | awk '{print $2}' | awk '!seen[$0]++'; }
ns_of() { echo "xm$id-h$(hosts | grep -nx "$1" | cut -d: -f1)"; }
# A host's link: the profile of its first node.
link_of() { plan | awk -v h="$1" '$2 == h {print; exit}'; }

ours() { ip netns list | awk '{print $1}' | grep "^xm$id-" || true; }

teardown() {
  for f in "$run_dir"/*.pid; do
    [[ -e "$f" ]] || continue
    kill -TERM "$(cat "$f")" 2>/dev/null || true
  done
  sleep 0.3
  for f in "$run_dir"/*.pid; do
    [[ -e "$f" ]] || continue
    kill -KILL "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
  # Deleting a namespace removes its veths, qdiscs and iptables rules with it.
  for ns in $(ours); do ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true; ip netns del "$ns"; done
}

# A namespace NS with ADDRESS on its eth0, the other end of which is PORT on the bridge.
attach() {
  ip netns add "$1"
  ip -n "$sw" link add "$2" type veth peer name eth0 netns "$1"
  ip -n "$sw" link set "$2" master br0
  ip -n "$sw" link set "$2" up
  ip -n "$1" link set lo up
  ip -n "$1" addr add "$3/24" dev eth0
  ip -n "$1" link set eth0 up
}

up() {
  if [[ -n $(ours) ]]; then
    echo "netns.sh: a cluster of $file is already up (namespaces $(ours | tr '\n' ' ')); run down first" >&2
    exit 1
  fi
  [[ -x $delayer ]] || { echo "netns.sh: $delayer not built" >&2; exit 1; }
  local list; list=$(plan)  # validates the file first
  for h in $(hosts); do
    [[ $h != 127.* && $h != localhost ]] ||
      { echo "netns.sh: host $h: each host needs its own address (e.g. 10.200.0.1)" >&2; exit 1; }
  done
  mkdir -p "$run_dir"
  trap 'echo "netns.sh: up failed; tearing down" >&2; teardown' ERR
  ip netns add "$sw"
  ip -n "$sw" link add br0 type bridge
  ip -n "$sw" link set br0 up
  local i=0
  for h in $(hosts); do
    i=$((i + 1))
    local ns; ns=$(ns_of "$h")
    attach "$ns" "p$i" "$h"
    read -r _ _ profile up_rate _ _ _ down_rate _ _ _ <<<"$(link_of "$h")"
    if [[ $profile != - ]]; then
      # Rate: tbf on the host's egress (up) and on the bridge port toward it (down).
      [[ $up_rate == 0 ]] || ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "${up_rate}bit" burst 64kb latency 200ms
      [[ $down_rate == 0 ]] || ip netns exec "$sw" tc qdisc add dev "p$i" root tbf rate "${down_rate}bit" burst 64kb latency 200ms
    fi
  done
  # Delay, jitter and loss: every receiver delays what arrives from each other host.
  for h in $(hosts); do
    local ns rules=() mine
    ns=$(ns_of "$h")
    mine=$(link_of "$h")
    for src in $(hosts); do
      [[ $src != "$h" ]] || continue
      local theirs; theirs=$(link_of "$src")
      rules+=("$(awk -v a="$theirs" -v b="$mine" -v ip="$src" 'BEGIN {
        split(a, x, " "); split(b, y, " ");
        delay = x[5] + y[9]; jitter = x[6] + y[10]; loss = 1 - (1 - x[7]) * (1 - y[11]);
        if (delay > 0 || loss > 0) printf "%s=%.6f:%.6f:%.6f", ip, delay, jitter, loss }')")
    done
    rules=($(printf '%s\n' "${rules[@]}" | grep . || true))
    if ((${#rules[@]} > 0)); then
      ip netns exec "$ns" iptables -A INPUT -i eth0 -j NFQUEUE --queue-num 0 --queue-bypass
      ip netns exec "$ns" "$delayer" 0 "${rules[@]}" >>"$run_dir/delayer-$h.log" 2>&1 &
      echo $! >"$run_dir/delayer-$h.pid"
    fi
  done
  if ((!start_nodes)); then
    trap - ERR
    echo "netns.sh: net: $(hosts | wc -l) hosts, links shaped, no nodes started"
    return
  fi
  # The cluster's keys (control-plane TLS, the data plane's seal), made once beside the file.
  "$xmesh" cluster keygen --cluster "$file" | { grep -v "(kept)\|security: none" || true; }
  # The nodes, each in its host's namespace (UCX over TCP on eth0: no shared-memory shortcut).
  while read -r name host _; do
    local ns; ns=$(ns_of "$host")
    echo "--- netns.sh: starting $name at $(date -Is) ---" >>"$run_dir/$name.log"
    ip netns exec "$ns" env UCX_TLS=tcp UCX_NET_DEVICES=eth0 \
      "$xmesh" node --cluster "$file" --name "$name" >>"$run_dir/$name.log" 2>&1 &
    echo $! >"$run_dir/$name.pid"
  done <<<"$list"
  local deadline=$((SECONDS + ${XMESH_UP_TIMEOUT_S:-60}))
  until in_head "$xmesh" cluster status --cluster "$file" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "netns.sh: cluster not registered within ${XMESH_UP_TIMEOUT_S:-60}s; logs in $run_dir" >&2
      false
    fi
    sleep 0.2
  done
  trap - ERR
  echo "netns.sh: up: $(hosts | wc -l) hosts, $(echo "$list" | wc -l) nodes (logs in $run_dir)"
}

in_head() {
  local head; head=$("$xmesh" cluster nodes --cluster "$file" | head -1)  # the file's first node
  local host; host=$(plan | awk -v n="$head" '$1 == n {print $2}')
  ip netns exec "$(ns_of "$host")" env UCX_TLS=tcp UCX_NET_DEVICES=eth0 "$@"
}

# A host that is not in the cluster file, made on first use (down removes it with the others).
guest() {
  local address=$1; shift
  [[ -n $(ours) ]] || { echo "netns.sh: no cluster of $file is up" >&2; exit 3; }
  [[ $address =~ ^[0-9]+\.[0-9]+\.[0-9]+\.([0-9]+)$ ]] || { echo "netns.sh: guest: '$address' is not an IPv4 address" >&2; exit 2; }
  ! hosts | grep -qx "$address" || { echo "netns.sh: guest: $address is a host of the cluster" >&2; exit 2; }
  local ns="xm$id-g${BASH_REMATCH[1]}" port="g${BASH_REMATCH[1]}"
  ip netns list | awk '{print $1}' | grep -qx "$ns" || attach "$ns" "$port" "$address"
  ip netns exec "$ns" env UCX_TLS=tcp UCX_NET_DEVICES=eth0 "$@"
}

status() {
  [[ -n $(ours) ]] || { echo "netns.sh: no cluster of $file is up"; exit 3; }
  local first; first=$(hosts | head -1)
  echo "link from $first: profile RTT (ms) | measured RTT (ms), loss (%), rate (Mbit/s)"
  for h in $(hosts | tail -n +2); do
    local expect; expect=$(awk -v a="$(link_of "$first")" -v b="$(link_of "$h")" 'BEGIN {
      split(a, x, " "); split(b, y, " "); printf "%.2f", 1000 * (x[5] + y[9] + y[5] + x[9]) }')
    local out; out=$(ip netns exec "$(ns_of "$first")" ping -U -q -c 50 -i 0.02 -W 2 "$h" 2>/dev/null || true)
    local rtt loss
    rtt=$(echo "$out" | awk -F/ '/rtt/ {print $5}')
    loss=$(echo "$out" | awk '/packet loss/ {for (i = 1; i <= NF; i++) if ($i ~ /%/) print $i}' | tr -d %)
    local rate; rate=$(measure_rate "$(ns_of "$first")" "$(ns_of "$h")" "$h")
    echo "$h ($(link_of "$h" | awk '{print $3}')): ${expect} | ${rtt:-?} ms, ${loss:-?} %, ${rate} Mbit/s"
  done
}

# Bulk TCP throughput from ns $1 to address $3 (a listener in ns $2), one second.
measure_rate() {
  local port=$((20000 + RANDOM % 20000))
  ip netns exec "$2" python3 -c "
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('$3', $port)); s.listen(1)
s.settimeout(10); c, _ = s.accept(); n = 0
while True:
    b = c.recv(1 << 16)
    if not b: break
    n += len(b)
" &
  local listener=$!
  sleep 0.3
  ip netns exec "$1" python3 -c "
import socket, time
c = socket.create_connection(('$3', $port), timeout=10); buf = b'x' * (1 << 16); n = 0; t = time.time()
while time.time() - t < 1.0:
    c.sendall(buf); n += len(buf)
c.shutdown(socket.SHUT_WR); c.recv(1); print('%.1f' % (8 * n / (time.time() - t) / 1e6))
" 2>/dev/null || echo "?"
  wait "$listener" 2>/dev/null || true
}

case "$cmd" in
  up) up ;;
  net) start_nodes=0; up ;;
  down)
    had=$(ours)
    teardown
    if [[ -n $had ]]; then echo "netns.sh: down: removed $(echo "$had" | wc -l) namespaces and their processes"
    else echo "netns.sh: no cluster of $file was up"; fi ;;
  status) status ;;
  exec) [[ ${1:-} == -- ]] && shift; [[ $# -gt 0 ]] || usage; in_head "$@" ;;
  guest)
    [[ $# -ge 1 ]] || usage
    address=$1; shift
    [[ ${1:-} == -- ]] && shift
    [[ $# -gt 0 ]] || usage
    guest "$address" "$@" ;;
  *) usage ;;
esac
