"""The bench's tables (Markdown, JSON) and plots, rebuilt from the cells' records every time."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedrouter_cli import plots, stats
from fedrouter_cli.experiments import paired as bench_stats
from fedrouter_cli.experiments.markdown import PAPER_ROUGE1, machine_time, markdown
from fedrouter_cli.experiments.matrix import BASE, METHODS
from fedrouter_cli.experiments.paired import load_samples, store_samples
from fedrouter_cli.files import atomic_path, read_table, write_json
from fedrouter_cli.rundir import BenchResults, RunDir, client_name
from fedrouter_cli.stages.report import mean_std

# The orderings the paper reports, as (table, better, worse): FedRouter above FedIT in every
# scenario and FedRouter* at least level with FedRouter; on unseen tasks FedRouter > FedIT >
# FedDPA > the client-personalized methods (Local, FedCluster, FedSA at ~0.25).
PAPER_ORDERINGS: tuple[tuple[str, str, str], ...] = (
    *((s, better, worse) for s in ("single", "dual", "all")
      for better, worse in (("fedrouter", "fedit"), ("fedrouter-star", "fedrouter"), ("fedrouter-star", "fedit"))),
    ("generalization", "fedrouter", "fedit"), ("generalization", "fedit", "feddpa"),
    *(("generalization", "feddpa", m) for m in ("local", "fedcluster", "fedsa")),
)


def orderings(result: dict[str, Any], rows: dict[str, dict[str, list]] | None = None) -> list[dict[str, Any]]:
    """Each of the paper's orderings with our ROUGE-1 means and, where per-sample scores exist,
    the paired difference's intervals. verdict (stats.verdict): 'holds' (the interval over seeds and
    test samples above 0), 'does not hold' (below 0), 'cannot tell' (it contains 0); without an
    interval the means decide, marked so."""
    def ours(table: str, method: str) -> float | None:
        found = result["generalization"] if table == "generalization" else result["scenarios"].get(table, {})
        return found[method]["rouge1"]["mean"] if method in found else None

    checked = []
    for table, better, worse in PAPER_ORDERINGS:
        a, b = ours(table, better), ours(table, worse)
        paper = tuple(PAPER_ROUGE1.get(m, {}).get(table) for m in (better, worse))
        gap = bench_stats.pair((rows or {}).get(table, {}), better, worse)
        if a is None or b is None:
            verdict = None
        elif gap is None:
            verdict = "holds (means only)" if a > b else "does not hold (means only)"
        else:
            verdict = stats.verdict(gap)
        checked.append({"table": table, "better": better, "worse": worse, "paper": paper, "ours": (a, b),
                        "holds": None if a is None or b is None else a > b, "verdict": verdict,
                        "margin": None if a is None or b is None else round(a - b, 4), "paired": gap})
    return checked


def _evaluation(record: dict[str, Any], test_tasks: str = "scenario") -> dict | None:
    """The record's evaluation of its last round on a test set ('scenario' or 'all')."""
    matching = [e for e in record.get("evaluations", []) if e["test_tasks"] == test_tasks]
    return max(matching, key=lambda e: e["round"], default=None)


def _stat(values: list[float | None]) -> dict[str, float | int | None]:
    mean, std = mean_std(values)
    return {"mean": None if mean is None else round(mean, 4), "std": None if std is None else round(std, 4),
            "n": sum(v is not None for v in values)}


def _cost(record: dict[str, Any]) -> tuple[float, int]:
    """Wall seconds of the cell's training and its main evaluation, and bytes communicated."""
    sim = record.get("simulate", {})
    main = _evaluation(record)
    seconds = float(sim.get("seconds", 0.0)) + float(main["seconds"] if main else 0.0)
    return seconds, int(sim.get("bytes_up", 0)) + int(sim.get("bytes_down", 0))


