#!/usr/bin/env bash
# Builds fotrt with CUDA on a GPU machine and runs fot_gpu_bench: a LongLLaMA-3B-shaped model
# with random bf16 weights (hidden 3200, 32 heads, 26 layers, mem_layers [6,12,18], W 2048,
# lcl 1024); prefill time at 16k, 64k and 128k tokens, decode ms/token after each, achieved
# TFLOP/s and GB/s against the device's measured peaks, and peak device memory.
#
# usage: bench/gpu_bench.sh [fot_gpu_bench options, e.g. --lengths 16k,64k --decode-steps 16]
# environment:
#   BUILD_DIR   build directory (default: <repo>/build-gpu-bench)
#   CUDA_ARCH   CMAKE_CUDA_ARCHITECTURES (default 90: H100/H200)
#   BUNDLE_DIR  if set: only build, then copy fot_gpu_bench, the GPU test binaries and every
#               shared library they load (except glibc and the driver) into BUNDLE_DIR, for a
#               GPU machine that has the CUDA driver but none of the build dependencies
#               (run there with LD_LIBRARY_PATH=BUNDLE_DIR/lib).
# Needs the build dependencies of fotrt (scripts/install-deps.sh) and the CUDA toolkit.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build-gpu-bench}"
arch="${CUDA_ARCH:-90}"
jobs="$(nproc 2>/dev/null || echo 4)"
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi

if ! command -v nvcc >/dev/null 2>&1 && [ ! -x /usr/local/cuda/bin/nvcc ]; then
  echo "gpu_bench.sh: no CUDA compiler (nvcc) found; install the CUDA toolkit" >&2
  exit 1
fi

targets=(fot_gpu_bench)
tests=()
if [ -n "${BUNDLE_DIR:-}" ]; then
  tests=(kernels_backend_conformance_cuda kernels_cuda_golden_test kernels_cuda_factory_test)
  targets+=("${tests[@]}")
fi

cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DFOT_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="$arch" -DFOT_BUILD_BENCH=ON \
  -DFOT_BUILD_TESTS="$([ ${#tests[@]} -gt 0 ] && echo ON || echo OFF)" >/dev/null
cmake --build "$build" --target "${targets[@]}" -j"$jobs"

if [ -n "${BUNDLE_DIR:-}" ]; then
  mkdir -p "$BUNDLE_DIR/lib"
  bins=("$build/bench/fot_gpu_bench")
  for t in "${tests[@]}"; do bins+=("$build/tests/kernels/$t"); done
  cp "${bins[@]}" "$BUNDLE_DIR/"
  for b in "${bins[@]}"; do
    ldd "$b" | awk '/=> \//{print $3}' | while read -r lib; do
      case "$(basename "$lib")" in
        libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libcuda.so*) ;;
        *) cp -Ln "$lib" "$BUNDLE_DIR/lib/" 2>/dev/null || true ;;
      esac
    done
  done
  # cuBLAS is loaded at run time (kernels/cuda/cublas_api.h), so ldd does not list it: copy it
  # from beside libcudart.
  cudart=$(ldd "$build/bench/fot_gpu_bench" | awk '/libcudart/{print $3}')
  if [ -n "$cudart" ]; then
    cp -Ln "$(dirname "$cudart")"/libcublas.so.* "$(dirname "$cudart")"/libcublasLt.so.* \
      "$BUNDLE_DIR/lib/" 2>/dev/null || true
  fi
  echo "gpu_bench.sh: bundle in $BUNDLE_DIR (run with LD_LIBRARY_PATH=$BUNDLE_DIR/lib;" \
       "copy tests/data too and set FOT_TEST_DATA to it for the golden test)"
  exit 0
fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
exec "$build/bench/fot_gpu_bench" "$@"
