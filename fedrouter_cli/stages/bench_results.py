"""The bench's tables (Markdown, JSON) and plots, rebuilt from the cells' records every time."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedrouter_cli import plots
from fedrouter_cli.rundir import RunDir, atomic_path, client_name, read_table, write_json
from fedrouter_cli.stages.bench import BASE, METHODS
from fedrouter_cli.stages.report import mean_std

# The paper's ROUGE-1 (Llama-3.2-1B, 25 rounds), for side-by-side reading; None = not reported.
PAPER_ROUGE1: dict[str, dict[str, float | None]] = {
    "fedrouter": {"single": 0.561, "dual": 0.558, "all": 0.566, "generalization": 0.583},
    "fedrouter-star": {"single": 0.562, "dual": 0.563, "all": 0.575, "generalization": None},
    "fedit": {"single": 0.546, "dual": 0.550, "all": 0.560, "generalization": 0.570},
    "feddpa": {"single": None, "dual": None, "all": None, "generalization": 0.461},
    "local": {"single": None, "dual": None, "all": None, "generalization": 0.25},
    "fedcluster": {"single": None, "dual": None, "all": None, "generalization": 0.25},
    "fedsa": {"single": None, "dual": None, "all": None, "generalization": 0.25},
}


# The orderings the paper reports, as (table, better, worse): FedRouter above FedIT in every
# scenario and FedRouter* at least level with FedRouter; on unseen tasks FedRouter > FedIT >
# FedDPA > the client-personalized methods (Local, FedCluster, FedSA at ~0.25).
PAPER_ORDERINGS: tuple[tuple[str, str, str], ...] = (
    *((s, better, worse) for s in ("single", "dual", "all")
      for better, worse in (("fedrouter", "fedit"), ("fedrouter-star", "fedrouter"), ("fedrouter-star", "fedit"))),
    ("generalization", "fedrouter", "fedit"), ("generalization", "fedit", "feddpa"),
    *(("generalization", "feddpa", m) for m in ("local", "fedcluster", "fedsa")),
)


def orderings(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each of the paper's orderings with our ROUGE-1 means: holds (True/False), or None while a
    method's cell has not finished."""
    def ours(table: str, method: str) -> float | None:
        rows = result["generalization"] if table == "generalization" else result["scenarios"].get(table, {})
        return rows[method]["rouge1"]["mean"] if method in rows else None

    checked = []
    for table, better, worse in PAPER_ORDERINGS:
        a, b = ours(table, better), ours(table, worse)
        paper = tuple(PAPER_ROUGE1.get(m, {}).get(table) for m in (better, worse))
        checked.append({"table": table, "better": better, "worse": worse, "paper": paper, "ours": (a, b),
                        "holds": None if a is None or b is None else a > b,
                        "margin": None if a is None or b is None else round(a - b, 4)})
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


