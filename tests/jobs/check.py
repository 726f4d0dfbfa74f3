#!/usr/bin/env python3
"""Checker for the jobs CLI tests (tests/jobs/*.sh). Standard library only.

Each subcommand exits 0 on success and prints one line saying what failed otherwise.

  corpus GOLDEN_IDS.json OUT_PREFIX LEN...   writes OUT_PREFIX.jsonl (docs "d<i>" = the first
                                             LEN ids), OUT_PREFIX.<i>.json (ids) and
                                             OUT_PREFIX.bin/.offsets (uint16)
  expected OUT_PREFIX N VOCAB                NLL of each doc from OUT_PREFIX.<i>.f32 (fotrt
                                             logits) -> OUT_PREFIX.expected.json
  scores OUT.jsonl EXPECTED.json TOL         score records match the direct computation
  same A.jsonl B.jsonl [--any-order]         same records (byte-identical lines; with
                                             --any-order as sets keyed by index)
  once OUT.jsonl N                           indices 0..N-1 each exactly once
  json FILE EXPR                             evaluates EXPR with j = the JSON in FILE (or the
                                             last JSON line of it) and fails when it is false
  jsonl FILE EXPR                            the same with r = list of records of a JSONL file
"""
import json
import math
import struct
import sys


def fail(msg):
    print("check.py: FAILED: " + msg)
    sys.exit(1)


def read_jsonl(path):
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.endswith("\n"):
                fail(f"{path}:{n}: last line has no newline (partial record)")
            out.append(json.loads(line))
    return out


def cmd_corpus(ids_path, prefix, *lengths):
    ids = json.load(open(ids_path))
    docs = [ids[: int(n)] for n in lengths]
    with open(prefix + ".jsonl", "w") as f:
        for i, d in enumerate(docs):
            f.write(json.dumps({"id": f"d{i}", "ids": d}) + "\n")
            json.dump(d, open(f"{prefix}.{i}.json", "w"))
    with open(prefix + ".bin", "wb") as f:
        for d in docs:
            f.write(struct.pack(f"<{len(d)}H", *d))
    offsets = [0]
    for d in docs:
        offsets.append(offsets[-1] + len(d))
    with open(prefix + ".offsets", "wb") as f:
        f.write(struct.pack(f"<{len(offsets)}Q", *offsets))


def nll_from_logits(ids, logits_path, vocab):
    raw = open(logits_path, "rb").read()
    x = struct.unpack(f"<{len(raw) // 4}f", raw)
    if len(x) != len(ids) * vocab:
        fail(f"{logits_path}: {len(x)} floats, expected {len(ids)} x {vocab}")
    total = 0.0
    for t in range(len(ids) - 1):
        row = x[t * vocab:(t + 1) * vocab]
        m = max(row)
        total += m + math.log(sum(math.exp(v - m) for v in row)) - row[ids[t + 1]]
    return total


def cmd_expected(prefix, n, vocab):
    exp = {}
    for i in range(int(n)):
        ids = json.load(open(f"{prefix}.{i}.json"))
        exp[f"d{i}"] = {"tokens": len(ids) - 1,
                        "nll_sum": nll_from_logits(ids, f"{prefix}.{i}.f32", int(vocab))}
    json.dump(exp, open(prefix + ".expected.json", "w"))


def cmd_scores(out, expected, tol):
    tol = float(tol)
    exp = json.load(open(expected))
    recs = read_jsonl(out)
    seen = {}
    for r in recs:
        key = str(r["id"]) if not isinstance(r["id"], str) else r["id"]
        if key in seen:
            fail(f"{out}: id {key} written twice")
        seen[key] = r
    if set(seen) != set(exp):
        fail(f"{out}: ids {sorted(seen)} != expected {sorted(exp)}")
    for key, e in exp.items():
        r = seen[key]
        if "error" in r:
            fail(f"{out}: {key} is an error record: {r['error']}")
        if r["tokens"] != e["tokens"]:
            fail(f"{out}: {key} tokens {r['tokens']} != {e['tokens']}")
        if abs(r["nll_sum"] - e["nll_sum"]) > tol:
            fail(f"{out}: {key} nll_sum {r['nll_sum']} != direct {e['nll_sum']} (tol {tol})")
        if abs(r["ppl"] - math.exp(r["nll_sum"] / r["tokens"])) > 1e-9 * r["ppl"]:
            fail(f"{out}: {key} ppl {r['ppl']} != exp(nll_sum / tokens)")
        b = r["nll_by_distance"]
        if sum(v["tokens"] for v in b.values()) != r["tokens"] or \
                abs(sum(v["nll_sum"] for v in b.values()) - r["nll_sum"]) > 1e-9 * abs(r["nll_sum"]) + 1e-9:
            fail(f"{out}: {key} nll_by_distance does not add up to the totals: {b}")


def cmd_same(a, b, *flags):
    ra, rb = open(a).read().splitlines(), open(b).read().splitlines()
    if "--any-order" in flags:
        ka = sorted(ra, key=lambda l: json.loads(l)["index"])
        kb = sorted(rb, key=lambda l: json.loads(l)["index"])
        ra, rb = ka, kb
    if ra != rb:
        for i, (x, y) in enumerate(zip(ra, rb)):
            if x != y:
                fail(f"{a} and {b} differ at record {i}:\n  {x}\n  {y}")
        fail(f"{a} has {len(ra)} records, {b} has {len(rb)}")


def cmd_once(out, n):
    idx = [r["index"] for r in read_jsonl(out)]
    if sorted(idx) != list(range(int(n))):
        dup = sorted({i for i in idx if idx.count(i) > 1})
        missing = sorted(set(range(int(n))) - set(idx))
        fail(f"{out}: duplicated indices {dup}, missing {missing}")


def cmd_json(path, expr):
    text = open(path).read().strip()
    try:
        j = json.loads(text)
    except json.JSONDecodeError:
        j = json.loads(text.splitlines()[-1])
    if not eval(expr, {"math": math}, {"j": j}):
        fail(f"{path}: {expr} is false for {json.dumps(j)[:2000]}")


def cmd_jsonl(path, expr):
    r = read_jsonl(path)
    if not eval(expr, {"math": math}, {"r": r}):
        fail(f"{path}: {expr} is false for {json.dumps(r)[:2000]}")


def main():
    cmds = {"corpus": cmd_corpus, "expected": cmd_expected, "scores": cmd_scores,
            "same": cmd_same, "once": cmd_once, "json": cmd_json, "jsonl": cmd_jsonl}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        fail("usage: check.py " + "|".join(cmds) + " ARGS")
    cmds[sys.argv[1]](*sys.argv[2:])


if __name__ == "__main__":
    main()
