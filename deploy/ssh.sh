#!/usr/bin/env bash
# deploy/ssh.sh up|down|status|logs CLUSTER.yaml: a cluster on real hosts over ssh. Every distinct
# `host` of the cluster file gets, in the folder the file's `ssh:` section names (`{host}` in it
# becomes the host's address), the xmesh binary, a copy of the model and the cluster file (its
# model paths rewritten to the copies); then each node starts there under nohup with a log and a
# pid file. An edge node (`device: edge`, only the experts role) gets only its experts' tensors
# (`xmesh cluster shard`) and streams the replicas it lacks from peers. The hosts need the same Debian packages as this one (the binary links them).
#   ssh: {user: root, port: 22, identity: ~/.ssh/id_ed25519, dir: /opt/xmesh}
# `up` refuses to start over a running cluster of the file and tears down what it started when it
# fails; `status` asks the first node's host for the cluster's status; `logs` copies every node's
# log to XMESH_RUN_DIR (default /tmp/xmesh-ssh/NAME).
set -euo pipefail

usage() { echo "usage: deploy/ssh.sh up|down|status|logs CLUSTER.yaml" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
cmd=$1
file=$(realpath "$2")
here=$(cd "$(dirname "$0")/.." && pwd)
xmesh=${XMESH_BIN:-$here/build/tools/xmesh}
run_dir=${XMESH_RUN_DIR:-/tmp/xmesh-ssh/$(basename "$file" .yaml)}

"$xmesh" cluster nodes --cluster "$file" >/dev/null  # validates the file
# user port identity dir model, from the file (python3-yaml)
read -r user port identity dir model < <(/usr/bin/python3 - "$file" <<'PY'
import os, sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
s = c.get("ssh") or {}
model = c["model"]
if not os.path.isabs(model):
    model = os.path.join(os.path.dirname(os.path.abspath(sys.argv[1])), model)
print(s.get("user", os.environ.get("USER", "root")), s.get("port", 22),
      os.path.expanduser(s.get("identity", "~/.ssh/id_ed25519")), s.get("dir", "/tmp/xmesh"), model)
PY
)
ssh_opts=(-i "$identity" -p "$port" -o BatchMode=yes -o ConnectTimeout=10
          -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile="${XMESH_SSH_KNOWN_HOSTS:-$HOME/.ssh/known_hosts}")
scp_opts=(-i "$identity" -P "$port" -o BatchMode=yes -o ConnectTimeout=10
          -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile="${XMESH_SSH_KNOWN_HOSTS:-$HOME/.ssh/known_hosts}")
on() { local h=$1; shift; ssh "${ssh_opts[@]}" "$user@$h" "$@"; }
dir_of() { echo "${dir//\{host\}/$1}"; }
nodes() { "$xmesh" cluster links --cluster "$file" | awk '{print $1, $2}'; }
hosts() { nodes | awk '{print $2}' | awk '!seen[$0]++'; }
first() { nodes | head -1; }

# host_yaml HOST DIR kinds|yaml: the nodes on HOST with their kind ("edge": device edge with only
# the experts role, which gets a partial copy DIR/model-NAME; "full": the whole model in
# DIR/model), or the cluster file as HOST reads it (model paths on HOST; edge nodes stream the
# replicas they lack from peers).
host_yaml() {
  /usr/bin/python3 - "$file" "$1" "$2" "$3" <<'PY'
import sys, yaml
path, host, d, what = sys.argv[1:]
c = yaml.safe_load(open(path))
mine = [n for n in c["nodes"] if n.get("host", "127.0.0.1") == host]
edge = lambda n: n.get("device") == "edge" and n.get("roles") == ["experts"]  # noqa: E731
if what == "kinds":
    for n in mine:
        print(n["name"], "edge" if edge(n) else "full")
    sys.exit()
full = any(not edge(n) for n in mine)
c["model"] = f"{d}/model" if full else f"{d}/model-{next(n['name'] for n in mine)}"
if c.get("security") != "none":  # the keys folder ssh.sh copies beside the file
    c["security"] = {"keys": f"{d}/keys"}
for n in mine:
    if edge(n):
        n["model"] = f"{d}/model-{n['name']}"
        n.setdefault("expert_source", "peer")
print(yaml.safe_dump(c, sort_keys=False), end="")
PY
}

# Running nodes of this cluster on host $1 (pid files whose process is that node).
running_on() {
  on "$1" "cd $(dir_of "$1") 2>/dev/null && for f in *.pid; do [ -e \"\$f\" ] || continue;
    n=\${f%.pid}; p=\$(cat \"\$f\"); tr '\\0' ' ' </proc/\$p/cmdline 2>/dev/null | grep -q -- \"--name \$n\" && echo \$n; done" || true
}

down() {
  local stopped=()
  for h in $(hosts); do
    for n in $(running_on "$h"); do
      on "$h" "cd $(dir_of "$h") && kill -TERM \$(cat $n.pid); rm -f $n.pid" || true
      stopped+=("$n")
    done
  done
  if ((${#stopped[@]})); then echo "ssh.sh: stopped ${#stopped[@]} nodes: ${stopped[*]}"
  else echo "ssh.sh: no node of this cluster was running"; fi
}

up() {
  for h in $(hosts); do
    if [[ -n $(running_on "$h") ]]; then
      echo "ssh.sh: nodes of this cluster already run on $h ($(running_on "$h" | tr '\n' ' ')); run down first" >&2
      exit 1
    fi
  done
  trap 'echo "ssh.sh: up failed; stopping what it started" >&2; down' ERR
  local stage keys; stage=$(mktemp -d)
  # The cluster's keys, made here. A host gets the CA's certificate, the data key and the key
  # pairs of its own nodes (the first host also the operator's: status runs there); never the
  # CA's key, which only signs.
  "$xmesh" cluster keygen --cluster "$file" >/dev/null
  keys=$("$xmesh" cluster keygen --cluster "$file" --where)
  for h in $(hosts); do
    local d edge=() full=0; d=$(dir_of "$h")
    while read -r n kind; do
      if [[ $kind == edge ]]; then edge+=("$n"); else full=1; fi
    done < <(host_yaml "$h" "$d" kinds)
    on "$h" "mkdir -p $d"
    scp "${scp_opts[@]}" -q "$xmesh" "$user@$h:$d/xmesh"
    if ((full)); then
      on "$h" "mkdir -p $d/model"
      scp "${scp_opts[@]}" -q -r "$model/." "$user@$h:$d/model/"
    fi
    for n in "${edge[@]}"; do  # only the experts the file's placement gives it
      "$xmesh" cluster shard --cluster "$file" --node "$n" --out "$stage/$n"
      on "$h" "mkdir -p $d/model-$n"
      scp "${scp_opts[@]}" -q -r "$stage/$n/." "$user@$h:$d/model-$n/"
    done
    if [[ -n $keys ]]; then
      local files=("$keys"/tls-ca.pem "$keys"/data.key)
      while read -r n _; do files+=("$keys/tls-$n.pem" "$keys/tls-$n.key"); done < <(host_yaml "$h" "$d" kinds)
      [[ $h != $(first | awk '{print $2}') ]] || files+=("$keys"/tls-operator.*)
      on "$h" "mkdir -p -m 700 $d/keys"
      scp "${scp_opts[@]}" -q -p "${files[@]}" "$user@$h:$d/keys/"
    fi
    host_yaml "$h" "$d" yaml | on "$h" "cat > $d/cluster.yaml"
  done
  rm -rf "$stage"
  while read -r n h; do
    local d; d=$(dir_of "$h")
    # (stdin from /dev/null: ssh would otherwise eat the rest of the node list)
    on "$h" "cd $d && echo \"--- ssh.sh: starting $n at \$(date -Is) ---\" >> $n.log &&
      (nohup ./xmesh node --cluster cluster.yaml --name $n >> $n.log 2>&1 </dev/null & echo \$! > $n.pid)" </dev/null
  done < <(nodes)
  read -r _ fh < <(first)
  local deadline=$((SECONDS + ${XMESH_UP_TIMEOUT_S:-60}))
  until on "$fh" "$(dir_of "$fh")/xmesh cluster status --cluster $(dir_of "$fh")/cluster.yaml" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then echo "ssh.sh: cluster not registered in time" >&2; false; fi
    sleep 0.5
  done
  trap - ERR
  echo "ssh.sh: up: $(nodes | wc -l) nodes on $(hosts | wc -l) hosts"
}

status() {
  read -r _ fh < <(first)
  on "$fh" "$(dir_of "$fh")/xmesh cluster status --cluster $(dir_of "$fh")/cluster.yaml"
}

logs() {
  mkdir -p "$run_dir"
  for h in $(hosts); do
    mkdir -p "$run_dir/$h"
    scp "${scp_opts[@]}" -q "$user@$h:$(dir_of "$h")/*.log" "$run_dir/$h/" 2>/dev/null || true
  done
  echo "ssh.sh: logs in $run_dir"
}

case "$cmd" in
  up) up ;;
  down) down ;;
  status) status ;;
  logs) logs ;;
  *) usage ;;
esac