def _row(records: list[dict[str, Any]], test_tasks: str = "scenario",
         samples: dict[str, dict[str, dict[str, list]]] | None = None) -> dict[str, Any]:
    evaluations = [_evaluation(r, test_tasks) for r in records]
    costs = [_cost(r) for r in records]
    row = {
        "rouge1": _stat([e["rouge1"] if e else None for e in evaluations]),
        "rouge2": _stat([e["rouge2"] if e else None for e in evaluations]),
        "rougeL": _stat([e["rougeL"] if e else None for e in evaluations]),
        "routing_accuracy": _stat([e.get("routing_accuracy") if e else None for e in evaluations]),
        "seconds": _stat([c[0] for c in costs]),
        "megabytes": _stat([c[1] / 1e6 for c in costs]),
        "seeds": len([e for e in evaluations if e]),
        "per_task": {task: _stat([e["per_task"].get(task) if e else None for e in evaluations])
                     for task in sorted({t for e in evaluations if e for t in e.get("per_task", {})})},
    }
    scored = _scored(records, test_tasks, samples or {})
    if scored:
        cells, per_sample = [r for r, _ in scored], [s for _, s in scored]
        row["interval"] = bench_stats.interval(cells, per_sample)
        labels = sorted(bench_stats.label_tasks(per_sample))
        row["label_accuracy"] = {t: bench_stats.interval(cells, per_sample, "exact", task=t) for t in labels}
        row["label_answers"] = {t: bench_stats.label_answers(cells, per_sample, t) for t in labels}
    return row


def _scored(records: list[dict[str, Any]], test_tasks: str,
            samples: dict[str, dict[str, dict[str, list]]]) -> list[tuple[dict[str, Any], dict[str, list]]]:
    """(record, per-sample scores of its last-round evaluation on `test_tasks`) where stored."""
    from fedrouter_cli.stages.evaluate import evaluation_name

    found = []
    for r in records:
        e = _evaluation(r, test_tasks)
        stored = samples.get(r["cell"], {})
        if e and stored and (s := stored.get(evaluation_name(e["mode"], test_tasks))):
            found.append((r, s))
    return found


