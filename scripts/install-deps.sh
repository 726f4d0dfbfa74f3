#!/usr/bin/env bash
# Installs every system package fotrt needs to build and test on Debian 12 (bookworm).
# Idempotent: packages already present are skipped, and apt-get is not called at all
# when nothing is missing. Runs as root (or through sudo when available).
# The CUDA toolkit (nvcc, cuBLAS, NCCL) is not a Debian package: when /usr/local/cuda
# exists fotrt builds its CUDA path too, otherwise it builds CPU-only.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  clang libclang-rt-dev libomp-dev
  openmpi-bin libopenmpi-dev
  libyaml-cpp-dev
  libsentencepiece-dev sentencepiece
  libboost-dev
  libopenblas-dev
  nlohmann-json3-dev
  libgtest-dev libgmock-dev
  libbenchmark-dev
  python3
  python3-matplotlib
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo_cmd=(sudo)
  else
    echo "install-deps: missing packages (${missing[*]}) and not root; rerun as root" >&2
    exit 1
  fi
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
