# A job stopped by SIGTERM (Slurm's time limit, a user's kill) while it writes its output
# under the temporary name OUT.partial removes that file and dies of the signal: exit status
# 143 (128 + SIGTERM), no OUT.partial and no OUT left behind (runtime/core/temp_files.h).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

job=
trap '[ -n "$job" ] && kill -9 "$job" 2>/dev/null; rm -rf "$T"' EXIT

M=$GOLDEN/case_a
# Long enough that the logits are still being written when the signal comes.
"$PYTHON" -c "import json; print(json.dumps([1 + i * 7 % 250 for i in range(20000)]))" \
    >"$T/long.json"
"$FOTRT" logits --model "$M" --ids "$T/long.json" --out "$T/o.f32" --threads 1 \
    >"$T/job.out" 2>"$T/job.err" &
job=$!
for _ in $(seq 600); do
    [ -e "$T/o.f32.partial" ] && break
    kill -0 "$job" 2>/dev/null || fail "the job ended before writing: $(cat "$T/job.err")"
    sleep 0.1
done
[ -e "$T/o.f32.partial" ] || fail "no $T/o.f32.partial after 60 s"
kill -TERM "$job"
rc=0
wait "$job" || rc=$?
job=
[ "$rc" = 143 ] || fail "exit status $rc after SIGTERM, expected 143: $(cat "$T/job.err")"
[ ! -e "$T/o.f32.partial" ] || fail "o.f32.partial was left behind"
[ ! -e "$T/o.f32" ] || fail "an incomplete o.f32 was left behind"
echo "sigterm_partial: ok"
