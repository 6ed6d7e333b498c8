#!/usr/bin/env python3
"""Build held-out instruction-task datasets for fedrouter K-selection tests.

Stdlib only.  Every source file is read straight out of a bare git mirror
(`git --git-dir=<MIRROR_ROOT>/<owner>+<name>/repo show <commit>:<path>`), pinned
to the commit listed in mirror.SOURCES (the converters are in tasks.py), so the output is reproducible from the mirrors.

Output: <OUT_DIR>/<task>/{train,test}.jsonl, one {"instruction", "response"}
object per line.  Each row's instruction is the task input wrapped in one of
three natural-language templates (picked per row with a seeded RNG).

Usage:  nice -n 19 python3 bench/heldout/build.py [--mirror-root /work/.mirror] [--out ../heldout]
(the default --out is the folder bench/k_rules.py reads: `heldout` beside the repository; the
mirrors come from the `fetch` tool, one per source repository below)
"""
import argparse
import json
import os
import random
import re
import sys

import mirror
from tasks import TASKS

MIN_TRAIN = 200
MIN_TEST = 60


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def shared_ngrams(root, n=8):
    """8-word shingles of every text in the project's training data (to drop overlaps)."""
    grams = set()
    if not root or not os.path.isdir(root):
        return grams
    for dp, _, fns in os.walk(root):
        for fn in fns:
            if not fn.endswith((".jsonl", ".json", ".csv", ".tsv", ".txt")):
                continue
            with open(os.path.join(dp, fn), encoding="utf-8", errors="ignore") as f:
                words = re.sub(r"[^a-z0-9 ]", " ", f.read().lower()).split()
            grams.update(" ".join(words[i:i + n]) for i in range(len(words) - n + 1))
    return grams


def overlaps(text, grams, n=8):
    words = re.sub(r"[^a-z0-9 ]", " ", text.lower()).split()
    return any(" ".join(words[i:i + n]) in grams for i in range(len(words) - n + 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mirror-root", default=mirror.MIRROR_ROOT)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "heldout"))
    ap.add_argument("--only", nargs="*", help="subset of task names")
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                                     "shared", "data"),
                    help="drop rows sharing any 8-word span with texts under this dir ('' to skip)")
    args = ap.parse_args()
    mirror.MIRROR_ROOT = args.mirror_root
    grams = shared_ngrams(args.shared)
    ok = True
    for name, fn in TASKS.items():
        if args.only and name not in args.only:
            continue
        rng = random.Random(f"fedrouter-heldout-{name}")
        train, test = fn(rng)
        tr_keys = {r["instruction"] for r in train}
        test = [r for r in test if r["instruction"] not in tr_keys]
        n0 = len(train) + len(test)
        train = [r for r in train if not overlaps(r["instruction"], grams)]
        test = [r for r in test if not overlaps(r["instruction"], grams)]
        dropped = n0 - len(train) - len(test)
        d = os.path.join(args.out, name)
        os.makedirs(d, exist_ok=True)
        write_jsonl(os.path.join(d, "train.jsonl"), train)
        write_jsonl(os.path.join(d, "test.jsonl"), test)
        flag = "" if len(train) >= MIN_TRAIN and len(test) >= MIN_TEST else "  <-- TOO SMALL"
        ok &= not flag
        print(f"{name:30s} train={len(train):5d} test={len(test):4d} "
              f"dropped_overlap={dropped}{flag}", flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
