#!/usr/bin/env bash
# Installs every system package fotrt needs to build and test on Debian 12 (bookworm).
# Idempotent: packages already present are skipped, and apt-get is not called at all
# when nothing is missing (nvdisasm included, below). Runs as root (or through sudo when available).
# The CUDA toolkit (nvcc, cuBLAS, NCCL) is not a Debian package: when /usr/local/cuda
# exists fotrt builds its CUDA path too, otherwise it builds CPU-only; with it, nvdisasm is
# fetched for the SASS check (below).
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

sudo_cmd=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
  sudo_cmd=(sudo)
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
else
  if [ "$(id -u)" -ne 0 ] && [ ${#sudo_cmd[@]} -eq 0 ]; then
    echo "install-deps: missing packages (${missing[*]}) and not root; rerun as root" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# nvdisasm, for the SASS check of the CUDA kernels (scripts/check_sass.sh --cubin), where the
# CUDA toolkit has nvcc but not its binary utilities (cuobjdump, nvdisasm): extracted from
# Debian's non-free nvidia-cuda-toolkit package into $tools/bin, without installing that
# package (it would pull in CUDA 11.8's libraries and compilers). Its nvdisasm (CUDA 11.8)
# decodes sm_90 code. Optional: when it cannot be fetched the SASS test is skipped, as before.
# FOT_NO_NVDISASM=1 skips this step.
tools=/opt/fotrt-tools
fetch_nvdisasm() {
  if [ "${FOT_NO_NVDISASM:-0}" = 1 ] || [ ! -d /usr/local/cuda/bin ] ||
     [ -x /usr/local/cuda/bin/cuobjdump ] || [ -x /usr/local/cuda/bin/nvdisasm ] ||
     [ -x "$tools/bin/nvdisasm" ]; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ] && [ ${#sudo_cmd[@]} -eq 0 ]; then
    echo "install-deps: not root: nvdisasm not fetched (the SASS test will be skipped)"
    return 0
  fi
  local work
  work=$(mktemp -d)
  # A private package list with Debian's non-free component, so the system's sources stay
  # as they are (deb822 .sources, or one-line sources.list entries).
  local list
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    list="$work/nonfree.sources"
    sed -E '/^Components:.*non-free( |$)/! s/^(Components:.*)$/\1 non-free/' \
      /etc/apt/sources.list.d/debian.sources > "$list"
  else
    list="$work/nonfree.list"
    sed -E '/^deb .*non-free( |$)/! s/^(deb .*)$/\1 non-free/' /etc/apt/sources.list \
      > "$list" 2>/dev/null || true
  fi
  local opts=(-o Dir::Etc::sourcelist="$list" -o Dir::Etc::sourceparts=/dev/null
              -o Dir::State::Lists="$work/lists" -o Dir::Cache::archives="$work")
  mkdir -p "$work/lists/partial" "$work/partial"
  if grep -q -E '^(URIs:|deb )' "$list" 2>/dev/null &&
     apt-get "${opts[@]}" update -qq >"$work/log" 2>&1 &&
     (cd "$work" && apt-get "${opts[@]}" download nvidia-cuda-toolkit >>"$work/log" 2>&1) &&
     dpkg-deb --fsys-tarfile "$work"/nvidia-cuda-toolkit_*.deb |
       tar -x -C "$work" ./usr/bin/nvdisasm >>"$work/log" 2>&1 &&
     "$work/usr/bin/nvdisasm" --version >/dev/null 2>&1; then
    "${sudo_cmd[@]}" install -D -m 0755 "$work/usr/bin/nvdisasm" "$tools/bin/nvdisasm"
    echo "install-deps: nvdisasm ($("$tools/bin/nvdisasm" --version | tail -1)) in $tools/bin"
  else
    echo "install-deps: could not fetch nvdisasm from Debian's non-free archive" \
         "(the SASS test will be skipped): $(tail -1 "$work/log" 2>/dev/null)"
  fi
  rm -rf "$work"
}
fetch_nvdisasm
echo "install-deps: done"
