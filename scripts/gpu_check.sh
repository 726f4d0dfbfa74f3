#!/usr/bin/env bash
# One-shot GPU check: everything a session with a lent GPU should run, in one call that fits
# a short lease (target <= 9 minutes on one H100/H200), writing every log and a summary JSON.
#
# usage:
#   scripts/gpu_check.sh [--dry-run] [--bundle DIR|DIR.tar.gz] [--out DIR] [--skip STEP[,...]]
#                        [--deadline SECONDS]
#   scripts/gpu_check.sh --make-bundle DIR      # build here, copy what a GPU machine needs
#
# Steps, in this order (each with its own time limit; a step that fails or times out is
# recorded and the next one still runs). --deadline (default 540 s, or FOT_GPU_CHECK_DEADLINE;
# 0: none) bounds the run after the build step: a step gets at most the time left before it, and a step that would get
# under 20 s is skipped and recorded as skipped-deadline, so the run ends, with its summary,
# before a lease tool's per-command limit (600 s for the project's device tool) kills it. The
# order puts what a session needs most first: the tests, then the benchmark (the targets).
#   device     nvidia-smi, compute-sanitizer --version
#   tests      the GPU test suite: `ctest -L gpu` in a build tree, or the same test binaries
#              run directly from a bundle (the backend conformance suite on CudaBackend vs
#              CpuBackend, golden cases with --backend cuda, the factory test)
#   bench      fot_gpu_bench, 3B shape: fast dense prefill 16k/64k/128k and decode after each,
#              exact dense 16k, fast top-k (k 128) 16k and 64k, fast dense 16k again with
#              FOT_CUDA_PDL=0, FOT_CUDA_GRAPH=0, with FOT_CUDA_GEMV_SPLIT=1 and with
#              FOT_CUDA_GEMV_NORM=0,
#              top-k 64k again with FOT_CUDA_TOPK=rows-one-block, FOT_CUDA_TOPK=rows and
#              FOT_CUDA_TOPK_TC=0,
#              fast dense 64k again with FOT_CUDA_ATTN_MT=1, fast dense 64k and 128k with
#              FOT_CUDA_ATTN_WGMMA=1 (the wgmma attention kernel; off by default until this
#              run says it wins) (the ordinary launches, no step
#              graphs, the GEMV
#              without split-K, the add + RMSNorm as a launch of its own, the one-block top-k
#              select, the score-rows top-k prefill instead of the filtered one, fp32 top-k
#              scores instead of the tensor cores and the
#              64-query tensor-core attention blocks, for comparison), top-k 128k;
#              per-phase tables (FOT_BENCH_ARGS replaces these runs with one)
#   sanitize   compute-sanitizer memcheck, racecheck, synccheck and initcheck over the kernel
#              tests (kernels_backend_conformance_cuda, filtered by FOT_SANITIZE_FILTER)
#   ncu        when Nsight Compute is there: SpeedOfLight and Occupancy of the first decode
#              step's GEMVs (layers 0-1: q|k|v, o, gate|up with SiLU-mul, down), of its
#              top-k scoring launches (fast top-k 16k) and, with pipe use and warp stalls, of
#              two tensor-core attention launches of a 16k prefill and two launches of the
#              top-k prefill's tensor-core scorer
#   sass       cuobjdump -sass of the attention kernels: HMMA present, no local-memory spills
#              (last: CI checks the same code with nvdisasm, so it is the least news here)
#
# Where the binaries come from:
#   - default: configure and build build-gpu-check/ here with -DFOT_CUDA=ON (needs fotrt's
#     build dependencies: scripts/install-deps.sh and the CUDA toolkit);
#   - --bundle DIR (or FOT_GPU_BUNDLE): binaries made by `--make-bundle DIR` on a machine that
#     has the dependencies; for GPU machines that have the driver and the CUDA toolkit but not
#     MPI/yaml-cpp/sentencepiece dev packages. cuBLAS/NCCL/cudart are taken from the GPU
#     machine's toolkit, not shipped (they are too large to carry). --make-bundle also writes
#     DIR.tar.gz: every binary holds the same 7.4 MB of sm_90 code and OpenBLAS is 36 MB, so
#     the directory is ~110 MB and the tarball ~40 MB (the device tool carries at most
#     64 MiB); --bundle DIR.tar.gz unpacks it into a temporary directory first.
#
# Output: every log and summary.json go to --out DIR, else $OUT, else ./gpu-check-out
# (at most 8 files, so a lease tool that returns few files gets them all). Exit status: 0
# when every step passed, 1 otherwise (a step skipped for the deadline too), 2 for usage errors.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dry_run=0
bundle="${FOT_GPU_BUNDLE:-}"
make_bundle=""
out="${OUT:-}"
skip=","
deadline="${FOT_GPU_CHECK_DEADLINE:-540}"
min_step_s=20

