"""How much Porter stemming moves ROUGE, measured on a finished bench's kept predictions.

This tool scores with rouge-score's Porter stemmer; the FedRouter authors scored with the
`evaluate` library's default, which does not stem (`--no-rouge-stemming` gives theirs). Nothing
is generated again: every `predictions.parquet` a bench run directory kept is rescored both ways
(the stemmed score is checked against the stored one first), and for each evaluation the figure
the tables report (the mean over clients of each client's mean) is written both ways, with the
differences between methods of the same scenario, seed and evaluation under each scoring.

    python bench/rouge_stemming.py /work/bench_raw --out bench/results/raw_cpu/rouge_stemming.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from fedrouter_cli.files import read_table
from fedrouter_cli.metrics import rouge
from fedrouter_cli.stats import stratified_mean


def rescore(path: Path) -> dict[str, Any]:
    """One evaluation's ROUGE-1 and ROUGE-L, stemmed and not, from its kept predictions."""
    table = read_table(path).to_pydict()
    stemmed = [rouge(p, r) for p, r in zip(table["prediction"], table["reference"])]
    plain = [rouge(p, r, stemming=False) for p, r in zip(table["prediction"], table["reference"])]
    worst = max(abs(s["rouge1"] - kept) for s, kept in zip(stemmed, table["rouge1"]))
    if worst > 1e-6:
        raise SystemExit(f"{path}: the stemmed rescoring differs from the stored ROUGE-1 by {worst}; "
                         "was it scored with other settings?")
    out: dict[str, Any] = {"samples": len(plain)}
    for key in ("rouge1", "rougeL"):
        # the tables' figure: each client's mean over its samples, then the mean over clients
        out[key] = {"stemmed": round(stratified_mean([s[key] for s in stemmed], table["client"]), 4),
                    "plain": round(stratified_mean([s[key] for s in plain], table["client"]), 4)}
        out[key]["plain_minus_stemmed"] = round(out[key]["plain"] - out[key]["stemmed"], 4)
    return out


def measure(run_dir: Path) -> dict[str, Any]:
    evaluations = {}
    # cells/<cell>/<method>/evaluate/<method>/<evaluation>/predictions.parquet
    for path in sorted(run_dir.glob("cells/*/*/evaluate/*/*/predictions.parquet")):
        cell = f"{path.parts[-6]}/{path.parts[-5]}"
        evaluations[f"{cell}:{path.parent.name}"] = rescore(path)
    gaps = []
    by_place: dict[tuple[str, str], dict[str, dict]] = defaultdict(dict)
    for name, figures in evaluations.items():
        cell, evaluation = name.split(":")
        place, method = cell.split("/")
        by_place[(place, evaluation.split("+")[1] if "+" in evaluation else "scenario")][method] = figures
    for (place, test_set), methods in sorted(by_place.items()):
        names = sorted(methods)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                first, second = methods[a]["rouge1"], methods[b]["rouge1"]
                gaps.append({"cell": place, "test_set": test_set, "pair": f"{a} - {b}",
                             "stemmed": round(first["stemmed"] - second["stemmed"], 4),
                             "plain": round(first["plain"] - second["plain"], 4)})
    shifts = [e["rouge1"]["plain_minus_stemmed"] for e in evaluations.values()]
    flips = [g for g in gaps if (g["stemmed"] > 0) != (g["plain"] > 0)]
    return {"command": f"python bench/rouge_stemming.py {run_dir}",
            "evaluations_rescored": len(evaluations),
            "rouge1_plain_minus_stemmed": {"mean": round(statistics.fmean(shifts), 4),
                                           "min": min(shifts), "max": max(shifts)} if shifts else None,
            "pairs": len(gaps), "pairs_whose_sign_flips": flips,
            "largest_change_of_a_gap": round(max((abs(g["plain"] - g["stemmed"]) for g in gaps), default=0.0), 4),
            "evaluations": evaluations, "gaps": gaps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a `fedrouter bench` run directory (-r)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = measure(args.run_dir)
    summary = {k: v for k, v in result.items() if k not in ("evaluations", "gaps")}
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
