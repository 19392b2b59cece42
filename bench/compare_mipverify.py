#!/usr/bin/env python3
"""Compares `nncert verify --json` verdicts with MIPVerify's reference CSV.

usage: compare_mipverify.py NNCERT_JSON MIPVERIFY_CSV [--require-all]
Prints the (nncert, MIPVerify) verdict counts over the images the CSV
covers (others are counted apart); exits 1 on any contradiction
(robust vs not_robust either way), and with --require-all also when an
image MIPVerify decided is left undecided by nncert.
"""
import csv
import json
import sys
from collections import Counter

DECIDED = {"robust", "not_robust"}


def main():
    report = json.load(open(sys.argv[1]))
    ref = {int(r["test_index"]): r["mipverify_verdict"] for r in csv.DictReader(open(sys.argv[2]))}
    pairs = Counter()
    bad, open_ = [], []
    uncovered = Counter()
    for img in report["images"]:
        ours = "not_robust" if img["verdict"] == "misclassified" else img["verdict"]
        theirs = ref.get(img["index"])
        if theirs is None:
            uncovered[img["verdict"]] += 1
            continue
        pairs[(img["verdict"], theirs)] += 1
        if ours in DECIDED and theirs in DECIDED and ours != theirs:
            bad.append(img["index"])
        if theirs in DECIDED and ours not in DECIDED:
            open_.append(img["index"])
    for (ours, theirs), n in sorted(pairs.items()):
        print(f"nncert {ours:<13} MIPVerify {theirs:<10} {n}")
    if uncovered:
        print(f"images the reference does not cover: {dict(sorted(uncovered.items()))}")
    print(f"contradictions: {len(bad)} {bad[:20]}; undecided by nncert where MIPVerify decided: {len(open_)}")
    if bad or ("--require-all" in sys.argv and open_):
        sys.exit(1)


if __name__ == "__main__":
    main()