usage() {
    sed -n '2,/^[^#]/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}
die() {
    echo "gpu_check.sh: $*" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
    --dry-run) dry_run=1 ;;
    --bundle) [ $# -ge 2 ] || die "--bundle needs a directory"; bundle="$2"; shift ;;
    --make-bundle) [ $# -ge 2 ] || die "--make-bundle needs a directory"; make_bundle="$2"; shift ;;
    --out) [ $# -ge 2 ] || die "--out needs a directory"; out="$2"; shift ;;
    --skip) [ $# -ge 2 ] || die "--skip needs a list of steps"; skip=",$2,"; shift ;;
    --deadline) [ $# -ge 2 ] || die "--deadline needs a number of seconds"; deadline="$2"; shift ;;
    -h | --help) usage 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
out="${out:-$PWD/gpu-check-out}"
case "$deadline" in '' | *[!0-9]*) die "--deadline: '$deadline' is not a whole number of seconds" ;; esac
for s in $(echo "$skip" | tr ',' ' '); do
    case "$s" in build | device | tests | sanitize | sass | bench | ncu) ;; *) die "--skip: unknown step '$s' (build, device, tests, sanitize, sass, bench, ncu)" ;; esac
done

test_bins=(kernels_cuda_factory_test kernels_backend_conformance_cuda kernels_cuda_golden_test kernels_cuda_golden_fast_test)
# The benchmark runs: fast dense at every length (the targets), exact dense at 16k (the fp32
# path, for comparison), fast top-k (k 128) at 16k and 64k. FOT_BENCH_ARGS replaces all three.
bench_runs=("--precision fast --retrieval dense --lengths 16k,64k,128k --decode-steps 32"
    "--precision exact --retrieval dense --lengths 16k --decode-steps 16 --no-ceilings"
    "--precision fast --retrieval topk --k 128 --lengths 16k,64k --decode-steps 16 --no-ceilings")
[ -n "${FOT_BENCH_ARGS:-}" ] && bench_runs=("$FOT_BENCH_ARGS")
# Every op test and CUDA-specific test, and the attention/top-k cases that reach each kernel
# path (tiled, decode with key splits, tensor-core, top-k scoring, filtered top-k) at a moderate
# size.
sanitize_filter="${FOT_SANITIZE_FILTER:-Conformance/BackendOps.*:CudaBackendTest.*:Conformance/BackendTopk.*D100_T40*:CudaTopkPaths.Filtered*:CudaTopkPaths.TensorCore*:Conformance/BackendAttention.*exact_D100_T200_at10_S3000*:Conformance/BackendAttention.*exact_D100_T1_at37*:Conformance/BackendTopk.*D100_T4*:Conformance/BackendAttention.*fast_D100_T70*:Conformance/BackendAttention.*fast_D16_T64*:Conformance/BackendAttention.*fast_D128_T130_at10_S1000*}"
build="${BUILD_DIR:-$root/build-gpu-check}"

