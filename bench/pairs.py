"""Paired difference in ROUGE-1 between any two methods of one of a finished bench's tables.

`bench.md` pairs FedRouter and FedRouter* against every other method; an ordering among the
baselines (the paper's "FedIT > Local" on unseen tasks, say) needs the same figures for another
pair. This reads `bench.json` and the stored per-sample scores (nothing is rerun) and prints, for
each pair asked, the difference seed by seed, pooled with its interval over test samples, the
interval that resamples seeds as well (the one verdicts read), the verdict, and the same without
label tasks (QQP).

    python bench/pairs.py bench/results/raw_cpu generalization fedit:local fedit:fedcluster [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fedrouter_cli import stats
from fedrouter_cli.experiments.paired import load_samples, pair
from fedrouter_cli.experiments.results import main_table_members, scored_tables


def pairs(results_dir: Path, table: str, wanted: list[tuple[str, str]]) -> list[dict[str, Any]]:
    cells = [c for c in json.loads((results_dir / "bench.json").read_text())["cells"] if "error" not in c]
    scored = scored_tables(main_table_members(cells), {c["cell"]: load_samples(results_dir, c) for c in cells})
    if table not in scored:
        raise SystemExit(f"{results_dir}/bench.json has no table {table!r}; it has {', '.join(scored)}.")
    found = []
    for better, worse in wanted:
        gap = pair(scored[table], better, worse)
        if gap is None:
            raise SystemExit(f"No paired samples for {better} and {worse} in {table}: is each a method there?")
        found.append({"table": table, **gap, "verdict": stats.verdict(gap),
                      "verdict_without_labels": stats.verdict(gap.get("without_labels"))})
    return found


def line(gap: dict[str, Any]) -> str:
    seeds = gap["over_seeds"]
    per_seed = ", ".join(f"s{s} {v:+.3f}" for s, v in gap["per_seed"].items())
    text = (f"{gap['table']}: {gap['method']} - {gap['against']} {gap['mean']:+.4f} "
            f"(per seed {per_seed}; test samples [{gap['low']:+.4f}, {gap['high']:+.4f}]; "
            f"seeds and samples [{seeds['low']:+.4f}, {seeds['high']:+.4f}]) {gap['verdict']}")
    if rest := gap.get("without_labels"):
        text += (f"; without {', '.join(rest['left_out'])}: {rest['mean']:+.4f} "
                 f"[{rest['over_seeds']['low']:+.4f}, {rest['over_seeds']['high']:+.4f}] "
                 f"{gap['verdict_without_labels']}")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", type=Path)
    parser.add_argument("table", help="single, dual, all or generalization")
    parser.add_argument("pairs", nargs="+", metavar="BETTER:WORSE")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    wanted = []
    for text in args.pairs:
        better, sep, worse = text.partition(":")
        if not sep or not better or not worse:
            raise SystemExit(f"Each pair is BETTER:WORSE (fedit:local), got {text!r}.")
        wanted.append((better, worse))
    found = pairs(args.results_dir, args.table, wanted)
    print(json.dumps(found, indent=2) if args.json else "\n".join(line(g) for g in found))


if __name__ == "__main__":
    main()
