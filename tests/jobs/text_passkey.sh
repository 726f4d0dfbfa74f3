# Text inputs and passkey on a golden model with a sentencepiece tokenizer trained here
# (vocab 200 <= case_a's 256, no byte fallback): .txt directories and JSONL text score alike,
# generate records carry text, and fotrt passkey prints a length x depth table whose trials
# (keys, depths, prompt sizes within 1%, outputs) are the same with 1 rank and with dp 2.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$PYTHON" - "$T/train.txt" <<'PY'
import random, sys
filler = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
task = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize "
        "them. I will quiz you about the important information there.")
rng = random.Random(3)
with open(sys.argv[1], "w") as f:
    for _ in range(300):
        k = rng.randint(1, 49999)
        f.write(f"{task}\n{filler} The pass key is {k}. Remember it. {k} is the pass key.\n"
                f"What is the pass key? The pass key is {k}\n")
PY
spm_train --input="$T/train.txt" --model_prefix="$T/tok" --vocab_size=200 --model_type=bpe \
    --character_coverage=1.0 --byte_fallback=false --unk_id=0 --bos_id=1 --eos_id=2 \
    --pad_id=-1 --num_threads=1 --minloglevel=2 >/dev/null 2>&1
mkdir "$T/m"
ln -s "$GOLDEN/case_a/config.json" "$GOLDEN/case_a/model.safetensors" "$T/m/"
cp "$T/tok.model" "$T/m/tokenizer.model"
M=$T/m

mkdir "$T/books"
printf 'The sky is blue. The grass is green.' >"$T/books/b.txt"
printf 'Here we go. There and back again. The sun is yellow.' >"$T/books/a.txt"
printf 'ignored' >"$T/books/readme.md"
"$PYTHON" - "$T/books" "$T/texts.jsonl" <<'PY'
import json, os, sys
with open(sys.argv[2], "w") as f:
    for name in sorted(n for n in os.listdir(sys.argv[1]) if n.endswith(".txt")):
        f.write(json.dumps({"id": name, "text": open(os.path.join(sys.argv[1], name)).read()}) + "\n")
PY
expect_rc 0 fot score --model "$M" --input "$T/books" --output "$T/dir.jsonl"
expect_rc 0 fot score --model "$M" --input "$T/texts.jsonl" --output "$T/jsonl.jsonl"
check same "$T/dir.jsonl" "$T/jsonl.jsonl"
check jsonl "$T/dir.jsonl" "[x['id'] for x in r] == ['a.txt', 'b.txt'] and all(x['tokens'] > 5 for x in r)"

expect_rc 0 fot batch --task generate --max-new-tokens 5 --model "$M" --input "$T/books" \
    --output "$T/gen.jsonl"
check jsonl "$T/gen.jsonl" "all(len(x['new_tokens']) == 5 and isinstance(x['text'], str) for x in r)"

fot_plain passkey --model "$M" --lengths 300,600 --trials 3 --seed 1 --json >"$T/pk1.json" \
    2>/dev/null
check json "$T/pk1.json" "[x['length'] for x in j['table']] == [300, 600] and len(j['depths']) == 5"
check json "$T/pk1.json" "all(x['all']['trials'] == 3 and sum(c['trials'] for c in x['cells']) == 3 for x in j['table'])"
check json "$T/pk1.json" "len(j['trials']) == 6 and all(abs(t['prompt_tokens'] - t['length']) <= 0.01 * t['length'] for t in j['trials'])"
check json "$T/pk1.json" "all(len(t['output_ids']) <= len(t['answer_ids']) > 0 and 1 <= t['key'] < 50000 for t in j['trials'])"
check json "$T/pk1.json" "all(t['correct'] == (t['output_ids'] == t['answer_ids']) for t in j['trials'])"
timeout 120 "$MPIEXEC" -np 2 --oversubscribe "$FOTRT" passkey --model "$M" --lengths 300,600 \
    --trials 3 --seed 1 --json --threads 1 >"$T/pk2.json" 2>/dev/null
"$PYTHON" -c "
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
assert a == b, 'passkey results differ between 1 rank and dp 2'
" "$T/pk1.json" "$T/pk2.json"

expect_rc 0 fot_plain passkey --model "$M" --lengths 400 --depths 0,1 --trials 1 \
    --output "$T/trials.jsonl"
grep -E '^length +0 +1 +all$' "$T/last.out" >/dev/null || fail "table header: $(cat "$T/last.out")"
grep -E '^400 ' "$T/last.out" >/dev/null || fail "table row: $(cat "$T/last.out")"
check jsonl "$T/trials.jsonl" "[x['depth'] for x in r] == [0.0, 1.0]"
expect_error "passkey length 20 tokens is too short" \
    fot_plain passkey --model "$M" --lengths 20 --trials 1
expect_error "has no tokenizer.model" \
    fot_plain passkey --model "$GOLDEN/case_a" --lengths 300 --trials 1
expect_error "does not fit in memory" \
    fot_plain passkey --model "$M" --lengths 300 --trials 1 --mem-capacity 100
echo "text and passkey OK"
