#!/usr/bin/env bash
# `fotrt bench` end to end (docs/scaling.md), run by ctest:
#  - the CI sweep (config/examples/sweep-ci.yaml: tiny model, dense and top-k, groups of 1, 2
#    and 4 ranks, tp 2 x mp 2) under mpirun -np 4 with --predict writes points.csv,
#    points.jsonl (with the skipped layout and its reason), machine.json and model.json;
#  - the CSV columns are the ones docs/scaling.md documents;
#  - on every rank of every point the per-phase times add up to the total within 10%;
#  - the performance model's operation counts equal the measured ones (calls, FLOPs, bytes of
#    every phase on rank 0); its time error is below 30% on every phase longer than 10 ms
#    (the sweep reports minima, docs/scaling.md "Model error");
#  - scripts/plot_scaling.py turns the folder into at least 3 PNGs;
#  - bad sweeps and a world no layout fits fail with one line; --hardware projects.
# Usage: bench_sweep_test.sh FOTRT SOURCE_DIR
set -uo pipefail
fotrt=$1
src=$2
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
mpirun="mpirun --oversubscribe"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
py=/usr/bin/python3
[ -x "$py" ] || py=python3

# ---- the CI sweep -----------------------------------------------------------------------
if timeout 300 $mpirun -np 4 "$fotrt" bench --sweep "$src/config/examples/sweep-ci.yaml" \
        --output "$tmp/ci" --predict >"$tmp/out" 2>"$tmp/err"; then
    echo "ok: sweep ran"
else
    fail "sweep exit code"; cat "$tmp/out" "$tmp/err"
fi
grep -E "^(calibration|cpu |sweep|prediction|skip)" "$tmp/out" | sort -u
grep -q "ETA" "$tmp/out" || fail "no progress line with an ETA"
grep -q "^skip: tp 1 mp 2 dp 1 .*2 ranks, the world has 4" "$tmp/out" || fail "no skip line"

if "$py" - "$tmp/ci" "$src/docs/scaling.md" "$tmp/out" <<'PY'
import csv, json, os, re, sys
d, doc, out = sys.argv[1:4]
bad = []
for f in ("points.csv", "points.jsonl", "machine.json", "model.json"):
    if not os.path.isfile(os.path.join(d, f)):
        bad.append("missing " + f)
rows = list(csv.DictReader(open(os.path.join(d, "points.csv"))))
recs = [json.loads(l) for l in open(os.path.join(d, "points.jsonl"))]
skipped = [r for r in recs if "skipped" in r]
points = [r for r in recs if "skipped" not in r]
if len(rows) != 24 or len(points) != 24:
    bad.append("expected 24 measured points, got %d CSV rows, %d records" % (len(rows), len(points)))
if len(skipped) != 6 or not all("world has 4" in r["skipped"] for r in skipped):
    bad.append("expected 6 skipped points with their reason, got %d" % len(skipped))
for want in ({"tp": 1, "mp": 4, "dp": 1}, {"tp": 2, "mp": 2, "dp": 1}, {"tp": 1, "mp": 1, "dp": 4}):
    for retr in ("dense", "topk"):
        if not any(all(p[k] == v for k, v in want.items()) and p["retrieval"] == retr for p in points):
            bad.append("no %s point for %s" % (retr, want))
# Columns: the table in docs/scaling.md lists every one, in order.
text = open(doc).read()
text = text[text.index("CSV columns, in order"):text.index("## 3.")]
doc_cols = re.findall(r"^\| `([A-Za-z_]+)` \|", text, re.M)
header = list(rows[0].keys()) if rows else []
PHASES = ["gemm", "local_attn", "mem_score", "topk_select", "merge", "other",
          "tp_allreduce", "mp_allgather", "wait"]
expanded = []
for c in doc_cols:
    if c == "PHASE_s":
        expanded += [p + "_s" for p in PHASES]
    elif c == "pred_PHASE_s":
        expanded += ["pred_" + p + "_s" for p in PHASES]
    else:
        expanded.append(c)
if header != expanded:
    bad.append("CSV columns differ from docs/scaling.md:\n  csv %s\n  doc %s" % (header, expanded))
phases = PHASES
worst = 0.0
for p in points:
    name = "%s tp%d mp%d dp%d M%d" % (p["retrieval"], p["tp"], p["mp"], p["dp"], p["memory_tokens"])
    if len(p["ranks"]) != 4:
        bad.append(name + ": not 4 ranks")
    for r in p["ranks"]:
        s = sum(v["seconds"] for v in r["phases"].values())
        if abs(s - r["total_s"]) > 0.10 * r["total_s"]:
            bad.append("%s rank %d: phases %.4f s, total %.4f s" % (name, r["rank"], s, r["total_s"]))
        if r["peak_rss_bytes"] <= 0 or r["held_bytes"] <= 0:
            bad.append("%s rank %d: no memory figures" % (name, r["rank"]))
    r0, pred = p["ranks"][0]["phases"], p["predicted"]
    for ph in phases:
        for key in ("calls", "flops", "bytes"):
            m, q = r0[ph][key], pred[ph][key]
            if abs(m - q) > 1e-9 * max(abs(m), 1):
                bad.append("%s %s %s: measured %r, model %r" % (name, ph, key, m, q))
        m, q = r0[ph]["seconds"], pred[ph]["seconds"]
        if m > 0.010 and ph != "wait":
            worst = max(worst, abs(q / m - 1))
            if abs(q / m - 1) >= 0.30:
                bad.append("%s %s: measured %.1f ms, predicted %.1f ms (error >= 30%%)"
                           % (name, ph, m * 1e3, q * 1e3))
    if p["mp"] > 1 and p["ranks"][0]["sent_bytes"] <= 0:
        bad.append(name + ": mp > 1 but nothing sent")
