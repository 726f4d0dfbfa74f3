#!/usr/bin/env bash
# Multi-rank end-to-end tests of the fotrt CLI under mpirun (run by ctest):
#  - `fotrt logits` with --tp 2/4, --mp 2/4 and --tp 2 --mp 2 reproduces golden logits;
#  - greedy `fotrt generate` across local-cache flushes is identical to the reference;
#  - one rank failing mid-forward ends the whole job quickly with that rank's message;
#  - memory-capacity overflow is a clear error, not a crash or a hang;
#  - --stats prints one line per rank.
# Usage: mpi_cli_test.sh FOTRT DATA_DIR
set -uo pipefail
fotrt=$1
data=$2
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
mpirun="mpirun --oversubscribe"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

max_diff() {  # max |a - b| of two float32 files (prints "size-mismatch" when they differ)
    python3 - "$1" "$2" <<'PY'
import struct, sys
a = open(sys.argv[1], 'rb').read(); b = open(sys.argv[2], 'rb').read()
if len(a) != len(b):
    print("size-mismatch"); sys.exit(0)
n = len(a) // 4
x = struct.unpack('<%df' % n, a); y = struct.unpack('<%df' % n, b)
print(max(abs(p - q) for p, q in zip(x, y)))
PY
}

check_logits() {  # NP CASE ARGS...
    local np=$1 case=$2; shift 2
    local dir=$data/golden/$case out=$tmp/$case-$np-$(echo "$*" | tr -d ' -').f32
    if ! timeout 120 $mpirun -np "$np" "$fotrt" logits --model "$dir" --ids "$dir/input_ids.json" \
            --out "$out" --threads 1 "$@" >"$tmp/log" 2>&1; then
        fail "logits np=$np $case $*: exit code"; cat "$tmp/log"; return
    fi
    local d; d=$(max_diff "$out" "$dir/logits.f32")
    if python3 -c "import sys; sys.exit(0 if '$d' != 'size-mismatch' and float('$d') < 1e-4 else 1)"; then
        echo "ok: logits np=$np $case $* (max diff $d)"
    else
        fail "logits np=$np $case $*: max diff $d"
    fi
}

check_logits 2 case_f --tp 2
check_logits 4 case_f --tp 4
check_logits 2 case_f --mp 2
check_logits 4 case_f --mp 4
check_logits 4 case_f --tp 2 --mp 2
check_logits 2 case_a --mp 2
check_logits 4 case_e --tp 2 --mp 2
check_logits 4 case_a --mp 4 --retrieval topk --k 512

# Greedy generation across flushes (case_a flushes at step 5), tp x mp = 2 x 2.
dir=$data/golden/case_a
if timeout 120 $mpirun -np 4 "$fotrt" generate --model "$dir" --ids "$dir/input_ids.json" \
        --max-new-tokens 16 --ignore-eos --json --tp 2 --mp 2 --threads 1 >"$tmp/gen.json" 2>"$tmp/log"; then
    if python3 - "$tmp/gen.json" "$dir/greedy.json" <<'PY'
import json, sys
got = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
ref = json.load(open(sys.argv[2]))
assert got["new_tokens"] == ref["new_tokens"], (got["new_tokens"], ref["new_tokens"])
assert len(got["memory_stats"]) == 4
assert sum(r["memory_tokens"] for r in got["memory_stats"] if r["tp_rank"] == 0) == got["memory_tokens"]
PY
    then echo "ok: generate --tp 2 --mp 2 equals the reference"; else fail "generate --tp 2 --mp 2"; fi
else
    fail "generate --tp 2 --mp 2: exit code"; cat "$tmp/log"
fi

# One rank throws mid-forward: the job ends non-zero, quickly, with that rank's message.
start=$(date +%s)
FOT_INJECT_FAULT=1:1 timeout 60 $mpirun -np 2 "$fotrt" logits --model "$dir" --ids "$dir/input_ids.json" \
    --out "$tmp/fault.f32" --tp 2 --threads 1 >"$tmp/fault.log" 2>&1
code=$?
elapsed=$(( $(date +%s) - start ))
if [ "$code" -ne 0 ] && [ "$code" -ne 124 ] && [ "$elapsed" -le 30 ] \
        && grep -q "\[rank 1/2\].*injected fault" "$tmp/fault.log" && [ ! -e "$tmp/fault.f32" ]; then
    echo "ok: injected fault on rank 1 ended the job in ${elapsed}s with exit code $code"
else
    fail "fault injection: exit $code after ${elapsed}s"; cat "$tmp/fault.log"
fi

# Capacity overflow with memory parallelism: a clear error, no hang.
timeout 60 $mpirun -np 2 "$fotrt" logits --model "$dir" --ids "$dir/input_ids.json" \
    --out "$tmp/cap.f32" --mp 2 --mem-capacity 40 --threads 1 >"$tmp/cap.log" 2>&1
code=$?
if [ "$code" -ne 0 ] && [ "$code" -ne 124 ] && grep -q "does not fit in memory.*--mp 3" "$tmp/cap.log"; then
    echo "ok: capacity overflow is a clear error (exit $code)"
else
    fail "capacity overflow: exit $code"; cat "$tmp/cap.log"
fi

# --stats: one line per rank after the header.
if timeout 60 $mpirun -np 4 "$fotrt" logits --model "$dir" --ids "$dir/input_ids.json" \
        --out "$tmp/s.f32" --mp 4 --stats --threads 1 >"$tmp/stats.log" 2>&1 \
        && [ "$(grep -cE '^ +[0-3] +0 +[0-3] ' "$tmp/stats.log")" -eq 4 ]; then
    echo "ok: --stats prints every rank"
else
    fail "--stats"; cat "$tmp/stats.log"
fi

echo "mpi_cli_test: $failures failure(s)"
[ "$failures" -eq 0 ]
