#!/usr/bin/env bash
# Runs the CUDA backend's GPU tests on the CPU through the CUDA emulator (see README.md):
# the .cu kernels, kernels/cuda/blas.cpp and runtime/backend/cuda_backend.cpp are compiled as
# C++ against the emulator headers and linked with the tests; the rest of fotrt comes from an
# existing build directory (any configuration; its libfot_backend/kernels_cuda are not used).
#
# usage: kernels/cuda/emu/run_emulated_tests.sh BUILD_DIR [gtest args, e.g. --gtest_filter=...]
# Development tool: slow (every CUDA thread is a fiber), not part of CI.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
build="$(cd "${1:?usage: run_emulated_tests.sh BUILD_DIR [gtest args]}" && pwd)"
shift
out="$build/cuda_emu"
mkdir -p "$out"
emu="$root/kernels/cuda/emu"
cxx=(g++ -std=c++20 -O2 -g -fno-strict-aliasing -ffp-contract=off -fopenmp -I"$emu" -I"$root" -DFOT_HAVE_CUDA=1 -DFOT_HAVE_NCCL=0 -DFOT_CUDA_EMU_BUILD=1
     -Wno-unknown-pragmas -I/usr/include/x86_64-linux-gnu/openblas-pthread
     -DFOT_SOURCE_DIR="\"$root\"" -DFOT_TEST_DATA="\"$root/tests/data\""
     -DFOT_BINARY_DIR="\"$build\"" -DFOTRT_EXE="\"$build/launch/fotrt\"")

objs=()
compile() {  # source object
  if [ ! -f "$2" ] || [ "$1" -nt "$2" ] || [ -n "$(find "$root/kernels/cuda" "$emu" -newer "$2" -name '*.h' -o -newer "$2" -name '*.cuh' | head -1)" ]; then
    echo "  compile $(basename "$1")"
    "${cxx[@]}" -c "$1" -o "$2"
  fi
  objs+=("$2")
}
for cu in elementwise rowwise attention attention_tc attention_wgmma attention_decode gemv topk; do
  python3 "$emu/preprocess.py" "$root/kernels/cuda/$cu.cu" "$out/$cu.emu.cpp.new"
  if ! cmp -s "$out/$cu.emu.cpp.new" "$out/$cu.emu.cpp"; then mv "$out/$cu.emu.cpp.new" "$out/$cu.emu.cpp"; else rm "$out/$cu.emu.cpp.new"; fi
  compile "$out/$cu.emu.cpp" "$out/$cu.o"
done
compile "$emu/emu.cpp" "$out/emu.o"
compile "$emu/fiber.cpp" "$out/fiber.o"
compile "$root/kernels/cuda/blas.cpp" "$out/blas.o"
compile "$root/kernels/cuda/cublas_api.cpp" "$out/cublas_api.o"
compile "$root/runtime/backend/cuda_backend.cpp" "$out/cuda_backend.o"
compile "$root/runtime/backend/cuda_phase_profiler.cpp" "$out/cuda_phase_profiler.o"
compile "$root/runtime/backend/backend_factory.cpp" "$out/backend_factory.o"
compile "$root/runtime/backend/cpu_backend.cpp" "$out/cpu_backend.o"
lib_objs=("${objs[@]}")

libs=("$build/runtime/jobs/libfot_jobs.a" "$build/runtime/model/libfot_model.a"
      "$build/runtime/memory/libfot_memory.a" "$build/parallel/libfot_parallel.a"
      "$build/runtime/io/libfot_tokenizer.a" "$build/runtime/io/libfot_io.a"
      "$build/config/libfot_config.a" "$build/kernels/cpu/libfot_kernels_cpu.a"
      "$build/runtime/core/libfot_core.a")
sys=(-L/usr/lib/x86_64-linux-gnu/openmpi/lib -lgtest -lgtest_main -lsentencepiece
     -lsentencepiece_train -lyaml-cpp -lmpi_cxx -lmpi -lopenblas -lgomp -lpthread)

# Each test binary and its sources (tests/kernels/CMakeLists.txt builds the same ones).
declare -A sources=(
  [backend_conformance_cuda_emulated]="backend_conformance backend_reference backend_conformance_cuda cuda_backend_test"
  [cuda_golden_test]="cuda_golden_test")
status=0
for t in backend_conformance_cuda_emulated cuda_golden_test; do
  objs=()
  for src in ${sources[$t]}; do compile "$root/tests/kernels/$src.cpp" "$out/$src.o"; done
  g++ -fopenmp -o "$out/$t" "${objs[@]}" "${lib_objs[@]}" "${libs[@]}" "${sys[@]}"
  echo "== $t (emulated)"
  "$out/$t" "$@" || status=1
done
exit $status
