# A frozen rank (SIGSTOP, as a node that hangs) in a dp > 1 batch or score job ends the job on
# every rank within the collective watchdog's timeout (FOT_COLLECTIVE_TIMEOUT, 2 s here), with
# a line naming what it waited for; no rank is left behind, and the journaled records of a
# batch job are kept (the rerun finishes the job). The freeze comes from the test hook
# FOT_DISPATCH_FREEZE=RANK:N (runtime/jobs/dispatch.h): rank RANK stops itself before its
# (N+1)-th document.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# A stopped rank that outlived its job would hold the test's processes: end those (by pid).
leftovers() { pgrep -f -- "--input $T/c.jsonl" || true; }
trap 'for p in $(leftovers); do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$T"' EXIT

M=$GOLDEN/case_a
"$PYTHON" - "$M/input_ids.json" "$T/c.jsonl" <<'PY'
import json, sys
ids = json.load(open(sys.argv[1]))
with open(sys.argv[2], "w") as f:
    for i in range(40):
        f.write(json.dumps({"id": f"doc{i}", "ids": ids[: 20 + (i * 37) % 120]}) + "\n")
PY
N=40
TIMEOUT=2

# frozen NP RANK ITEMS EXPECT CMD...: CMD under mpirun -np NP with rank RANK frozen before its
# (ITEMS+1)-th document. The job must fail well within the test's budget (the timeout, then
# MPI_Abort), with a line holding EXPECT (an extended regex), and leave no rank behind.
frozen() {
    local np=$1 rank=$2 items=$3 expect=$4
    shift 4
    local start=$SECONDS rc=0
    timeout 60 "$MPIEXEC" -np "$np" --oversubscribe -x OMP_NUM_THREADS=1 \
        -x FOT_COLLECTIVE_TIMEOUT=$TIMEOUT -x FOT_DISPATCH_FREEZE="$rank:$items" \
        "$FOTRT" "$@" --threads 1 --progress-interval 0 >"$T/last.out" 2>"$T/last.err" || rc=$?
    local took=$((SECONDS - start))
    [ "$rc" != 0 ] || fail "exit code 0 with rank $rank frozen: $*"
    [ "$rc" != 124 ] || fail "mpirun hung with rank $rank frozen (killed after 60 s): $*"
    [ "$took" -le 30 ] || fail "took $took s to end with rank $rank frozen (timeout $TIMEOUT s)"
    grep -E -- "$expect" "$T/last.err" >/dev/null || {
        cat "$T/last.err" >&2
        fail "stderr lacks /$expect/: $*"
    }
    sleep 1  # mpirun is gone; give the kernel a moment to reap its ranks
    if [ -n "$(leftovers)" ]; then
        ps -o pid,stat,args -p "$(leftovers | paste -sd,)" >&2 || true
        fail "ranks left running after the job ended: $*"
    fi
    echo "rank $rank frozen: ended in $took s (exit $rc)"
}

batch() { echo batch --model "$M" --input "$T/c.jsonl" --output "$T/$1"; }

# dp 2: the leader of group 1 freezes after 3 documents; rank 0 hears nothing from it.
frozen 2 1 3 "\[rank 0/2\] error: .*dp group 1 \(leader rank 1\) sent nothing for $TIMEOUT s" \
    $(batch b1.jsonl)
# The records written before the freeze are journaled: the rerun (same short timeout, no
# freeze: heartbeats keep every wait alive) completes the set.
check jsonl "$T/b1.jsonl" "len(r) >= 3"
expect_rc 0 timeout 120 "$MPIEXEC" -np 2 --oversubscribe -x OMP_NUM_THREADS=1 \
    -x FOT_COLLECTIVE_TIMEOUT=$TIMEOUT "$FOTRT" $(batch b1.jsonl) --threads 1 \
    --progress-interval 0
check once "$T/b1.jsonl" $N

# dp 2: rank 0 (the coordinator) freezes; rank 1's wait for its next document times out.
frozen 2 0 2 "\[rank 1/2\] error: .*did not complete within $TIMEOUT s" $(batch b0.jsonl)

# fotrt score goes through the same dispatch: rank 1 frozen before its first document.
frozen 2 1 0 "error: .*(dp group 1 .*sent nothing|did not complete within) " \
    score --model "$M" --input "$T/c.jsonl" --output "$T/s.jsonl"

# tp 2 x dp 2: a non-leader rank freezes; its group's collectives and rank 0's wait both end.
frozen 4 3 1 "error: .*(dp group 1 .*sent nothing|did not complete within) " \
    $(batch b3.jsonl) --tp 2
echo "frozen rank OK"
