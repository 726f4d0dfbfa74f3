#!/usr/bin/env bash
# Checks the machine code of the attention and GEMV kernels in a binary, object or static
# library built for sm_90: every tensor-core attention kernel (attn_tc_kernel,
# kernels/cuda/attention_tc.cu) must contain HMMA (tensor-core mma) instructions, its wgmma
# instances (kWg, mangled "Lb1E"; attention_wgmma.cu, sm_90a) HGMMA instead, and none of
# attn_tc_kernel, decode_split_kernel (attention_decode.cu), gemv_kernel (gemv.cu) and
# score_decode_kernel (topk.cu) may use
# local memory (LDL/STL: a register array spilled or indexed at run time). Prints the
# instruction mix per kernel (HMMA, HGMMA = wgmma, LDSM = ldmatrix, LDGSTS = cp.async, BAR,
# LDL/STL).
#
# usage: scripts/check_sass.sh FILE
#        scripts/check_sass.sh --sass TEXT   (checks `cuobjdump -sass` output saved in TEXT; the
#                                             rules' own tests use it where cuobjdump is absent)
# Exit: 0 ok, 1 a check failed, 77 cuobjdump is not installed (ctest counts that as skipped).
set -euo pipefail
if [ "${1:-}" = "--sass" ]; then
    file="${2:?usage: check_sass.sh --sass TEXT}"
    [ -f "$file" ] || { echo "check_sass.sh: no file '$file'" >&2; exit 1; }
    disassemble() { cat "$file"; }
else
    file="${1:?usage: check_sass.sh FILE (binary, object or .a with sm_90 code)}"
    cuobjdump=$(command -v cuobjdump || true)
    [ -z "$cuobjdump" ] && [ -x /usr/local/cuda/bin/cuobjdump ] && cuobjdump=/usr/local/cuda/bin/cuobjdump
    if [ -z "$cuobjdump" ]; then
        echo "check_sass.sh: cuobjdump not found (CUDA toolkit without its binary utilities): skipped"
        exit 77
    fi
    [ -f "$file" ] || { echo "check_sass.sh: no file '$file'" >&2; exit 1; }
    disassemble() { "$cuobjdump" -sass "$file"; }
fi
disassemble | awk '
    /Function :/ { name = $3; next }
    name ~ /attn_tc_kernel|decode_split_kernel|gemv_kernel|score_decode_kernel/ {
        if ($0 ~ /HMMA/) hmma[name]++
        if ($0 ~ /HGMMA/) hgmma[name]++
        if ($0 ~ /LDSM/) ldsm[name]++
        if ($0 ~ /LDGSTS/) cp[name]++
        if ($0 ~ /BAR\.SYNC/) bar[name]++
        if ($0 ~ /[^A-Z](LDL|STL)[. ]/) local[name]++
        seen[name] = 1
    }
    END {
        n = 0; bad = 0
        for (f in seen) {
            n++
            printf "%s: HMMA %d, HGMMA %d, LDSM %d, LDGSTS %d, BAR %d, LDL/STL %d\n", f, hmma[f], hgmma[f], ldsm[f], cp[f], bar[f], local[f]
            wg = f ~ /attn_tc_kernel.*Lb1E/
            if (f ~ /attn_tc_kernel/ && !wg && hmma[f] == 0) { printf "check_sass.sh: %s: no HMMA\n", f; bad = 1 }
            if (wg && hgmma[f] == 0) { printf "check_sass.sh: %s: no HGMMA (a wgmma instance)\n", f; bad = 1 }
            if (local[f] > 0) { printf "check_sass.sh: %s: local memory (LDL/STL)\n", f; bad = 1 }
        }
        if (n == 0) { print "check_sass.sh: none of the checked kernels is in the SASS"; exit 1 }
        exit bad
    }'
