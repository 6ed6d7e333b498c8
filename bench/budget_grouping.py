"""FedRouter with and without token budgets and length-grouped training batches, paired.

The bench's dual-s0/fedrouter cell (raw data, cpu preset, 100 test samples per client, the
paper's K rule), run twice in fresh run dirs: once as the bench's table measured it (both off),
once with both on. Reports each run's ROUGE-1 (per task too), training and generation seconds,
and the paired difference on the same 800 test samples with its bootstrap interval (with and
without QQP's yes/no), beside the committed bench.json figure of the same cell; then the "on"
run evaluated without token budgets, which separates the budget's effect from the grouping's.

    python bench/budget_grouping.py --work /tmp/budget_grouping
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RAW = "../shared/data/raw"  # as the bench was run, from the repository root


def run_variant(work: Path, on: bool) -> dict:
    from fedrouter_cli.experiments.matrix import Cell, run_cell
    from fedrouter_cli.presets import resolve_config

    overrides = {"data": {"source": RAW, "test_per_client": 100},
                 "train": {"group_by_length": on}, "eval": {"token_budget": on}}
    config = resolve_config(work / "none.toml", "cpu", overrides)
    # the round-robin the committed cell was measured with (the authors' schedule came later, issue 34)
    cell = Cell("main", "dual", "fedrouter", 0, 8, "tasks", (("local", "scenario", 0),), schedule="staggered")
    started = time.perf_counter()
    record = run_cell(config, work / ("on" if on else "off"), cell)
    record["wall_seconds"] = round(time.perf_counter() - started, 1)
    return record


def without_budget(work: Path) -> dict:
    """The "on" run evaluated again without token budgets (its adapters unchanged): what the budget
    alone changes. Answers that ended within their budget come from the generation cache."""
    from dataclasses import replace
    from pathlib import Path as _Path

    from fedrouter_cli.experiments.paired import sample_scores
    from fedrouter_cli.presets import resolve_config
    from fedrouter_cli.rundir import BenchDir
    from fedrouter_cli.stages.evaluate import run_evaluate

    run = BenchDir(work / "on").cell("dual-s0/fedrouter")
    config = resolve_config(run.config_path, None, {})
    result = run_evaluate(replace(config, eval=replace(config.eval, token_budget=False)), run, "fedrouter")
    return {"rouge1": result.summary["rouge1"], "per_task": result.summary["per_task"],
            "generated": result.summary.get("generated"), "generation_seconds": result.summary["generation_seconds"],
            "samples": sample_scores(_Path(result.summary["predictions_path"]))}


def main() -> None:
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="where the two run dirs go")
    args = parser.parse_args()
    os.chdir(REPO)

    from fedrouter_cli import stats
    from fedrouter_cli.experiments.paired import keyed, label_tasks

    records = {name: run_variant(args.work.resolve(), on) for name, on in (("off", False), ("on", True))}
    samples = {name: r["samples"]["local"] for name, r in records.items()}
    budget_off = without_budget(args.work.resolve())  # the "on" run's adapters, answers not cut by budgets
    labels = frozenset(label_tasks(list(samples.values())))
    paired = stats.paired_row(keyed(records["on"], samples["on"]), keyed(records["off"], samples["off"]))
    without = stats.paired_row(keyed(records["on"], samples["on"], skip_tasks=labels),
                               keyed(records["off"], samples["off"], skip_tasks=labels))
    committed = json.loads((REPO / "bench/results/raw_cpu/bench.json").read_text())
    bench_cell = next(c for c in committed["cells"] if c["cell"] == "dual-s0/fedrouter")

    def summary(record: dict) -> dict:
        evaluation = record["evaluations"][0]
        return {"rouge1": evaluation["rouge1"], "per_task": evaluation["per_task"],
                "simulate_seconds": record["simulate"]["seconds"],
                "generation_seconds": evaluation["generation_seconds"], "generated": evaluation.get("generated"),
                "wall_seconds": record["wall_seconds"]}

    alone = stats.paired_row(keyed(records["on"], samples["on"]), keyed(records["on"], budget_off.pop("samples")))
    write_result("budget_grouping", {
        "command": "python bench/budget_grouping.py " + " ".join(sys.argv[1:]),
        "cell": "dual-s0/fedrouter (raw, cpu preset, 8 clients x 150 train / 100 test, K = tasks)",
        "off": summary(records["off"]), "on": summary(records["on"]),
        "bench_json_rouge1": bench_cell["evaluations"][0]["rouge1"],
        "on_minus_off": paired, "on_minus_off_without_labels": {"left_out": sorted(labels), **(without or {})},
        # the same adapters as "on", answers not cut: the token budget's own effect (the rest of
        # on - off is the length-grouped training's, through other adapters)
        "on_without_token_budget": budget_off, "budget_alone": alone,
    })


if __name__ == "__main__":
    main()
