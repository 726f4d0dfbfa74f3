#!/usr/bin/env bash
# Checks the machine code of the attention and GEMV kernels in a binary, object or static
# library built for sm_90: every tensor-core attention kernel (attn_tc_kernel,
# kernels/cuda/attention_tc.cu) and top-k tensor-core scorer (score_tc_kernel, topk.cu) must
# contain HMMA (tensor-core mma) instructions, the attention kernel's wgmma
# instances (kWg, mangled "Lb1E"; attention_wgmma.cu, sm_90a) HGMMA instead, and none of
# these, decode_split_kernel (attention_decode.cu), gemv_kernel (gemv.cu) and
# score_decode_kernel (topk.cu) may use
# local memory (LDL/STL: a register array spilled or indexed at run time). Prints the
# instruction mix per kernel (HMMA, HGMMA = wgmma, LDSM = ldmatrix, LDGSTS = cp.async, BAR,
# LDL/STL).
#
# usage: scripts/check_sass.sh FILE
#        scripts/check_sass.sh --cubin CUBIN...  (cubins, e.g. from check_spills.sh --cubins,
#                                                 their kernels' code disassembled with
#                                                 nvdisasm: for toolkits without cuobjdump)
#        scripts/check_sass.sh --sass TEXT   (checks `cuobjdump -sass` output saved in TEXT; the
#                                             rules' own tests use it where cuobjdump is absent)
# Exit: 0 ok, 1 a check failed, 77 cuobjdump (nvdisasm with --cubin) is not installed (ctest
# counts that as skipped).
#
# nvdisasm: $FOT_NVDISASM, else the first of PATH, /usr/local/cuda/bin and /opt/fotrt-tools/bin
# (where scripts/install-deps.sh puts Debian's, when the CUDA toolkit lacks its own). It reads
# each kernel's code as a raw instruction stream (`nvdisasm -b SM90`), so a disassembler
# older than the compiler that made the cubin still decodes it: the instruction set of an SM
# does not change, only the ELF header does ($FOT_SASS_ARCH replaces SM90).
set -euo pipefail
find_nvdisasm() {
    local c
    for c in "${FOT_NVDISASM:-}" "$(command -v nvdisasm || true)" /usr/local/cuda/bin/nvdisasm \
        /opt/fotrt-tools/bin/nvdisasm; do
        [ -n "$c" ] && [ -x "$c" ] && { echo "$c"; return 0; }
    done
    return 1
}
if [ "${1:-}" = "--cubin" ]; then
    shift
    [ $# -ge 1 ] || { echo "usage: check_sass.sh --cubin CUBIN..." >&2; exit 1; }
    nvdisasm=$(find_nvdisasm) || {
        echo "check_sass.sh: nvdisasm not found (set FOT_NVDISASM, or run scripts/install-deps.sh): skipped"
        exit 77
    }
    for f in "$@"; do [ -f "$f" ] || { echo "check_sass.sh: no file '$f'" >&2; exit 1; }; done
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    # Every .text.KERNEL section of every cubin as a file of its own (an index file names them).
    python3 - "$tmp" "$@" <<'PY' || exit 1
import re, struct, sys
out, n = sys.argv[1], 0
# Only the kernels the rules below look at (nvdisasm takes ~0.5 s per call).
checked = re.compile(r"attn_tc_kernel|decode_split_kernel|gemv_kernel|score_decode_kernel|score_tc_kernel")
# Every checked kernel's code back to back in one blob (instructions are 16 bytes, so each
# kernel starts on an instruction): one nvdisasm run instead of one per kernel (~0.45 s each).
with open(out + "/index", "w") as index, open(out + "/all.bin", "wb") as blob:
    at = 0
    for path in sys.argv[2:]:
        d = open(path, "rb").read()
        if d[:4] != b"\x7fELF" or d[4] != 2:
            sys.exit(f"check_sass.sh: {path} is not a 64-bit ELF cubin")
        shoff, = struct.unpack_from("<Q", d, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", d, 0x3A)
        secs = [struct.unpack_from("<IIQQQQIIQQ", d, shoff + i * shentsize) for i in range(shnum)]
        strtab = secs[shstrndx][4]
        for s in secs:
            name = d[strtab + s[0]:d.index(b"\0", strtab + s[0])].decode()
            if name.startswith(".text.") and s[5] > 0 and checked.search(name):
                n += 1
                blob.write(d[s[4]:s[4] + s[5]])
                index.write(f"{at} {s[5]} {name[len('.text.'):]}\n")
                at += s[5]
if n == 0:
    sys.exit("check_sass.sh: no kernel code (.text.*) in " + " ".join(sys.argv[2:]))
PY
    # An nvdisasm older than the compiler leaves out the instructions whose opcodes it does not
    # know (newer forms of integer and uniform-datapath ops: 5% of the wgmma kernel with CUDA
    # 11.8's); each kernel's line says how many, so its mix is a lower bound. HMMA, HGMMA, LDSM,
    # LDGSTS, BAR and LDL/STL are all older than that disassembler.
    # The blob's listing cut back into kernels by each instruction's /*offset*/; an instruction
    # it cannot decode has no line, so a kernel's undecoded count is its size / 16 less its lines.
    disassemble() {
        "$nvdisasm" -b "${FOT_SASS_ARCH:-SM90}" "$tmp/all.bin" > "$tmp/all.sass" ||
            { echo "check_sass.sh: nvdisasm failed" >&2; return 1; }
        python3 - "$tmp/index" "$tmp/all.sass" <<'PY'
import re, sys
kernels = [(int(a), int(b), n) for a, b, n in (l.split() for l in open(sys.argv[1]))]
lines = [[] for _ in kernels]
k = 0
for line in open(sys.argv[2]):
    m = re.match(r"\s*/\*([0-9a-f]+)\*/", line)
    if not m:
        continue
    off = int(m.group(1), 16)
    while k + 1 < len(kernels) and off >= kernels[k + 1][0]:
        k += 1
    lines[k].append(line)
for (start, size, name), ls in zip(kernels, lines):
    sys.stdout.write(f"\t\tFunction : {name}\n" + "".join(ls) +
                     f"\t\tUndecoded : {size // 16 - len(ls)}\n")
PY
    }
elif [ "${1:-}" = "--sass" ]; then
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
    /Undecoded :/ { undecoded[name] = $3; next }
    name ~ /attn_tc_kernel|decode_split_kernel|gemv_kernel|score_decode_kernel|score_tc_kernel/ {
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
            printf "%s: HMMA %d, HGMMA %d, LDSM %d, LDGSTS %d, BAR %d, LDL/STL %d", f, hmma[f], hgmma[f], ldsm[f], cp[f], bar[f], local[f]
            if (f in undecoded) printf " (%d instructions not decoded)", undecoded[f]
            printf "\n"
            wg = f ~ /attn_tc_kernel.*Lb1E/
            if (f ~ /attn_tc_kernel|score_tc_kernel/ && !wg && hmma[f] == 0) { printf "check_sass.sh: %s: no HMMA\n", f; bad = 1 }
            if (wg && hgmma[f] == 0) { printf "check_sass.sh: %s: no HGMMA (a wgmma instance)\n", f; bad = 1 }
            if (local[f] > 0) { printf "check_sass.sh: %s: local memory (LDL/STL)\n", f; bad = 1 }
        }
        if (n == 0) { print "check_sass.sh: none of the checked kernels is in the SASS"; exit 1 }
        exit bad
    }'
