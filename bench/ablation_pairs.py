"""Paired differences for the bench's ablation cells against the main table's cell of the same seed.

`bench.md`'s ablation tables give each row its own bootstrap interval; whether a K rule or a
federation size changes FedRouter's score is a question about the difference on the same test
samples. This reads a finished bench's `bench.json` and stored samples (nothing is rerun) and
pairs every K-rule ablation cell with the main table's FedRouter cell of its scenario and seed.
(Cells with another number of clients have other clients and test samples, so they have no pair.)

    python bench/ablation_pairs.py bench/results/raw_cpu [--out bench/results/raw_cpu/ablation_pairs.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fedrouter_cli.experiments.paired import load_samples, pair


def k_rule_pairs(results_dir: Path) -> list[dict[str, Any]]:
    cells = json.loads((results_dir / "bench.json").read_text())["cells"]
    main = {(c["scenario"], c["seed"]): c for c in cells
            if c.get("group", "main") == "main" and c["method"] == "fedrouter"}
    out = []
    for cell in cells:
        if cell.get("group") != "k-rule" or cell["method"] != "fedrouter":
            continue
        reference = main.get((cell["scenario"], cell["seed"]))
        if reference is None:
            continue
        rows = {name: [(record, samples)] if (samples := load_samples(results_dir, record).get("local")) else []
                for name, record in ((cell["k_rule"], cell), ("main", reference))}
        gap = pair(rows, cell["k_rule"], "main")
        if gap is not None:
            out.append({**gap, "scenario": cell["scenario"], "seed": cell["seed"], "rule": cell["k_rule"],
                        "against": reference.get("k_rule", "tasks")})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    pairs = k_rule_pairs(args.results_dir)
    for p in pairs:
        rest = p.get("without_labels", {})
        print(f"{p['scenario']} s{p['seed']} {p['rule']} - {p['against']}: {p['mean']:+.4f} "
              f"[{p['low']:+.4f}, {p['high']:+.4f}]; without labels {rest.get('mean', float('nan')):+.4f} "
              f"[{rest.get('low', float('nan')):+.4f}, {rest.get('high', float('nan')):+.4f}]")
    if args.out:
        args.out.write_text(json.dumps({"k_rule": pairs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
