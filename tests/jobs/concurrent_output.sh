# Two jobs on one output (a requeued Slurm job overlapping the first): the second refuses at
# start, naming the first (its pid and host), and changes nothing; the first finishes and its
# output is exactly that of a job run alone. The first job is held mid-way by the test hook
# FOT_DISPATCH_FREEZE (runtime/jobs/dispatch.h): it stops itself after 5 documents, holding
# the lock on its output.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

first=
trap '[ -n "$first" ] && kill -9 "$first" 2>/dev/null; rm -rf "$T"' EXIT

M=$GOLDEN/case_a
"$PYTHON" - "$M/input_ids.json" "$T/c.jsonl" <<'PY'
import json, sys
ids = json.load(open(sys.argv[1]))
with open(sys.argv[2], "w") as f:
    for i in range(24):
        f.write(json.dumps({"id": f"doc{i}", "ids": ids[: 10 + (i * 37) % 120]}) + "\n")
PY
N=24
expect_rc 0 fot batch --model "$M" --input "$T/c.jsonl" --output "$T/ref.jsonl"

FOT_DISPATCH_FREEZE=0:5 "$FOTRT" batch --model "$M" --input "$T/c.jsonl" --output "$T/o.jsonl" \
    --threads 1 --progress-interval 0 >"$T/first.out" 2>"$T/first.err" &
first=$!
state=
for _ in $(seq 600); do
    state=$(awk '{print $3}' "/proc/$first/stat" 2>/dev/null || echo gone)
    [ "$state" = T ] && break
    [ "$state" = gone ] && fail "the first job ended before it froze: $(cat "$T/first.err")"
    sleep 0.1
done
[ "$state" = T ] || fail "the first job never froze"
check jsonl "$T/o.jsonl" "len(r) == 5"
cp "$T/o.jsonl" "$T/o.before"

holder="output $T/o.jsonl is in use by another job (pid $first on host $(uname -n), started"
expect_error "$holder" fot batch --model "$M" --input "$T/c.jsonl" --output "$T/o.jsonl"
expect_error "$holder" fot batch --model "$M" --input "$T/c.jsonl" --output "$T/o.jsonl" --restart
expect_error "$holder" fot score --model "$M" --input "$T/c.jsonl" --output "$T/o.jsonl"
cmp -s "$T/o.jsonl" "$T/o.before" || fail "a refused job changed the output"

kill -CONT "$first"
rc=0
wait "$first" || rc=$?
first=
[ "$rc" = 0 ] || fail "the first job exited with $rc: $(cat "$T/first.err")"
check once "$T/o.jsonl" $N
check same "$T/o.jsonl" "$T/ref.jsonl"
[ ! -e "$T/o.jsonl.lock" ] || fail "the lock file outlived its job"
# Released: the next job on that output resumes it (nothing left to do).
expect_rc 0 fot batch --model "$M" --input "$T/c.jsonl" --output "$T/o.jsonl"
check json "$T/last.out" "j['resumed'] == $N and j['this_run']['documents'] == 0"
echo "concurrent output OK"