# ---- --make-bundle: build here, copy binaries and the non-system, non-CUDA libraries --------
if [ -n "$make_bundle" ]; then
    command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ] || die "--make-bundle needs the CUDA toolkit (nvcc)"
    gen=()
    command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
    # FOT_NATIVE=OFF: the GPU machine's CPU may lack this machine's instruction set extensions.
    cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DFOT_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}" -DFOT_NATIVE=OFF -DFOT_BUILD_TESTS=ON \
        -DFOT_BUILD_BENCH=ON >/dev/null || exit 1
    cmake --build "$build" -j"$(nproc)" --target fot_gpu_bench fotrt "${test_bins[@]}" || exit 1
    mkdir -p "$make_bundle/lib"
    bins=("$build/bench/fot_gpu_bench" "$build/launch/fotrt")
    for t in "${test_bins[@]}"; do bins+=("$build/tests/kernels/$t"); done
    cp "${bins[@]}" "$make_bundle/"
    for b in "${bins[@]}"; do
        ldd "$b" | awk '/=> \//{print $3}' | while read -r lib; do
            case "$(basename "$lib")" in
            libc.so* | libm.so* | libdl.so* | libpthread.so* | librt.so* | ld-linux* | libcuda.so* | \
                libcublas* | libcudart* | libnccl* | libnvidia*) ;;
            *) cp -Ln "$lib" "$make_bundle/lib/" 2>/dev/null || true ;;
            esac
        done
    done
    make_bundle="$(cd "$make_bundle" && pwd)"
    tar -C "$(dirname "$make_bundle")" -czf "$make_bundle.tar.gz" "$(basename "$make_bundle")" || exit 1
    echo "gpu_check.sh: bundle in $make_bundle ($(du -sh "$make_bundle" | cut -f1)) and" \
        "$make_bundle.tar.gz ($(du -sh "$make_bundle.tar.gz" | cut -f1)); on the GPU machine:" \
        "scripts/gpu_check.sh --bundle $make_bundle[.tar.gz]"
    exit 0
fi

# ---- the plan -------------------------------------------------------------------------------
declare -a step_names step_limits step_cmds step_logs
add_step() { # name limit_s log command...
    local name="$1" limit="$2" log="$3"
    shift 3
    case "$skip" in *",${name%%:*},"*) return ;; esac
    step_names+=("$name")
    step_limits+=("$limit")
    step_logs+=("$log")
    step_cmds+=("$*")
}

