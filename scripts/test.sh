#!/usr/bin/env bash
# Installs dependencies, builds everything from scratch and runs every test: this is what CI
# runs (.ci/run). Two builds:
#   1. build/asan: CPU-only with AddressSanitizer and UndefinedBehaviorSanitizer (any report
#      fails the test: halt_on_error); runs the tests labelled io: the checkpoint readers fed
#      corrupt files, and the hostile-input suite (e2e_hostile_test).
#   2. build/fuzz: clang, CPU-only, only the parsers' libraries and the libFuzzer targets of
#      tests/fuzz (ASan+UBSan); each target runs FUZZ_SECONDS (default 10) over its seed
#      corpus, two at a time; a crash, a sanitizer report or a timeout fails CI.
#   3. build/ci: the full build (CUDA kernels compiled and linked when nvcc exists, and also
#      compiled against the CPU emulator in kernels/cuda/emu so their logic is tested without
#      a GPU: the `emulated.*` tests); runs every test except those labelled gpu (they skip
#      without a device anyway). Its ctest summary is the last thing printed.
# Environment: BUILD_ROOT (default build), JOBS (default nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

root=${BUILD_ROOT:-build}
jobs=${JOBS:-$(nproc)}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Tests measure correctness, not speed: keep thread counts small on small machines.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-2}

start=$(date +%s)
rm -rf "$root/asan" "$root/fuzz" "$root/ci"

echo "== test.sh: AddressSanitizer + UBSan build (checkpoint readers, hostile inputs)"
cmake -S . -B "$root/asan" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DFOT_CUDA=OFF \
    -DFOT_SANITIZE=address,undefined -DFOT_BUILD_BENCH=OFF -DFOT_NATIVE=OFF
cmake --build "$root/asan" -j"$jobs" --target fotrt io_parsers_test io_checkpoint_test io_cli_test \
    e2e_hostile_test
(cd "$root/asan" && ASAN_OPTIONS=detect_leaks=0 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ctest -L io --output-on-failure -j"$jobs")

echo "== test.sh: libFuzzer targets (clang), ${FUZZ_SECONDS:-10} s each"
fuzz_start=$(date +%s)
CC=clang CXX=clang++ cmake -S . -B "$root/fuzz" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CXX_FLAGS=-gline-tables-only -DFOT_CUDA=OFF -DFOT_FUZZ=ON -DFOT_BUILD_TESTS=OFF \
    -DFOT_BUILD_BENCH=OFF -DFOT_NATIVE=OFF
fuzz_targets=(safetensors pickle ids jsonl model_config yaml)
cmake --build "$root/fuzz" -j"$jobs" --target "${fuzz_targets[@]/#/fuzz_}"
mkdir -p "$root/fuzz/runs"
# New inputs go to a scratch folder (the first one given); the seed corpus stays as it is.
printf '%s\n' "${fuzz_targets[@]}" | xargs -P "$jobs" -I{} sh -c '
    mkdir -p "$0/runs/{}.new"
    "$0/tests/fuzz/fuzz_{}" -max_total_time="$1" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$0/runs/{}-" "$0/runs/{}.new" tests/fuzz/corpus/{} \
        >"$0/runs/{}.log" 2>&1 || { tail -40 "$0/runs/{}.log"; echo "fuzz_{} FAILED"; exit 255; }
    echo "fuzz_{}: $(grep -o "Done [0-9]* runs" "$0/runs/{}.log")"' "$root/fuzz" "${FUZZ_SECONDS:-10}"
echo "== test.sh: fuzzing done in $(( $(date +%s) - fuzz_start )) s"

echo "== test.sh: full build"
cmake -S . -B "$root/ci" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFOT_CUDA_EMULATOR=ON
cmake --build "$root/ci" -j"$jobs"
echo "== test.sh: builds done after $(( $(date +%s) - start )) s"
cd "$root/ci"
ctest --output-on-failure -LE gpu -j"$jobs"
