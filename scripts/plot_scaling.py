#!/usr/bin/python3
"""Plots of a `fotrt bench --sweep` folder (docs/scaling.md).

Usage: scripts/plot_scaling.py DIR [DIR...] [--out PLOTS_DIR]

Reads DIR/points.csv (several folders are concatenated, e.g. sweeps run at different world
sizes) and writes PNGs into --out (default: the first DIR):
  strong_scaling.png   fixed memory, more mp ranks: step time (tp = 1)
  weak_scaling.png     memory per mp rank fixed: step time against mp
  time_vs_memory.png   step time against memory size, one line per layout and retrieval
  comm_share.png       share of the step spent in collectives (and waiting for them)
  dense_vs_topk.png    dense and top-k step times per layout at the largest memory
  phases.png           per-phase breakdown of every point (stacked)
  model_error.png      predicted against measured per phase (when run with --predict)
Needs matplotlib (Debian: python3-matplotlib). Exits 1 with one line on a bad folder.
"""
import csv
import os
import sys
from collections import defaultdict

PHASES = ["gemm", "local_attn", "mem_score", "topk_select", "merge", "other",
          "tp_allreduce", "mp_allgather", "wait"]
COMM = ["tp_allreduce", "mp_allgather", "wait"]


def fail(msg):
    print("plot_scaling.py: error: " + msg, file=sys.stderr)
    sys.exit(1)


def load(dirs):
    rows = []
    for d in dirs:
        path = os.path.join(d, "points.csv")
        if not os.path.isfile(path):
            fail(path + " does not exist (run fotrt bench --sweep ... --output " + d + ")")
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                for k, v in list(r.items()):
                    if k in ("backend", "precision", "retrieval"):
                        continue
                    try:
                        r[k] = float(v)
                    except (TypeError, ValueError):
                        fail("%s: column %s holds %r, not a number" % (path, k, v))
                rows.append(r)
    if not rows:
        fail("no measured points in " + ", ".join(dirs))
    return rows


def label(r):
    k = " k%d" % r["k"] if r["retrieval"] == "topk" else ""
    return "%s%s %s/%s" % (r["retrieval"], k, r["backend"], r["precision"])


def layout(r):
    return "tp%d mp%d dp%d" % (r["tp"], r["mp"], r["dp"])


