# A newcomer's first hour (issue 14, items 9, 11, 12, 15) on golden case_a (vocab 256) with
# sentencepiece tokenizers trained here: one of 60 pieces (a model vocabulary larger than the
# tokenizer: ids without a piece show as <id:N>, nothing is lost) and one of 300 (more pieces
# than the model: an error at load naming both numbers); fotrt tokenize / detokenize; text in
# --json and batch records; progress lines on stderr (and none with --quiet, stdout unchanged);
# the corpus summary of score / batch --task score recomputed from the records.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$PYTHON" - "$T/train.txt" <<'PY'
import random, sys
filler = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
rng = random.Random(3)
with open(sys.argv[1], "w") as f:
    for _ in range(300):
        k = rng.randint(1, 49999)
        f.write(f"{filler} The pass key is {k}. Remember it. {k} is the pass key.\n")
PY
for v in 60 300; do
    spm_train --input="$T/train.txt" --model_prefix="$T/tok$v" --vocab_size=$v --model_type=bpe \
        --character_coverage=1.0 --byte_fallback=false --unk_id=0 --bos_id=1 --eos_id=2 \
        --pad_id=-1 --num_threads=1 --minloglevel=2 >/dev/null 2>&1
done
mkdir "$T/m" "$T/big"
ln -s "$GOLDEN/case_a/config.json" "$GOLDEN/case_a/model.safetensors" "$T/m/"
ln -s "$GOLDEN/case_a/config.json" "$GOLDEN/case_a/model.safetensors" "$T/big/"
cp "$T/tok60.model" "$T/m/tokenizer.model"
cp "$T/tok300.model" "$T/big/tokenizer.model"
M=$T/m
IDS=$GOLDEN/case_a/input_ids.json
tok() { timeout 60 "$FOTRT" "$@"; }

# --- item 12: tokenize / detokenize ------------------------------------------------------
TEXT="The pass key is 4242. Remember it."
expect_rc 0 tok tokenize --model "$M" --text "$TEXT"
cp "$T/last.out" "$T/ids.json"
check json "$T/ids.json" "j[0] == 1 and len(j) > 5 and all(0 < x < 60 for x in j)"
expect_rc 0 tok tokenize --model "$M" --text "$TEXT" --no-bos --format count
[ "$(cat "$T/last.out")" = "$(("$("$PYTHON" -c "import json,sys; print(len(json.load(open(sys.argv[1]))))" "$T/ids.json")" - 1))" ] ||
    fail "--format count --no-bos: $(cat "$T/last.out")"
printf '%s' "$TEXT" | tok tokenize --tokenizer "$M/tokenizer.model" --input - >"$T/stdin.json"
cmp "$T/ids.json" "$T/stdin.json" || fail "tokenize --input - differs from --text"
expect_rc 0 tok detokenize --model "$M" --ids "$T/ids.json"
[ "$(cat "$T/last.out")" = "$TEXT" ] || fail "detokenize round trip: $(cat "$T/last.out")"
expect_rc 0 tok detokenize --model "$M" --id-list 1,7,200,59,60 --format json
check json "$T/last.out" "j['ids_without_text'] == [200, 60] and '<id:200>' in j['text'] and j['text'].endswith('<id:60>')"
expect_error "give exactly one of --model DIR and --tokenizer FILE" \
    tok tokenize --text x --model "$M" --tokenizer "$M/tokenizer.model"
expect_error "has no tokenizer.model" tok tokenize --model "$GOLDEN/case_a" --text x
grep -F -- "--tokenizer FILE" "$T/last.err" >/dev/null || fail "hint: $(cat "$T/last.err")"

# --- item 9: more pieces than the model's vocabulary is an error at load ----------------
for cmd in "tokenize --text x" "detokenize --id-list 1"; do
    # shellcheck disable=SC2086
    expect_error "has 300 pieces but the model's vocab_size is 256" tok $cmd --model "$T/big"
done
expect_error "has 300 pieces but the model's vocab_size is 256" \
    fot_plain generate --model "$T/big" --ids "$IDS" --max-new-tokens 2 --json
grep -F "config.json" "$T/last.err" >/dev/null || fail "names no config.json: $(cat "$T/last.err")"
[ ! -s "$T/last.out" ] || fail "generate printed output before the tokenizer error"
# Hints name only flags the command has: passkey has no --ids.
expect_error "has no tokenizer.model" \
    fot_plain passkey --model "$GOLDEN/case_a" --lengths 300 --trials 1
