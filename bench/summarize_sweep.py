#!/usr/bin/env python3
"""Summarises bench/vnncomp_sweep.sh output per benchmark: answers, wrong
answers against the 2021 consensus, times; next to α,β-CROWN's official 2021
results from reference.csv.  usage: summarize_sweep.py SWEEP.csv REFERENCE.csv"""
import csv, statistics, sys
from collections import defaultdict

rows = list(csv.DictReader(open(sys.argv[1])))
ref = list(csv.DictReader(open(sys.argv[2])))
abc = defaultdict(lambda: [0, 0])  # benchmark -> [solved, total]
for r in ref:
    if r["onnx"].startswith("./benchmarks/test/") and r["benchmark"] != "test":
        continue  # the test instances repeated under every benchmark
    abc[r["benchmark"]][1] += 1
    abc[r["benchmark"]][0] += r["abcrown"] in ("sat", "unsat")
by = defaultdict(list)
for r in rows:
    by[r["benchmark"]].append(r)
print("| benchmark | instances | sat | unsat | unknown | timeout | wrong | median s | total s | α,β-CROWN 2021 solved |")
print("|---|---|---|---|---|---|---|---|---|---|")
for b, rs in sorted(by.items()):
    res = [r["nncert_result"] for r in rs]
    wrong = sum(1 for r in rs if {r["consensus"], r["nncert_result"]} == {"sat", "unsat"})
    t = [float(r["seconds"]) for r in rs]
    solved, total = abc[b]
    print(f"| {b} | {len(rs)} | {res.count('sat')} | {res.count('unsat')} | {res.count('unknown')} | {res.count('timeout')} | {wrong} | {statistics.median(t):.2f} | {sum(t):.0f} | {solved}/{total} |")