def _row(records: list[dict[str, Any]], test_tasks: str = "scenario") -> dict[str, Any]:
    evaluations = [_evaluation(r, test_tasks) for r in records]
    costs = [_cost(r) for r in records]
    return {
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


def tables(records: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in records if "error" not in r]
    main = [r for r in ok if r["group"] == "main"]
    methods = [m for m in (BASE, *METHODS) if any(r["method"] == m for r in main)]
    scenarios = [s for s in ("single", "dual", "all") if any(r["scenario"] == s for r in main)]
    result: dict[str, Any] = {"scenarios": {}, "generalization": {}, "clients": {}, "fixed_k": {}}
    for scenario in scenarios:
        result["scenarios"][scenario] = {
            m: _row([r for r in main if r["scenario"] == scenario and r["method"] == m]) for m in methods}
    single = [r for r in main if r["scenario"] == "single"]
    for m in methods:
        chosen = [r for r in single if r["method"] == m and _evaluation(r, "all")]
        if chosen:
            result["generalization"][m] = _row(chosen, "all")
    for r in ok:
        if r["method"] == "fedrouter" and r["scenario"] == "single" and r["group"] in ("main", "clients"):
            result["clients"].setdefault(str(r["clients"]), []).append(r)
    result["clients"] = {n: _row(rs) for n, rs in sorted(result["clients"].items(), key=lambda kv: int(kv[0]))}
    for r in ok:
        if r["method"] == "fedrouter" and r["group"] == "fixed-k":
            same = [m for m in main if m["method"] == "fedrouter" and m["scenario"] == r["scenario"]
                    and m["seed"] == r["seed"]]
            result["fixed_k"].setdefault(f"K = {r['fixed_k']} (number of tasks)", []).append(r)
            result["fixed_k"].setdefault("K by silhouette", []).extend(same)
    result["fixed_k"] = {name: _row(rs) | {"global_clusters": _stat([r["simulate"]["global_clusters"] for r in rs])}
                         for name, rs in result["fixed_k"].items()}
    return result


def _fmt(stat: dict[str, Any], digits: int = 3) -> str:
    if stat["mean"] is None:
        return "–"
    return f"{stat['mean']:.{digits}f}" + (f" ± {stat['std']:.{digits}f}" if stat["n"] > 1 else "")


def machine_time(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Seconds each finished cell took when it ran (carried-over cells keep their own), summed."""
    ran = [r for r in records if "error" not in r]
    return {"cells": len(ran), "seconds": round(sum(float(r.get("bench_seconds", 0.0)) for r in ran), 1),
            "carried_over": sum(bool(r.get("carried_over")) for r in ran)}


def markdown(result: dict[str, Any], failures: list[dict[str, Any]], machine: dict[str, Any] | None = None) -> str:
    out = ["# fedrouter bench", ""]
    if machine:
        out += [f"{machine['cells']} finished cells, {machine['seconds'] / 3600:.2f} h of machine time "
                "(each cell's own run, summed)", ""]
    scenarios = list(result["scenarios"])
    if scenarios:
        out += ["## ROUGE-1 by scenario (FedRouter routes in local mode); paper values in brackets", "",
                "| method | " + " | ".join(scenarios) + " |", "|---|" + "---|" * len(scenarios)]
        methods = list(result["scenarios"][scenarios[0]])
        for m in methods:
            cells = []
            for s in scenarios:
                paper = PAPER_ROUGE1.get(m, {}).get(s)
                cells.append(_fmt(result["scenarios"][s][m]["rouge1"]) + (f" [{paper:.3f}]" if paper else ""))
            out.append(f"| {m} | " + " | ".join(cells) + " |")
        for s in scenarios:
            out += ["", f"### {s}", "", "| method | ROUGE-1 | ROUGE-2 | ROUGE-L | routing acc. | wall s | MB sent |",
                    "|---|---|---|---|---|---|---|"]
            for m, row in result["scenarios"][s].items():
                out.append(f"| {m} | {_fmt(row['rouge1'], 4)} | {_fmt(row['rouge2'], 4)} | {_fmt(row['rougeL'], 4)} | "
                           f"{_fmt(row['routing_accuracy'])} | {_fmt(row['seconds'], 0)} | {_fmt(row['megabytes'], 1)} |")
    for s in scenarios:
        rows = result["scenarios"][s]
        tasks = sorted({t for row in rows.values() for t in row["per_task"]})
        if tasks:
            out += ["", f"### {s}: ROUGE-1 per task", "", "| method | " + " | ".join(tasks) + " |",
                    "|---|" + "---|" * len(tasks)]
            out += [f"| {m} | " + " | ".join(_fmt(row["per_task"][t]) if t in row["per_task"] else "–" for t in tasks)
                    + " |" for m, row in rows.items()]
    if result["generalization"]:
        out += ["", "## Generalization: trained on `single`, tested on every task (FedRouter in global mode)", "",
                "| method | ROUGE-1 | paper | routing acc. |", "|---|---|---|---|"]
        for m, row in result["generalization"].items():
            paper = PAPER_ROUGE1.get(m, {}).get("generalization")
            out.append(f"| {m} | {_fmt(row['rouge1'])} | {'–' if paper is None else f'{paper:.3f}'} | "
                       f"{_fmt(row['routing_accuracy'])} |")
    if result["clients"]:
        out += ["", "## Ablation: number of clients (FedRouter, single scenario)", "",
                "| clients | ROUGE-1 | routing acc. | wall s | MB sent |", "|---|---|---|---|---|"]
        for n, row in result["clients"].items():
            out.append(f"| {n} | {_fmt(row['rouge1'])} | {_fmt(row['routing_accuracy'])} | "
                       f"{_fmt(row['seconds'], 0)} | {_fmt(row['megabytes'], 1)} |")
    if result["fixed_k"]:
        out += ["", "## Ablation: K by silhouette against K fixed to the number of tasks (FedRouter)", "",
                "| K rule | ROUGE-1 | routing acc. | global clusters |", "|---|---|---|---|"]
        for name, row in result["fixed_k"].items():
            out.append(f"| {name} | {_fmt(row['rouge1'])} | {_fmt(row['routing_accuracy'])} | "
                       f"{_fmt(row['global_clusters'], 1)} |")
    out += _orderings_markdown(orderings(result))
    if failures:
        out += ["", "## Cells that failed (rerun `fedrouter bench` to retry them)", ""]
        out += [f"- `{f['cell']}`: {f['error']}" for f in failures]
    return "\n".join(out) + "\n"


def _orderings_markdown(checked: list[dict[str, Any]]) -> list[str]:
    if not any(c["holds"] is not None for c in checked):
        return []
    out = ["", "## The paper's orderings, checked here (ROUGE-1 means; paper values in brackets)", "",
           "| where | ordering | ours | holds here | margin |", "|---|---|---|---|---|"]
    for c in checked:
        paper = " [" + " vs ".join("–" if v is None else f"{v:.3f}" for v in c["paper"]) + "]"
        ours = "not run yet" if c["holds"] is None else f"{c['ours'][0]:.3f} vs {c['ours'][1]:.3f}"
        verdict = {None: "–", True: "yes", False: "**no**"}[c["holds"]]
        margin = "–" if c["margin"] is None else f"{c['margin']:+.3f}"
        out.append(f"| {c['table']} | {c['better']} > {c['worse']} | {ours}{paper} | {verdict} | {margin} |")
    return out


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

    from fedrouter_cli.stages.embed import read_embeddings

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


def write_results(out: Path, records: list[dict[str, Any]], plan: dict[str, Any],
                  kept: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """Write bench.json, bench.md and the PNGs into `out`; returns their paths and the tables.
    `kept`: earlier records outside these tables, stored in bench.json so that none is lost."""
    out.mkdir(parents=True, exist_ok=True)
    failures = [r for r in records if "error" in r]
    result = tables(records)
    ok = [r for r in records if "error" not in r]
    written = {"json": str(out / "bench.json"), "markdown": str(out / "bench.md"), "plots": []}

    def plot(name: str, draw) -> None:
        with atomic_path(out / name) as tmp:
            draw(tmp)
        written["plots"].append(str(out / name))

    for scenario, rows in result["scenarios"].items():
        plot(f"rouge1_{scenario}.png", lambda p, rows=rows, s=scenario: plots.bar_chart(
            p, list(rows), [r["rouge1"]["mean"] or 0 for r in rows.values()],
            [r["rouge1"]["std"] or 0 for r in rows.values()], f"ROUGE-1, {s} scenario"))
    if result["generalization"]:
        rows = result["generalization"]
        plot("generalization.png", lambda p: plots.bar_chart(
            p, list(rows), [r["rouge1"]["mean"] or 0 for r in rows.values()],
            [r["rouge1"]["std"] or 0 for r in rows.values()], "ROUGE-1 on every task (trained on single)"))
    if curves := _round_curves(ok):
        plot("rouge1_per_round.png", lambda p: plots.line_chart(p, curves, "round", "ROUGE-1", "ROUGE-1 per round"))
    for level in ("local", "global"):
        if curves := _silhouettes(ok, level):
            plot(f"silhouette_{level}.png", lambda p, c=curves, lv=level: plots.line_chart(
                p, c, "K", "silhouette" + (" (mean over clients)" if lv == "local" else ""), f"{lv} silhouette"))
    map_scenario = plan.get("curve_scenario") or next(iter(result["scenarios"]), None)
    mapped = next((r for r in ok if r["group"] == "main" and r["scenario"] == map_scenario), None)
    # a record carried over from another machine may point at a run dir that is not here
    if mapped and RunDir(Path(mapped.get("run_dir", ""))).embedding_file(client_name(0), "test").exists():
        plot("embedding_map.png", lambda p: _embedding_map(p, mapped))
    with atomic_path(out / "bench.md") as tmp:
        tmp.write_text(markdown(result, failures, machine_time(records)))
    write_json(out / "bench.json", {"plan": plan, "tables": result, "orderings": orderings(result),
                                    "machine": machine_time(records), "cells": records, "kept_cells": list(kept)})
    return {**written, "tables": result, "failed_cells": [f["cell"] for f in failures]}