def main_table_members(records: list[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """The main table's cells by table (each scenario, then 'generalization': the single cells
    evaluated on every task) and method, in the tables' order; failed cells left out."""
    main = [r for r in records if r["group"] == "main" and "error" not in r]
    methods = [m for m in (BASE, *METHODS) if any(r["method"] == m for r in main)]
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for scenario in ("single", "dual", "all"):
        if any(r["scenario"] == scenario for r in main):
            out[scenario] = {m: [r for r in main if r["scenario"] == scenario and r["method"] == m] for m in methods}
    general = {m: [r for r in main if r["scenario"] == "single" and r["method"] == m and _evaluation(r, "all")]
               for m in methods}
    if general := {m: rs for m, rs in general.items() if rs}:
        out["generalization"] = general
    return out


def test_set(table: str) -> str:
    """The evaluation a table reads: the generalization table's is on every task."""
    return "all" if table == "generalization" else "scenario"


def scored_tables(members: dict[str, dict[str, list[dict[str, Any]]]],
                  samples: dict[str, dict[str, dict[str, list]]]
                  ) -> dict[str, dict[str, list[tuple[dict[str, Any], dict[str, list]]]]]:
    """table -> method -> (record, per-sample scores) of main_table_members' cells, for pairing
    any two methods of a table on the same test samples (bench_stats.pair)."""
    return {table: {m: _scored(rs, test_set(table), samples) for m, rs in of_table.items()}
            for table, of_table in members.items()}


def tables(records: list[dict[str, Any]], samples: dict[str, dict[str, dict[str, list]]] | None = None
           ) -> dict[str, Any]:
    """The bench's tables. samples: per-sample scores by cell name and evaluation name
    (bench_stats.load_samples); without them the tables have no intervals or paired differences."""
    samples = samples or {}
    ok = [r for r in records if "error" not in r]
    result: dict[str, Any] = {"scenarios": {}, "generalization": {}, "clients": {}, "k_rule": {}, "schedule": {},
                              "paired": {}}
    members = main_table_members(ok)
    scored = scored_tables(members, samples)
    for table, of_table in members.items():
        rows = {m: _row(rs, test_set(table), samples) for m, rs in of_table.items()}
        if table == "generalization":
            result["generalization"] = rows
        else:
            result["scenarios"][table] = rows
        result["paired"][table] = bench_stats.comparisons(scored[table])
    # The main table's row joins the ablation on the ablation's seeds only, so that every row of
    # the table is the same seeds (a 3-seed mean beside a 1-seed figure would compare seeds too).
    ablation_seeds = {r["seed"] for r in ok if r["group"] == "clients"}
    for r in ok:
        if r["method"] == "fedrouter" and r["scenario"] == "single" and (
                r["group"] == "clients" or (r["group"] == "main" and r["seed"] in ablation_seeds)):
            result["clients"].setdefault(str(r["clients"]), []).append(r)
    result["clients"] = {n: _row(rs) for n, rs in sorted(result["clients"].items(), key=lambda kv: int(kv[0]))}
    result["k_rule"] = _k_rule_rows(ok, samples)
    result["schedule"] = _schedule_rows(ok, samples)
    result["orderings"] = orderings(result, scored)
    return result


def _k_rule_rows(ok: list[dict[str, Any]], samples: dict) -> dict[str, dict[str, Any]]:
    """FedRouter per scenario under each K rule, on the ablation's seed: the K and purity each
    rule gives, and what it scores."""
    ablations = [r for r in ok if r["group"] == "k-rule" and r["method"] == "fedrouter"]
    rows: dict[str, dict[str, Any]] = {}
    for ablation in ablations:
        same = [r for r in ok if r["group"] == "main" and r["method"] == "fedrouter"
                and r["scenario"] == ablation["scenario"] and r["seed"] == ablation["seed"]]
        for r in [*same, ablation]:
            rule = r.get("k_rule", "auto")
            local = r.get("cluster_local", {})
            rows[f"{r['scenario']} / {rule}"] = _row([r], samples=samples) | {
                "scenario": r["scenario"], "rule": rule,
                "global_clusters": r["simulate"].get("global_clusters"),
                "global_purity": r["simulate"].get("global_purity"),
                "local_k": local.get("k"), "local_purity": local.get("purity")}
    return rows


def _schedule_rows(ok: list[dict[str, Any]], samples: dict) -> dict[str, dict[str, Any]]:
    """FedRouter per scenario under the authors' schedule (the main table's cells) and this tool's
    staggered one, on the seeds both have: each row's figures, and the paired difference
    staggered - authors pooled over those seeds and seed by seed."""
    rows: dict[str, dict[str, Any]] = {}
    staggered = [r for r in ok if r["group"] == "schedule" and r["method"] == "fedrouter"]
    for scenario in dict.fromkeys(r["scenario"] for r in staggered):
        main = [r for r in ok if r["group"] == "main" and r["method"] == "fedrouter" and r["scenario"] == scenario]
        # only the seeds both schedules have: a mean over other seeds would compare seeds, not schedules
        seeds = {r["seed"] for r in staggered if r["scenario"] == scenario} & {r["seed"] for r in main}
        if not seeds:
            continue
        ablation = [r for r in staggered if r["scenario"] == scenario and r["seed"] in seeds]
        main = [r for r in main if r["seed"] in seeds]
        scored = {"staggered": _scored(ablation, "scenario", samples), "authors": _scored(main, "scenario", samples)}
        per_seed = {}
        for seed in sorted(seeds):
            one = {name: [(r, s) for r, s in pairs if r["seed"] == seed] for name, pairs in scored.items()}
            per_seed[str(seed)] = bench_stats.pair(one, "staggered", "authors")
        rows[scenario] = {"authors": _row(main, samples=samples), "staggered": _row(ablation, samples=samples),
                          "difference": bench_stats.pair(scored, "staggered", "authors"), "per_seed": per_seed}
    return rows


def _round_curves(records: list[dict[str, Any]]) -> dict[str, dict[int, float]]:
    curves: dict[str, dict[int, list[float]]] = {}
    for r in records:
        rounds = {e["round"]: e["rouge1"] for e in r.get("evaluations", []) if e["test_tasks"] == "scenario"}
        if len(rounds) > 1:
            label = f"{r['method']} ({r['scenario']})"
            for k, v in rounds.items():
                curves.setdefault(label, {}).setdefault(k, []).append(v)
    return {label: {k: statistics.fmean(v) for k, v in sorted(points.items())} for label, points in curves.items()}


def _silhouettes(records: list[dict[str, Any]], level: str) -> dict[str, dict[int, float]]:
    curves = {}
    for r in records:
        if r["method"] == "fedrouter" and r["group"] == "main" and r["seed"] == records[0]["seed"] and "select_k" in r:
            scores = r["select_k"][level]["scores"]
            curves[r["scenario"]] = {int(k): v["mean"] for k, v in scores.items()}
    return curves


def _embedding_map(path: Path, chosen: dict[str, Any]) -> None:
    """PCA of the clients' test embeddings, coloured by task, marked by client."""
    from sklearn.decomposition import PCA

    from fedrouter_cli.vectors import read_embeddings

    run = RunDir(Path(chosen["run_dir"]))
    points, tasks, owners = [], [], []
    for c in range(chosen["clients"]):
        name = client_name(c)
        _, vectors = read_embeddings(run.embedding_file(name, "test"))
        points.append(vectors)
        tasks += read_table(run.partition_file(name, "test")).column("task").to_pylist()
        owners += [name] * len(vectors)
    xy = PCA(n_components=2, random_state=0).fit_transform(np.concatenate(points))
    plots.embedding_map(path, xy, tasks, owners, f"test embeddings, {chosen['scenario']} scenario (PCA)")


def _error_bar(row: dict[str, Any]) -> tuple[float, float] | None:
    """The row's bootstrap interval as the table gives it (None without per-sample scores)."""
    return (row["interval"]["low"], row["interval"]["high"]) if row.get("interval") else None


def write_results(out: Path, records: list[dict[str, Any]], plan: dict[str, Any],
                  kept: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """Write bench.json, bench.md and the PNGs into `out`; returns their paths and the tables.
    `kept`: earlier records outside these tables, stored in bench.json so that none is lost."""
    out.mkdir(parents=True, exist_ok=True)
    # records carried over under a new name copy their stored samples before a fresh cell of the
    # old name overwrites them
    for record in sorted(records, key=lambda r: "samples_cell" not in r):
        store_samples(out, record)
    failures = [r for r in records if "error" in r]
    ok = [r for r in records if "error" not in r]
    result = tables(records, {r["cell"]: load_samples(out, r) for r in ok})
    files = BenchResults(out)
    written = {"json": str(files.json_file), "markdown": str(files.markdown_file), "plots": []}

    def plot(name: str, draw) -> None:
        with atomic_path(files.plot_file(name)) as tmp:
            draw(tmp)
        written["plots"].append(str(files.plot_file(name)))

    for scenario, rows in result["scenarios"].items():
        plot(f"rouge1_{scenario}", lambda p, rows=rows, s=scenario: plots.bar_chart(
            p, list(rows), [r["rouge1"]["mean"] or 0 for r in rows.values()], [_error_bar(r) for r in rows.values()],
            f"ROUGE-1, {s} scenario (bars: 95% bootstrap interval)"))
    if result["generalization"]:
        rows = result["generalization"]
        plot("generalization", lambda p: plots.bar_chart(
            p, list(rows), [r["rouge1"]["mean"] or 0 for r in rows.values()], [_error_bar(r) for r in rows.values()],
            "ROUGE-1 on every task, trained on single (95% bootstrap interval)"))
    if curves := _round_curves(ok):
        plot("rouge1_per_round", lambda p: plots.line_chart(p, curves, "round", "ROUGE-1", "ROUGE-1 per round"))
    for level in ("local", "global"):
        if curves := _silhouettes(ok, level):
            plot(f"silhouette_{level}", lambda p, c=curves, lv=level: plots.line_chart(
                p, c, "K", "silhouette" + (" (mean over clients)" if lv == "local" else ""), f"{lv} silhouette"))
    map_scenario = plan.get("curve_scenario") or next(iter(result["scenarios"]), None)
    mapped = next((r for r in ok if r["group"] == "main" and r["scenario"] == map_scenario), None)
    # a record carried over from another machine may point at a run dir that is not here
    if mapped and RunDir(Path(mapped.get("run_dir", ""))).embedding_file(client_name(0), "test").exists():
        plot("embedding_map", lambda p: _embedding_map(p, mapped))
    with atomic_path(files.markdown_file) as tmp:
        tmp.write_text(markdown(result, failures, machine_time(records)))
    write_json(files.json_file, {"plan": plan, "tables": result, "orderings": result["orderings"],
                                    "machine": machine_time(records), "cells": records, "kept_cells": list(kept)})
    return {**written, "tables": result, "failed_cells": [f["cell"] for f in failures]}