def main(argv):
    args, out = [], None
    i = 0
    while i < len(argv):
        if argv[i] == "--out":
            if i + 1 >= len(argv):
                fail("--out needs a folder")
            out = argv[i + 1]
            i += 2
            continue
        if argv[i] in ("-h", "--help"):
            print(__doc__)
            return 0
        args.append(argv[i])
        i += 1
    if not args:
        fail("usage: plot_scaling.py DIR [DIR...] [--out PLOTS_DIR]")
    rows = load(args)
    out = out or args[0]
    os.makedirs(out, exist_ok=True)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        fail("matplotlib is missing (apt-get install python3-matplotlib)")
    written = []

    def save(fig, name):
        fig.tight_layout()
        path = os.path.join(out, name)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    q0 = min(r["query_tokens"] for r in rows)
    rows_q = [r for r in rows if r["query_tokens"] == q0]
    mmax = max(r["memory_tokens"] for r in rows_q)

    # Strong scaling: largest memory, tp = 1, time against mp.
    fig, ax = plt.subplots(figsize=(6, 4))
    series = defaultdict(list)
    for r in rows_q:
        if r["memory_tokens"] == mmax and r["tp"] == 1:
            series[label(r)].append((r["mp"], r["total_s"]))
    for name, pts in sorted(series.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] * 1e3 for p in pts], "o-", label=name)
        ax.plot([p[0] for p in pts], [pts[0][1] * 1e3 * pts[0][0] / p[0] for p in pts], ":",
                color="gray")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("mp ranks (tp = 1)")
    ax.set_ylabel("step time (ms)")
    ax.set_title("Strong scaling: memory %d tokens, Q %d (dotted: ideal)" % (mmax, q0))
    ax.legend(fontsize=8)
    save(fig, "strong_scaling.png")

    # Weak scaling: memory per mp rank fixed.
    fig, ax = plt.subplots(figsize=(6, 4))
    series = defaultdict(list)
    for r in rows_q:
        if r["tp"] == 1:
            per = int(r["memory_tokens"] // r["mp"])
            series["%s, %d tokens/rank" % (label(r), per)].append((r["mp"], r["total_s"]))
    for name, pts in sorted(series.items()):
        if len(pts) < 2:
            continue
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] * 1e3 for p in pts], "o-", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("mp ranks (tp = 1)")
    ax.set_ylabel("step time (ms)")
    ax.set_title("Weak scaling: memory per mp rank fixed, Q %d" % q0)
    ax.legend(fontsize=7)
    save(fig, "weak_scaling.png")

    # Time against memory size.
    fig, ax = plt.subplots(figsize=(6, 4))
    series = defaultdict(list)
    for r in rows_q:
        series["%s, %s" % (layout(r), label(r))].append((r["memory_tokens"], r["total_s"]))
    for name, pts in sorted(series.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] * 1e3 for p in pts], "o-", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("memory tokens")
    ax.set_ylabel("step time (ms)")
    ax.set_title("Step time against memory size, Q %d" % q0)
    ax.legend(fontsize=6)
    save(fig, "time_vs_memory.png")

    # Communication share per point.
    fig, ax = plt.subplots(figsize=(7, 4))
    names, shares = [], []
    for r in rows_q:
        if r["memory_tokens"] != mmax:
            continue
        names.append("%s\n%s" % (layout(r), label(r).split(" ")[0]))
        shares.append(100 * sum(r[p + "_s"] for p in COMM) / max(r["total_s"], 1e-12))
    ax.bar(range(len(names)), shares)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, fontsize=6)
    ax.set_ylabel("collectives + wait (% of step)")
    ax.set_title("Communication share, memory %d tokens" % mmax)
    save(fig, "comm_share.png")

    # Dense against top-k.
    fig, ax = plt.subplots(figsize=(7, 4))
    by = defaultdict(dict)
    for r in rows_q:
        if r["memory_tokens"] == mmax:
            by[layout(r)][label(r)] = r["total_s"]
    labels = sorted({k for v in by.values() for k in v})
    lays = sorted(by)
    width = 0.8 / max(len(labels), 1)
    for j, lab in enumerate(labels):
        ax.bar([x + j * width for x in range(len(lays))],
               [by[l].get(lab, 0) * 1e3 for l in lays], width, label=lab)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(lays))])
    ax.set_xticklabels(lays, fontsize=7)
    ax.set_ylabel("step time (ms)")
    ax.set_title("Dense against top-k, memory %d tokens" % mmax)
    ax.legend(fontsize=7)
    save(fig, "dense_vs_topk.png")

    # Per-phase breakdown.
    fig, ax = plt.subplots(figsize=(9, 4))
    bottom = [0.0] * len(rows_q)
    for p in PHASES:
        vals = [r[p + "_s"] * 1e3 for r in rows_q]
        ax.bar(range(len(rows_q)), vals, bottom=bottom, label=p)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(range(len(rows_q)))
    ax.set_xticklabels(["%s %s %dk" % (layout(r), r["retrieval"], r["memory_tokens"] // 1024)
                        for r in rows_q], rotation=90, fontsize=5)
    ax.set_ylabel("ms (rank 0)")
    ax.set_title("Phases of every point")
    ax.legend(fontsize=6, ncol=3)
    save(fig, "phases.png")

    if "pred_total_s" in rows[0]:
        fig, ax = plt.subplots(figsize=(5, 5))
        for p in PHASES:
            xs = [r[p + "_s"] * 1e3 for r in rows if r[p + "_s"] > 0]
            ys = [r["pred_" + p + "_s"] * 1e3 for r in rows if r[p + "_s"] > 0]
            if xs:
                ax.scatter(xs, ys, s=10, label=p)
        lo = min(r[p + "_s"] for r in rows for p in PHASES if r[p + "_s"] > 0) * 1e3
        hi = max(r[p + "_s"] for r in rows for p in PHASES) * 1e3
        ax.plot([lo, hi], [lo, hi], "k:")
        ax.plot([10, 10], [lo, hi], color="gray", lw=0.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("measured (ms)")
        ax.set_ylabel("predicted (ms)")
        ax.set_title("Performance model against measurement")
        ax.legend(fontsize=6)
        save(fig, "model_error.png")

    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