if [ -n "$bundle" ] && [ -f "$bundle" ]; then
    # A tarball from --make-bundle: one top-level directory.
    case "$bundle" in *.tar.gz | *.tgz) ;; *) die "--bundle: '$bundle' is a file but not a .tar.gz" ;; esac
    unpacked="$(mktemp -d "${TMPDIR:-/tmp}/fot-gpu-bundle.XXXXXX")" || die "--bundle: mktemp failed"
    trap 'rm -rf "$unpacked"' EXIT
    tar -C "$unpacked" -xzf "$bundle" || die "--bundle: cannot unpack '$bundle'"
    top=("$unpacked"/*)
    [ ${#top[@]} = 1 ] && [ -d "${top[0]}" ] ||
        die "--bundle: '$bundle' does not hold one directory (make it with --make-bundle)"
    echo "gpu_check.sh: unpacked $bundle into ${top[0]}"
    bundle="${top[0]}"
fi
if [ -n "$bundle" ]; then
    bundle="$(cd "$bundle" 2>/dev/null && pwd)" || die "--bundle: no directory '$bundle'"
    bin_dir="$bundle"
    ld="$bundle/lib"
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
        [ -d "$d" ] && ld="$ld:$d"
    done
    # Exported, not prefixed with env: compute-sanitizer must launch the test binary itself.
    export LD_LIBRARY_PATH="$ld${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" FOT_TEST_DATA="$root/tests/data"
    test_cmd="rc=0;"
    for t in "${test_bins[@]}"; do
        test_cmd="$test_cmd $bin_dir/$t --gtest_brief=1 || rc=1;"
    done
    # Golden case_h fast again with the wgmma attention kernel as the default (off by default
    # until measured; its own tests are CudaBackendTest.Wgmma*).
    test_cmd="$test_cmd FOT_CUDA_ATTN_WGMMA=1 $bin_dir/kernels_cuda_golden_fast_test --gtest_brief=1 || rc=1;"
    test_cmd="$test_cmd exit \$rc"
    kernel_test="$bin_dir/kernels_backend_conformance_cuda"
    bench_bin="$bin_dir/fot_gpu_bench"
else
    bin_dir="$build"
    test_cmd="cd $build && ctest -L gpu --output-on-failure && FOT_CUDA_ATTN_WGMMA=1 \
tests/kernels/kernels_cuda_golden_fast_test --gtest_brief=1"
    kernel_test="$build/tests/kernels/kernels_backend_conformance_cuda"
    bench_bin="$build/bench/fot_gpu_bench"
    gen=""
    command -v ninja >/dev/null 2>&1 && gen="-G Ninja"
    add_step build 420 build.log "cmake -S $root -B $build $gen -DCMAKE_BUILD_TYPE=Release -DFOT_CUDA=ON" \
        "-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCH:-90} -DFOT_BUILD_TESTS=ON -DFOT_BUILD_BENCH=ON &&" \
        "cmake --build $build -j$(nproc) --target fot_gpu_bench fotrt ${test_bins[*]}"
fi

# Fails without a visible GPU (the tests then skip and would read as passed).
add_step device 30 device.log "rc=0; nvidia-smi || rc=1; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv;" \
    "compute-sanitizer --version || echo 'compute-sanitizer not found'; exit \$rc"
add_step tests "${FOT_TESTS_LIMIT:-150}" tests.log "$test_cmd"
bench_cmd="rc=0;"
for r in "${bench_runs[@]}"; do bench_cmd="$bench_cmd $bench_bin $r || rc=1;"; done
# Decode at 16k with programmatic dependent launch off (kernels/cuda/pdl.cuh), with step
# graphs off (FOT_CUDA_GRAPH=0: every op its own launches, ~170 per token), and with the
# decode GEMV one warp per row pair over all of K (FOT_CUDA_GEMV_SPLIT=1, session 9's kernel),
# and with the residual add + RMSNorm after o_proj / down_proj as launches of their own
# (FOT_CUDA_GEMV_NORM=0), against the first run's 16k decode; top-k at 64k with one select block per row
# (FOT_CUDA_TOPK=rows-one-block) against the sliced select of the top-k 64k run, and with the
# prefill's top-k through score rows (FOT_CUDA_TOPK=rows: every score written and re-read, the
# default before the filtered path) and with fp32 tile scores instead of the tensor cores
# (FOT_CUDA_TOPK_TC=0) against its filtered prefill; prefill at 64k
# with the tensor-core attention at one m-tile per warp (FOT_CUDA_ATTN_MT=1, session 9's
# 64-query blocks) against the first run's 64k prefill, and with the wgmma attention kernel
# (FOT_CUDA_ATTN_WGMMA=1, attention_wgmma.cu; 64-query blocks too) at 64k and 128k; then top-k at
# 128k (the target "top-k decode <= dense decode at 128k memory"), last because its prefill
# (40 s in session 9) is the longest: if the step's limit ends it, the runs before it are in
# bench.log already.
[ -z "${FOT_BENCH_ARGS:-}" ] && bench_cmd="$bench_cmd FOT_CUDA_PDL=0 $bench_bin --precision fast \
--retrieval dense --lengths 16k --decode-steps 32 --no-ceilings || rc=1; \
FOT_CUDA_GRAPH=0 $bench_bin --precision fast \
--retrieval dense --lengths 16k --decode-steps 32 --no-ceilings || rc=1; \
FOT_CUDA_GEMV_SPLIT=1 $bench_bin --precision fast \
--retrieval dense --lengths 16k --decode-steps 32 --no-ceilings || rc=1; \
FOT_CUDA_GEMV_NORM=0 $bench_bin --precision fast \
--retrieval dense --lengths 16k --decode-steps 32 --no-ceilings || rc=1; \
FOT_CUDA_TOPK=rows-one-block $bench_bin --precision fast \
--retrieval topk --k 128 --lengths 64k --decode-steps 16 --no-ceilings || rc=1; \
FOT_CUDA_TOPK=rows $bench_bin --precision fast \
--retrieval topk --k 128 --lengths 64k --decode-steps 4 --no-ceilings || rc=1; \
FOT_CUDA_TOPK_TC=0 $bench_bin --precision fast \
--retrieval topk --k 128 --lengths 64k --decode-steps 4 --no-ceilings || rc=1; \
FOT_CUDA_ATTN_MT=1 $bench_bin --precision fast \
--retrieval dense --lengths 64k --decode-steps 4 --no-ceilings || rc=1; \
FOT_CUDA_ATTN_WGMMA=1 $bench_bin --precision fast \
--retrieval dense --lengths 64k,128k --decode-steps 4 --no-ceilings || rc=1; \
$bench_bin --precision fast --retrieval topk --k 128 --lengths 128k --decode-steps 16 \
--no-ceilings || rc=1;"
add_step bench "${FOT_BENCH_LIMIT:-240}" bench.log "$bench_cmd exit \$rc"
for tool in memcheck racecheck synccheck initcheck; do
    add_step "sanitize:$tool" "${FOT_SANITIZE_LIMIT:-45}" "sanitize.log" \
        "compute-sanitizer --tool $tool --error-exitcode 86 --print-limit 20 $kernel_test" \
        "--gtest_brief=1 '--gtest_filter=$sanitize_filter'"
done
# Per-kernel figures for what the bench cannot separate. The prefill's only GEMV is the last
# row's LM head (skipped); decode then runs 4 GEMVs per layer; top-k scoring runs in the
# memory layers only.
ncu_bin="$(command -v ncu || echo /usr/local/cuda/bin/ncu)"
if [ -x "$ncu_bin" ] || [ "$dry_run" = 1 ]; then
    # Kernels as ordinary launches (FOT_CUDA_GRAPH=0): the launch counts below are of those.
    ncu_run="FOT_CUDA_GRAPH=0 $ncu_bin --section SpeedOfLight --section Occupancy"
    ncu_app="$bench_bin --precision fast --retrieval topk --k 128 --lengths 16k --decode-steps 1 --no-ceilings"
    # Prefill attention: two tensor-core launches of a 16k prefill past its first windows
    # (local and memory attention over >= 4k keys), with the pipes' use and the warps' stalls;
    # the same for two launches of the top-k prefill's tensor-core scorer (sample, filter), and
    # for two launches of the wgmma attention kernel (FOT_CUDA_ATTN_WGMMA=1).
    ncu_attn="$ncu_run --section ComputeWorkloadAnalysis --section WarpStateStats"
    ncu_attn_app="$bench_bin --precision fast --retrieval dense --lengths 16k --decode-steps 1 --no-ceilings"
    add_step ncu 150 ncu.log "rc=0; $ncu_run --kernel-name regex:gemv_kernel --launch-skip 1" \
        "--launch-count 8 $ncu_app || rc=1; $ncu_run --kernel-name regex:score_decode_kernel" \
        "--launch-count 3 $ncu_app || rc=1; $ncu_attn --kernel-name regex:attn_tc_kernel" \
        "--launch-skip 60 --launch-count 2 $ncu_attn_app || rc=1; $ncu_attn" \
        "--kernel-name regex:score_tc_kernel --launch-skip 20 --launch-count 2 $ncu_app || rc=1;" \
        "FOT_CUDA_ATTN_WGMMA=1 $ncu_attn --kernel-name regex:attn_tc_kernel --launch-skip 60" \
        "--launch-count 2 $ncu_attn_app || rc=1; exit \$rc"
fi

add_step sass 30 sass.log "$root/scripts/check_sass.sh $kernel_test"

if [ "$dry_run" = 1 ]; then
    echo "gpu_check.sh --dry-run: would write logs and summary.json to $out and run:"
    total=0
    for i in "${!step_names[@]}"; do
        printf '  %-20s limit %4ss  -> %-12s %s\n' "${step_names[$i]}" "${step_limits[$i]}" \
            "${step_logs[$i]}" "${step_cmds[$i]}"
        total=$((total + step_limits[i]))
    done
    echo "  worst case ${total} s (the step limits added up)"
    if [ "$deadline" -gt 0 ]; then
        echo "  deadline ${deadline} s after the build (--deadline): a step gets at most the time" \
            "left before it; one that would get under ${min_step_s} s is skipped (skipped-deadline)"
    fi
    exit 0
fi

# ---- run --------------------------------------------------------------------------------------
mkdir -p "$out" || die "cannot create output folder $out"
summary="$out/summary.json"
started=$(date +%s)
clock=$started  # where --deadline counts from: after the build step, if there is one
overall=0
entries=()
json_str() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }
for i in "${!step_names[@]}"; do
    name="${step_names[$i]}"
    log="$out/${step_logs[$i]}"
    limit="${step_limits[$i]}"
    left=$((deadline - ($(date +%s) - clock)))
    if [ "$deadline" -gt 0 ] && [ "$name" != build ] && [ "$left" -lt "$limit" ]; then
        # The kill of a timed-out step takes up to 10 s more (--kill-after).
        limit=$((left - 10))
    fi
    if [ "$limit" -lt "$min_step_s" ]; then
        echo "== gpu_check: $name: not run, ${left}s of the ${deadline}s deadline left" >>"$log"
        rc=-1
        secs=0
        status=skipped-deadline
    else
        echo "== gpu_check: $name (limit ${limit}s)" | tee -a "$log"
        t0=$(date +%s)
        timeout --kill-after=10 "$limit" bash -c "${step_cmds[$i]}" >>"$log" 2>&1
        rc=$?
        secs=$(($(date +%s) - t0))
    fi
    [ "$name" = build ] && clock=$(date +%s)
    if [ $rc -eq -1 ]; then
        :
    elif [ $rc -eq 0 ]; then
        status=pass
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        status=timeout
    elif [ $rc -eq 86 ]; then
        status=sanitizer-errors
    else
        status=fail
    fi
    if [ "$status" = sanitizer-errors ]; then
        # Reports name the kernel; ours are in fot::kernels::cuda. cuBLAS's own kernels (nvjet,
        # splitKreduce) are reported too and are not ours to fix: recorded, not failed.
        ours=$(sed -n "/== gpu_check: $name (limit/,\$p" "$log" | grep -E '^=+ +(at |Error: Race reported)' |
            grep -cE 'kernels4cuda|fot::kernels' || true)
        [ "$ours" = 0 ] && status=cublas-findings-only
    fi
    # A step skipped for time is not a pass: the run did not check what it checks.
    case "$status" in pass | cublas-findings-only) ;; *) overall=1 ;; esac
    echo "== gpu_check: $name: $status (rc $rc, ${secs}s)" | tee -a "$log"
    extra=""
    if [ "$name" = bench ]; then
        # The benchmark's closing table rows, kept in the summary.
        rows=$(grep -E '^\| [0-9]' "$log" | tr '\n' ';')
        extra=", \"table\": \"$(json_str "$rows")\""
    fi
    if [ "$name" = tests ]; then
        extra=", \"failed\": \"$(json_str "$(grep -E '^\[  FAILED  \]|\(Failed\)|\*\*\*Failed' "$log" | sort -u | head -40 | tr '\n' ';')")\""
    fi
    entries+=("{\"step\": \"$name\", \"status\": \"$status\", \"rc\": $rc, \"seconds\": $secs, \"log\": \"${step_logs[$i]}\"$extra}")
    # Rewritten after every step, so a killed run still leaves a summary of what finished.
    {
        echo "{\"started\": \"$(date -u -d @"$started" +%FT%TZ)\", \"bundle\": \"$(json_str "$bundle")\","
        echo " \"gpu\": \"$(json_str "$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)")\","
        echo " \"steps\": ["
        for j in "${!entries[@]}"; do
            sep=","
            [ "$j" -eq $((${#entries[@]} - 1)) ] && sep=""
            echo "  ${entries[$j]}$sep"
        done
        echo " ], \"seconds\": $(($(date +%s) - started)), \"ok\": $([ $overall = 0 ] && echo true || echo false)}"
    } >"$summary"
done
echo "gpu_check: done in $(($(date +%s) - started)) s; summary in $summary"
grep -E '"step"' "$summary" | sed 's/, "log".*//'
[ -f "$out/bench.log" ] && grep -E '^\| ' "$out/bench.log"
exit $overall
