#!/usr/bin/env bash
# Installs the system packages (scripts/install-deps.sh) and builds fotrt.
#   scripts/build.sh                 # Release build in build/release
#   BUILD_DIR=out FOT_CUDA=OFF scripts/build.sh
#   PREFIX=~/.local scripts/build.sh  # and install: fotrt in ~/.local/bin (cmake --install)
# Extra arguments are passed to cmake's configure step (e.g. -DFOT_BUILD_TESTS=OFF).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
build_dir=${BUILD_DIR:-build/release}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFOT_CUDA="${FOT_CUDA:-AUTO}" "$@"
cmake --build "$build_dir" -j"$(nproc)"
echo "build.sh: fotrt is at $build_dir/launch/fotrt"
if [ -n "${PREFIX:-}" ]; then
    cmake --install "$build_dir" --prefix "$PREFIX"
    echo "build.sh: installed $PREFIX/bin/fotrt (put $PREFIX/bin on PATH to run it as fotrt)"
fi
