#!/usr/bin/env bash
# Dependencies point one way (docs/architecture.md): kernels <- model <- transport <- actors <- tools;
# placement/ (the planner) depends on nothing of ours.
# Fails, naming the file and line, when a folder includes a project folder above it or a
# third-party library that does not belong at its level (e.g. CAF or UCX inside kernels/).
set -uo pipefail
cd "$(dirname "$0")/../.."
status=0
check() {  # FOLDER PATTERN WHY
  local hits
  hits=$(grep -rnE "^#include [<\"]($2)" "$1" --include='*.hpp' --include='*.cpp' --include='*.cu' --include='*.cuh' || true)
  if [[ -n "$hits" ]]; then
    echo "layering: $3:"
    echo "$hits"
    status=1
  fi
}
check kernels "model/|transport/|actors/|tools/|caf/|ucp/|ucs/|zmq|prometheus/|yaml-cpp/" "kernels/ depends on nothing of ours and no networking"
check model "transport/|actors/|tools/|caf/|ucp/|ucs/|zmq|prometheus/" "model/ depends on kernels/ only"
check transport "model/|actors/|tools/|caf/|prometheus/" "transport/ depends on kernels/ at most"
check placement "kernels/|model/|transport/|actors/|tools/|caf/|ucp/|ucs/|zmq|prometheus/" "placement/ is pure planning: it depends on nothing of ours"
check actors "tools/" "actors/ must not include the command line"
[[ $status -eq 0 ]] && echo "layering: ok"
exit $status