! grep -F -- "--ids" "$T/last.err" >/dev/null || fail "passkey hint names --ids: $(cat "$T/last.err")"
expect_error "has no tokenizer.model" \
    fot_plain generate --model "$GOLDEN/case_a" --prompt hi --max-new-tokens 1
grep -F -- "--ids" "$T/last.err" >/dev/null || fail "generate hint lacks --ids: $(cat "$T/last.err")"

# --- items 9 and 12: a model vocabulary larger than the tokenizer ------------------------
# 16 greedy tokens of case_a: ids >= 60 are <id:N> in the text, in order; none are lost.
expect_rc 0 fot_plain generate --model "$M" --ids "$IDS" --max-new-tokens 16 --json --quiet
cp "$T/last.out" "$T/gen.json"
check json "$T/gen.json" "len(j['new_tokens']) == 16 or j['stopped_at_eos']"
check json "$T/gen.json" "isinstance(j['text'], str) and j['text'].count('<id:') == sum(t >= 60 for t in j['new_tokens'])"
check json "$T/gen.json" "[int(x.split('>')[0]) for x in j['text'].split('<id:')[1:]] == [t for t in j['new_tokens'] if t >= 60]"
# The same tokens in text mode, streamed (placeholders included).
expect_rc 0 tok detokenize --model "$M" --ids <("$PYTHON" -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1]))['new_tokens']))" "$T/gen.json")
"$PYTHON" -c "
import json, sys
assert json.load(open(sys.argv[1]))['text'] == open(sys.argv[2]).read()[:-1], 'detokenize != generate text'
" "$T/gen.json" "$T/last.out"
# batch generate records over token ids carry text when the model has a tokenizer.
"$PYTHON" - "$IDS" "$T/c.jsonl" <<'PY'
import json, sys
ids = json.load(open(sys.argv[1]))
ids = (ids * 20)[:2100]  # > 2048 tokens: two distance buckets
with open(sys.argv[2], "w") as f:
    for i, n in enumerate([2100, 150, 40, 1, 90]):
        f.write(json.dumps({"id": f"d{i}", "ids": ids[:n]}) + "\n")
PY
head -n 3 "$T/c.jsonl" | tail -n 2 >"$T/prompts.jsonl"
expect_rc 0 fot batch --task generate --max-new-tokens 6 --model "$M" --input "$T/prompts.jsonl" \
    --output "$T/bgen.jsonl"
check jsonl "$T/bgen.jsonl" "len(r) == 2 and all(isinstance(x['text'], str) and x['text'].count('<id:') == len(x.get('ids_without_text', [])) == sum(t >= 60 for t in x['new_tokens']) for x in r)"

# --- item 11: progress on stderr, none with --quiet, stdout unchanged --------------------
"$PYTHON" -c "
import json, sys
ids = json.load(open(sys.argv[1]))
json.dump((ids * 20)[:1500], open(sys.argv[2], 'w'))
" "$IDS" "$T/long.json"
run_both() {  # NAME CMD...: CMD with tiny progress intervals, then with --quiet
    local name=$1
    shift
    FOT_PROGRESS_INTERVAL=0.000001 timeout 60 "$FOTRT" "$@" --threads 1 \
        >"$T/$name.out" 2>"$T/$name.err" || fail "$name failed: $(cat "$T/$name.err")"
    FOT_PROGRESS_INTERVAL=0.000001 timeout 60 "$FOTRT" "$@" --threads 1 --quiet \
        >"$T/$name.q.out" 2>"$T/$name.q.err" || fail "$name --quiet failed"
}
run_both gen generate --model "$M" --ids "$T/long.json" --max-new-tokens 4
cmp "$T/gen.out" "$T/gen.q.out" || fail "generate stdout changes with --quiet"
for want in "loading $M: 4/4 layers" "prefill: 1500/1500 tokens" "decode: 4/4 tokens"; do
    grep -F -- "$want" "$T/gen.err" >/dev/null || fail "generate stderr lacks '$want': $(cat "$T/gen.err")"
done
[ "$(grep -c 'prefill: .* tokens/s, elapsed .*, ETA ' "$T/gen.err")" -ge 3 ] ||
    fail "expected prefill lines for several windows: $(cat "$T/gen.err")"
