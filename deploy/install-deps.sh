#!/usr/bin/env bash
# Installs every Debian package ExpertMesh needs; skips what is already installed (idempotent).
set -euo pipefail

packages=(
  build-essential cmake pkg-config git curl clang-format
  libcaf-dev libucx-dev ucx-utils libzmq3-dev cppzmq-dev prometheus-cpp-dev prometheus
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  nlohmann-json3-dev libpcre2-dev libicu-dev libxxhash-dev libyaml-cpp-dev libssl-dev
  python3 python3-numpy python3-matplotlib python3-yaml iproute2 iputils-ping iptables libnetfilter-queue-dev openssh-server openssh-client
)
command -v node >/dev/null 2>&1 || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo"
$sudo apt-get -o DPkg::Lock::Timeout=300 update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -q \
  --no-install-recommends "${missing[@]}"
