#!/usr/bin/env bash
# Every C++/CUDA source is formatted with the repository's .clang-format.
set -uo pipefail
cd "$(dirname "$0")/../.."
mapfile -t files < <(git ls-files '*.cpp' '*.hpp' '*.cu' '*.cuh' 2>/dev/null || find kernels model transport actors tools tests bench -name '*.[ch]pp')
clang-format --dry-run --Werror "${files[@]}" && echo "format: ok (${#files[@]} files)"
