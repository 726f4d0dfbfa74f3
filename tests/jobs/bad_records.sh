# Bad records become error records with a reason; the job goes on, counts them in its summary
# and exits with 3 (1 rank and dp 2). Job-level problems end the job with one error line and
# exit code 1.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

M=$GOLDEN/case_a
"$PYTHON" - "$M/input_ids.json" "$T/c.jsonl" <<'PY'
import json, sys
ids = json.load(open(sys.argv[1]))
lines = [
    json.dumps({"id": "ok1", "ids": ids[:50]}),
    '{"id": "broken", "ids": [1, 2',                               # invalid JSON
    json.dumps({"id": "empty", "text": ""}),                       # empty text
    json.dumps({"id": "extra", "ids": [1, 5], "meta": {"a": 1}}),  # unknown field
    json.dumps({"id": "range", "ids": [1, 5, 256]}),               # id out of the vocabulary
    json.dumps({"id": "ok1", "ids": [1, 5, 6]}),                   # duplicate id
    json.dumps({"id": "single", "ids": [1]}),                      # nothing to predict
    json.dumps({"id": "huge", "ids": [7] * 140}),                  # over --mem-capacity 64
    "",
    json.dumps({"id": 7, "ids": ids[:90]}),
]
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
PY
reasons='["not valid JSON", "empty text", "unknown field \"meta\"", "token id 256 at position 2 is out of the vocabulary [0, 256)", "duplicate id \"ok1\"", "at least 2 tokens", "does not fit in memory: it needs 108 memory tokens"]'

expect_rc 3 fot batch --model "$M" --input "$T/c.jsonl" --output "$T/o.jsonl" --mem-capacity 64
check once "$T/o.jsonl" 9
check jsonl "$T/o.jsonl" "[x['id'] for x in r if 'error' not in x] == ['ok1', 7]"
check jsonl "$T/o.jsonl" "all(w in e for w, e in zip($reasons, [x['error'] for x in r if 'error' in x]))"
check jsonl "$T/o.jsonl" "[x['id'] for x in r if 'error' in x] == [None, 'empty', 'extra', 'range', 'ok1', 'single', 'huge']"
check json "$T/last.out" "j['errors'] == 7 and j['ok'] == 2 and j['exit_code'] == 3 and len(j['error_examples']) == 7"
check json "$T/o.jsonl.summary.json" "j['errors'] == 7 and j['documents'] == 9"

expect_rc 3 mpi 2 batch --model "$M" --input "$T/c.jsonl" --output "$T/dp2.jsonl" \
    --mem-capacity 64 --progress-interval 0
check same "$T/dp2.jsonl" "$T/o.jsonl" --any-order
check json "$T/last.out" "j['errors'] == 7 and j['layout']['dp'] == 2 and len(j['ranks']) == 2"

# fotrt score reports them the same way.
expect_rc 3 fot score --model "$M" --input "$T/c.jsonl" --output "$T/s.jsonl" --mem-capacity 64
check jsonl "$T/s.jsonl" "sum('error' in x for x in r) == 7"

# Job-level errors: one line naming what is wrong, exit code 1.
expect_error "corpus $T/missing.jsonl does not exist" \
    fot batch --model "$M" --input "$T/missing.jsonl" --output "$T/x.jsonl"
echo "keep me" >"$T/taken.jsonl"
expect_error "exists but has no journal" \
    fot batch --model "$M" --input "$T/c.jsonl" --output "$T/taken.jsonl"
grep -q "keep me" "$T/taken.jsonl" || fail "an unjournaled output was overwritten"
expect_error "belongs to a different job: task" \
    fot batch --task generate --model "$M" --input "$T/c.jsonl" --output "$T/o.jsonl" \
    --mem-capacity 64
expect_error "task 'rank' is unknown" \
    fot batch --task rank --model "$M" --input "$T/c.jsonl" --output "$T/y.jsonl"
echo '{"id": 1, "text": "hello"}' >"$T/text.jsonl"
expect_error "has no tokenizer.model" \
    fot batch --model "$M" --input "$T/text.jsonl" --output "$T/t.jsonl"
printf 'abc' >"$T/t.bin"
expect_error "does not exist" fot score --model "$M" --input "$T/t.bin" --output "$T/b.jsonl"
expect_error "--output is required" fot batch --model "$M" --input "$T/c.jsonl"
# A restart discards the old output and journal.
expect_rc 3 fot batch --model "$M" --input "$T/c.jsonl" --output "$T/o.jsonl" --restart \
    --mem-capacity 64
check json "$T/last.out" "j['resumed'] == 0 and j['this_run']['documents'] == 9"
echo "bad records OK"
