#!/usr/bin/env bash
# From a fresh machine to generated text: installs, builds, writes the demo model, generates.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${XMESH_BUILD_DIR:-build}
model="$build/demo-model"

deploy/install-deps.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$(nproc)" --target xmesh
xmesh="$build/tools/xmesh"

if [[ ! -f "$model/config.json" ]]; then
  "$xmesh" gen-model --family qwen3_moe --preset small --seed 1 --out "$model"
fi
prompt="The mixture of experts"
echo "== demo model: $model (Qwen3-MoE layout, 16 experts top-4, random weights)"
echo "== prompt: $prompt"
"$xmesh" generate --model "$model" --prompt "$prompt" --max-new-tokens 24 --ignore-eos --json
echo "== generated 24 tokens in one process (random weights: the text is noise by design)"
