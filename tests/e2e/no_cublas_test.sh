#!/usr/bin/env bash
# A CPU run of a CUDA-enabled fotrt never loads cuBLAS (kernels/cuda/cublas_api.h): cuBLAS's
# start-up costs ~0.4 s and ~100 MB per process and rank. The dynamic loader's own log
# (LD_DEBUG=libs) says which libraries a process initialised; libcudart must be among them
# (it is linked), so the check is known to see what was loaded.
# Usage: no_cublas_test.sh FOTRT DATA_DIR
set -uo pipefail
fotrt=$1
data=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
check() {  # NAME COMMAND...
    local name=$1
    shift
    if ! LD_DEBUG=libs LD_DEBUG_OUTPUT="$tmp/ld" "$@" >"$tmp/out" 2>&1; then
        echo "FAIL: $name: exit code"; cat "$tmp/out"; status=1; return
    fi
    local log; log=$(cat "$tmp"/ld.* 2>/dev/null); rm -f "$tmp"/ld.*
    if ! grep -q "calling init: .*libcudart" <<<"$log"; then
        echo "FAIL: $name: the loader's log shows no libcudart: this check sees nothing"; status=1
    elif grep -q "libcublas" <<<"$log"; then
        echo "FAIL: $name loaded cuBLAS:"; grep "libcublas" <<<"$log" | head -5; status=1
    else
        echo "ok: $name does not load cuBLAS"
    fi
}
check "fotrt --help" "$fotrt" --help
check "fotrt logits --backend cpu" "$fotrt" logits --model "$data/golden/case_a" \
    --ids "$data/golden/case_a/input_ids.json" --out "$tmp/logits.f32" --backend cpu --threads 1
exit $status
