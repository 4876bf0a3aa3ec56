#!/usr/bin/env bash
# From a fresh machine to generated text: installs, builds, launches a local cluster (1 head +
# coordinator, 2 expert nodes) serving the small trained MoE in models/ and generates through it.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${XMESH_BUILD_DIR:-build}
[[ $build == /* ]] || build="$(pwd)/$build"
transport=${XMESH_TRANSPORT:-zmq}
model="$(pwd)/models/debian-docs-moe"  # trained on Debian's English docs (tools/train)
cluster="$build/demo-cluster.yaml"

deploy/install-deps.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$(nproc)" --target xmesh
xmesh="$build/tools/xmesh"
export XMESH_BIN=$xmesh UCX_NET_DEVICES=${UCX_NET_DEVICES:-lo}

cat >"$cluster" <<YAML
model: $model
transport: $transport
placement: spread
nodes:
  - {name: head, control_port: 17400, data_port: 17401, roles: [coordinator, head], threads: 1}
  - {name: experts-a, control_port: 17410, data_port: 17411, roles: [experts], memory_budget: 256MiB}
  - {name: experts-b, control_port: 17420, data_port: 17421, roles: [experts], memory_budget: 256MiB}
YAML

deploy/local.sh up "$cluster"
trap 'deploy/local.sh down "$cluster"' EXIT
prompt="The system"
sampling="--max-new-tokens 24 --ignore-eos --temperature 0.8 --top-p 0.95 --seed 7"
echo "== model: $model (Qwen3-MoE layout, 4 layers, 16 experts top-2, trained on Debian's English documentation)"
echo "== cluster: $cluster ($transport: head + coordinator, 2 expert nodes)"
echo "== prompt: $prompt"
distributed=$("$xmesh" generate --model "$model" --cluster "$cluster" --prompt "$prompt" $sampling --json)
single=$("$xmesh" generate --model "$model" --prompt "$prompt" $sampling --json)
/usr/bin/python3 - "$distributed" "$single" "$prompt" <<'PY'
import json, sys
d, s = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print("== generated through the cluster:", sys.argv[3] + d["text"])
print("== same tokens as the single-process run:", d["tokens"] == s["tokens"])
sys.exit(0 if d["tokens"] == s["tokens"] else 1)
PY
deploy/local.sh status "$cluster"
