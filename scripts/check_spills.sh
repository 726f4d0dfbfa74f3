#!/usr/bin/env bash
# Compiles CUDA sources with `ptxas -v` and fails when a kernel spills registers or has a
# stack frame (local memory: a register array spilled or indexed at run time). The same
# property as check_sass.sh's LDL/STL check, but from ptxas's report, so it runs wherever
# nvcc is (CI has no GPU and no cuobjdump). Guards the kernels whose register use is near
# the limit: attn_tc_kernel with two m-tiles per warp takes 250-255 of 255 registers at
# head dim 100, and any change to it can tip ptxas into spilling.
#
# usage: scripts/check_spills.sh [--cubins DIR] NVCC ARCH FILE.cu[@ARCH]...   (ARCH: e.g. 90;
#        a file's own @ARCH, e.g. attention_wgmma.cu@90a, replaces it for that file;
#        --cubins keeps each file's cubin as DIR/FILE.cubin, for check_sass.sh --cubin)
# Exit: 0 no spills, 1 a kernel spills or a compile failed, 2 usage.
set -uo pipefail
keep=""
if [ "${1:-}" = "--cubins" ]; then
    keep="${2:?usage: check_spills.sh --cubins DIR NVCC ARCH FILE.cu...}"
    shift 2
    mkdir -p "$keep" || exit 2
fi
[ $# -ge 3 ] || { echo "usage: check_spills.sh NVCC ARCH FILE.cu..." >&2; exit 2; }
nvcc="$1" arch="$2"
shift 2
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
bad=0
for spec in "$@"; do
    f="${spec%@*}" a="$arch"
    [ "$f" != "$spec" ] && a="${spec##*@}"
    log="$tmp/$(basename "$f").log"
    cubin="${keep:-$tmp}/$(basename "$f" .cu).cubin"
    rm -f "$cubin"
    if ! "$nvcc" -DFOT_HAVE_CUDA=1 -I"$root" -O3 -DNDEBUG -std=c++17 --expt-relaxed-constexpr \
        --generate-code=arch=compute_"$a",code=sm_"$a" -Xptxas -v -x cu -cubin "$f" \
        -o "$cubin" > "$log" 2>&1; then
        echo "check_spills.sh: $f does not compile:" >&2
        cat "$log" >&2
        bad=1
        continue
    fi
    # ptxas prints, per kernel: "Compiling entry function 'NAME'", then "N bytes stack frame,
    # S bytes spill stores, L bytes spill loads", then "Used R registers".
    awk -v file="$(basename "$f")" '
        /Compiling entry function/ { name = $0; sub(/.*function .?/, "", name); sub(/.? for .*/, "", name) }
        /bytes stack frame/ { frame = $1; st = $5; ld = $9 }
        /Used [0-9]+ registers/ {
            n++
            regs = $0; sub(/.*Used /, "", regs); sub(/ registers.*/, "", regs)
            if (frame + st + ld > 0) {
                printf "%s: %s: %s registers, %d bytes stack frame, %d/%d bytes spilled (stores/loads)\n", file, name, regs, frame, st, ld
                bad = 1
            }
            if (regs + 0 > max) max = regs + 0
        }
        END {
            if (n == 0) { printf "%s: no kernel in the ptxas report\n", file; exit 1 }
            if (bad) printf "%s: %d kernels, some spill (above)\n", file, n
            else printf "%s: %d kernels, none spills (at most %d registers)\n", file, n, max
            exit bad
        }' "$log" || bad=1
done
exit $bad