m = re.search(r"prediction error: max ([0-9.]+)%", open(out).read())
if not m:
    bad.append("no 'prediction error' line")
elif abs(float(m.group(1)) / 100 - worst) > 1e-3:
    bad.append("printed error %s%% is not the files' %.1f%%" % (m.group(1), worst * 100))
print("model error: max %.1f%% over phases > 10 ms" % (worst * 100))
for b in bad:
    print("  " + b)
sys.exit(1 if bad else 0)
PY
then echo "ok: files, columns, phases add up, model counts and error"
else fail "sweep files"; fi

# ---- plots ----------------------------------------------------------------------------------
if "$py" "$src/scripts/plot_scaling.py" "$tmp/ci" --out "$tmp/plots" >"$tmp/plot.log" 2>&1; then
    n=0
    for f in "$tmp"/plots/*.png; do
        [ "$(head -c 4 "$f" | tail -c 3)" = "PNG" ] && n=$((n + 1))
    done
    if [ "$n" -ge 3 ]; then echo "ok: $n PNG plots"; else fail "only $n PNG plots"; fi
else
    fail "plot_scaling.py"; cat "$tmp/plot.log"
fi
"$py" "$src/scripts/plot_scaling.py" "$tmp/none" >"$tmp/log" 2>&1 && fail "plots of a missing folder"
grep -q "points.csv does not exist" "$tmp/log" || fail "plot error message: $(cat "$tmp/log")"

# ---- bad input and projections ----------------------------------------------------------------
expect_error() {  # WHAT EXPECTED_TEXT COMMAND...
    local what=$1 text=$2; shift 2
    if timeout 60 "$@" >"$tmp/log" 2>&1; then fail "$what: exit code 0"; return; fi
    if grep -q -- "$text" "$tmp/log" && [ "$(wc -l <"$tmp/log")" -le 3 ]; then
        echo "ok: $what"
    else
        fail "$what: $(cat "$tmp/log")"
    fi
}
printf 'model: tiny\nlayouts: [{tp: 0}]\n' >"$tmp/bad1.yaml"
expect_error "bad layout" "layouts\[0\].tp must be >= 1" "$fotrt" bench --sweep "$tmp/bad1.yaml" --output "$tmp/o"
printf 'model: tiny\nmemroy_tokens: 4k\n' >"$tmp/bad2.yaml"
expect_error "unknown key" "memroy_tokens is not a sweep key" "$fotrt" bench --sweep "$tmp/bad2.yaml" --output "$tmp/o"
printf 'model: tiny\nquery_tokens: 100k\n' >"$tmp/bad3.yaml"
expect_error "query beyond W" "query_tokens must be at most the window" "$fotrt" bench --sweep "$tmp/bad3.yaml" --output "$tmp/o"
expect_error "missing sweep file" "cannot open the sweep file" "$fotrt" bench --sweep "$tmp/nope.yaml" --output "$tmp/o"
printf 'model: tiny\nlayouts: [{mp: 2}]\nmemory_tokens: 1k\nquery_tokens: 16\n' >"$tmp/nofit.yaml"
if timeout 60 "$fotrt" bench --sweep "$tmp/nofit.yaml" --output "$tmp/nofit" >"$tmp/log" 2>&1; then
    fail "a sweep with no fitting layout exits 0"
elif grep -q "the world has 1" "$tmp/log" && grep -q "0 points measured, 1 skipped" "$tmp/log"; then
    echo "ok: no fitting layout"
else
    fail "no fitting layout: $(cat "$tmp/log")"
fi
printf 'model: tiny\nmemory_tokens: 100m\nquery_tokens: 16\n' >"$tmp/huge.yaml"
if timeout 60 "$fotrt" bench --sweep "$tmp/huge.yaml" --output "$tmp/huge" >"$tmp/log" 2>&1; then
    fail "a sweep beyond the host memory exits 0"
elif grep -q "GB of host memory on this node" "$tmp/log"; then
    echo "ok: beyond the host memory"
else
    fail "beyond the host memory: $(cat "$tmp/log")"
fi
if "$fotrt" bench --sweep "$src/config/examples/sweep-3b-projection.yaml" --hardware h200-nvlink-ib >"$tmp/proj" 2>&1 &&
        grep -q "^projection (performance model, not a measurement)" "$tmp/proj" &&
        [ "$(grep -c " yes$\| no$" "$tmp/proj")" -ge 6 ]; then
    echo "ok: projection"
else
    fail "projection: $(head -5 "$tmp/proj")"
fi

if [ "$failures" -gt 0 ]; then echo "$failures failure(s)"; exit 1; fi
echo "all bench sweep checks passed"
