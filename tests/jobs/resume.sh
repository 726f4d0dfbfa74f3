# fotrt batch resumes after kill -9 at any point: the rerun of the same command writes every
# record exactly once and the output equals an uninterrupted run's. Kill points: after an
# output line (before its journal line), in the middle of an output line, after a journal line
# (FOT_BATCH_CRASH test hook, at the first, a middle and the last record), twice in a row, an
# external kill -9 at an arbitrary moment, and a dp 2 run (mpirun) killed mid-way.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

M=$GOLDEN/case_a
"$PYTHON" - "$M/input_ids.json" "$T/c.jsonl" <<'PY'
import json, random, sys
ids = json.load(open(sys.argv[1]))
rng = random.Random(5)
with open(sys.argv[2], "w") as f:
    for i in range(24):
        if i == 11:
            f.write('{"id": "bad", "ids": [1, 2\n')  # an error record must also be written once
        else:
            f.write(json.dumps({"id": f"doc{i}", "ids": ids[: rng.randint(2, 150)]}) + "\n")
PY
N=24
batch() { fot batch --model "$M" --input "$T/c.jsonl" --output "$1" "${@:2}"; }

expect_rc 3 batch "$T/ref.jsonl"
check once "$T/ref.jsonl" $N
check json "$T/last.out" "j['documents'] == $N and j['errors'] == 1 and j['resumed'] == 0"

for point in output partial journal; do
    for at in 1 12 24; do
        out=$T/r_${point}_$at.jsonl
        rc=0
        FOT_BATCH_CRASH=$at:$point batch "$out" >/dev/null 2>&1 || rc=$?
        [ "$rc" = 137 ] || fail "crash hook $at:$point: exit code $rc, expected 137 (SIGKILL)"
        expect_rc 3 batch "$out"
        check once "$out" $N
        check same "$out" "$T/ref.jsonl"
        check json "$T/last.out" "j['written'] == $N and j['errors'] == 1 and j['resumed'] >= $at - 1"
    done
done

# Killed twice before finishing.
out=$T/twice.jsonl
FOT_BATCH_CRASH=7:partial batch "$out" >/dev/null 2>&1 && fail "no crash"
FOT_BATCH_CRASH=9:output batch "$out" >/dev/null 2>&1 && fail "no crash"
expect_rc 3 batch "$out"
check same "$out" "$T/ref.jsonl"

# An external kill -9 at an arbitrary moment (whatever it hits, the rerun must finish the job).
# fotrt itself is started in the background, so that $! is its pid: killing a wrapper (the
# timeout of `batch`) would leave the job running, and the rerun would then overlap it.
for delay in 0.05 0.3; do
    out=$T/ext_$delay.jsonl
    "$FOTRT" batch --model "$M" --input "$T/c.jsonl" --output "$out" --threads 1 \
        --progress-interval 0 >/dev/null 2>&1 &
    pid=$!
    sleep "$delay"
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    expect_rc 3 batch "$out"
    check once "$out" $N
    check same "$out" "$T/ref.jsonl"
done

# dp 2: rank 0 killed mid-way takes the world down; the rerun (also dp 2) completes the set.
out=$T/dp2.jsonl
rc=0
timeout 120 "$MPIEXEC" -np 2 --oversubscribe -x FOT_BATCH_CRASH=10:output -x OMP_NUM_THREADS=1 \
    "$FOTRT" batch --model "$M" --input "$T/c.jsonl" --output "$out" --threads 1 \
    --progress-interval 0 >/dev/null 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "dp 2 crash run exited 0"
check jsonl "$out" "len(r) == 10"
expect_rc 3 mpi 2 batch --model "$M" --input "$T/c.jsonl" --output "$out" --progress-interval 0
check once "$out" $N
check same "$out" "$T/ref.jsonl" --any-order
echo "resume OK"