! grep -E 'loading|prefill|decode:' "$T/gen.q.err" >/dev/null ||
    fail "--quiet still prints progress: $(cat "$T/gen.q.err")"
run_both logits logits --model "$M" --ids "$T/long.json" --out "$T/l.f32"
[ -z "$(cat "$T/logits.out" "$T/logits.q.out")" ] || fail "logits wrote to stdout"
grep -F "prefill: 1500/1500 tokens" "$T/logits.err" >/dev/null || fail "logits progress: $(cat "$T/logits.err")"
! grep -E 'loading|prefill' "$T/logits.q.err" >/dev/null || fail "logits --quiet: $(cat "$T/logits.q.err")"
run_both pk passkey --model "$M" --lengths 200 --depths 0,1 --trials 1 --seed 2
cmp "$T/pk.out" "$T/pk.q.out" || fail "passkey stdout changes with --quiet"
grep -F "passkey: 2/2 trials" "$T/pk.err" >/dev/null || fail "passkey progress: $(cat "$T/pk.err")"
! grep -F "trials" "$T/pk.q.err" >/dev/null || fail "passkey --quiet: $(cat "$T/pk.q.err")"

# --- item 15: the corpus summary ---------------------------------------------------------
# Score: records + summary (and a log line); batch --task score: the same corpus numbers in
# its summary JSON. Both equal exp(total NLL / total tokens) of the records.
expect_rc 3 timeout 60 "$FOTRT" score --model "$M" --input "$T/c.jsonl" --output "$T/s.jsonl" \
    --summary "$T/s.summary.json" --threads 1 --progress-interval 0.000001
grep -E "^fotrt info: score: [0-9]+/5 documents" "$T/last.err" >/dev/null ||
    fail "score progress: $(cat "$T/last.err")"
grep -E "score: corpus of 4 documents, [0-9]+ tokens, mean NLL [0-9.]+, perplexity [0-9.]+; by distance: 0-2k [0-9.]+ \([0-9]+ tokens\) 2k-8k [0-9.]+ \(52 tokens\)" \
    "$T/last.err" >/dev/null || fail "score corpus line: $(cat "$T/last.err")"
expect_rc 3 timeout 60 "$FOTRT" score --model "$M" --input "$T/c.jsonl" --output "$T/sq.jsonl" \
    --threads 1 --progress-interval 0.000001 --quiet
! grep -E "score: [0-9]+/5 documents" "$T/last.err" >/dev/null || fail "score --quiet: $(cat "$T/last.err")"
expect_rc 3 fot batch --task score --model "$M" --input "$T/c.jsonl" --output "$T/b.jsonl"
cp "$T/last.out" "$T/b.stdout"
"$PYTHON" - "$T/s.jsonl" "$T/s.summary.json" "$T/b.stdout" "$T/b.jsonl.summary.json" <<'PY'
import json, math, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
ok = [r for r in recs if "error" not in r]
assert len(ok) == 4 and len(recs) == 5, recs
tokens = sum(r["tokens"] for r in ok)
nll = sum(r["nll_sum"] for r in ok)
buckets = {}
for r in ok:
    for k, b in r["nll_by_distance"].items():
        t, s = buckets.get(k, (0, 0.0))
        buckets[k] = (t + b["tokens"], s + b["nll_sum"])
assert list(buckets) == ["0-2k", "2k-8k"] and buckets["2k-8k"][0] == 52, buckets
for path in sys.argv[2:]:
    text = open(path).read().strip()
    try:
        c = json.loads(text)["corpus"]
    except json.JSONDecodeError:  # stdout: the summary is its last line
        c = json.loads(text.splitlines()[-1])["corpus"]
    assert c["documents"] == 4 and c["tokens"] == tokens == 2099 + 149 + 39 + 89, (path, c)
    assert math.isclose(c["nll_sum"], nll, rel_tol=1e-12), (path, c["nll_sum"], nll)
    assert math.isclose(c["ppl"], math.exp(nll / tokens), rel_tol=1e-12), (path, c["ppl"])
    assert math.isclose(c["mean_nll"], nll / tokens, rel_tol=1e-12), path
    assert list(c["nll_by_distance"]) == list(buckets), path
    for k, (t, s) in buckets.items():
        b = c["nll_by_distance"][k]
        assert b["tokens"] == t and math.isclose(b["ppl"], math.exp(s / t), rel_tol=1e-12), (path, k, b)
PY
echo "newcomer OK"
