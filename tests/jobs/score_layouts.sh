# fotrt score equals the direct computation from `fotrt logits` (1 rank) within 1e-4 on the
# golden models, for 1 rank, --tp 2, --mp 2, dp 2 (and tp 2 x dp 2 on case_a), and for the
# same documents given as JSONL ids and as a uint16 .bin with offsets.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for case in case_a case_f; do
    M=$GOLDEN/$case
    P=$T/$case
    vocab=$("$PYTHON" -c "import json; print(json.load(open('$M/config.json'))['vocab_size'])")
    check corpus "$M/input_ids.json" "$P" 150 40 3
    for i in 0 1 2; do
        fot_plain logits --model "$M" --ids "$P.$i.json" --out "$P.$i.f32" 2>/dev/null
    done
    check expected "$P" 3 "$vocab"

    expect_rc 0 fot score --model "$M" --input "$P.jsonl" --output "$P.np1.jsonl"
    check scores "$P.np1.jsonl" "$P.expected.json" 1e-4
    check jsonl "$P.np1.jsonl" "[x['id'] for x in r] == ['d0', 'd1', 'd2']"
    expect_rc 0 fot score --model "$M" --input "$P.bin" --output "$P.bin.jsonl"
    check jsonl "$P.bin.jsonl" "[x['id'] for x in r] == [0, 1, 2]"
    "$PYTHON" - "$P.np1.jsonl" "$P.bin.jsonl" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert [x["nll_sum"] for x in a] == [x["nll_sum"] for x in b], "bin and jsonl scores differ"
PY

    for layout in "--tp 2" "--mp 2" ""; do
        name=$(echo "np2 $layout" | tr -d ' -')
        expect_rc 0 mpi 2 score --model "$M" --input "$P.jsonl" --output "$P.$name.jsonl" \
            --progress-interval 0 $layout
        check scores "$P.$name.jsonl" "$P.expected.json" 1e-4
    done
done

P=$T/case_a
expect_rc 0 mpi 4 score --model "$GOLDEN/case_a" --input "$P.jsonl" --output "$P.np4.jsonl" \
    --progress-interval 0 --tp 2
check scores "$P.np4.jsonl" "$P.expected.json" 1e-4
echo "score layouts OK"
