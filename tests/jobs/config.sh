# fotrt batch takes every option from --config JOB.yaml (run keys and job keys in one file);
# command-line flags win; errors name the YAML file and line.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

M=$GOLDEN/case_a
check corpus "$M/input_ids.json" "$T/c" 150 60 20
cat >"$T/job.yaml" <<YAML
# scoring job
model: $M
threads: 1
task: score
input: $T/c.jsonl
output: "$T/from yaml.jsonl"
progress_interval: 0
memory:
  capacity_tokens: 1000
YAML
expect_rc 0 timeout 60 "$FOTRT" batch --config "$T/job.yaml"
expect_rc 0 fot score --model "$M" --input "$T/c.jsonl" --output "$T/score.jsonl"
check same "$T/from yaml.jsonl" "$T/score.jsonl"
check json "$T/from yaml.jsonl.summary.json" "j['documents'] == 3 and j['task'] == 'score'"

# Flags override the YAML (output, task and a job value).
expect_rc 0 timeout 60 "$FOTRT" batch --config "$T/job.yaml" --output "$T/gen.jsonl" \
    --task generate --max-new-tokens 3
check jsonl "$T/gen.jsonl" "[len(x['new_tokens']) for x in r] == [3, 3, 3]"

cat >"$T/gen.yaml" <<YAML
model: $M
task: generate
max_new_tokens: 2
ignore_eos: true
input: $T/c.jsonl
output: $T/gen2.jsonl
YAML
expect_rc 0 timeout 60 "$FOTRT" batch --config "$T/gen.yaml" --threads 1 --progress-interval 0
check jsonl "$T/gen2.jsonl" "[len(x['new_tokens']) for x in r] == [2, 2, 2]"

# Errors name the file and the line, never a temporary file.
printf 'model: %s\nmax_new_tokens: lots\ninput: x\noutput: y\n' "$M" >"$T/bad1.yaml"
expect_error "$T/bad1.yaml:2: max_new_tokens expects an integer, got 'lots'" \
    timeout 60 "$FOTRT" batch --config "$T/bad1.yaml"
printf 'model: %s\ninput: x\noutput: y\nmemory:\n  retreival: dense\n' "$M" >"$T/bad2.yaml"
expect_error "$T/bad2.yaml:5" timeout 60 "$FOTRT" batch --config "$T/bad2.yaml"
grep -q "fotrt-batch-run" "$T/last.err" && fail "a temporary path leaked into: $(cat "$T/last.err")"
printf 'model: %s\ninput: [a, b]\noutput: y\n' "$M" >"$T/bad3.yaml"
expect_error "$T/bad3.yaml:2: input must be a plain value" \
    timeout 60 "$FOTRT" batch --config "$T/bad3.yaml"
expect_error "cannot read --config" timeout 60 "$FOTRT" batch --config "$T/none.yaml"
echo "config OK"
