"""Stage `report`: one table of every method evaluated in one or more runs (seeds), as JSON,
Markdown and a bar chart, with 95% bootstrap intervals over test samples and paired differences
of FedRouter against every other method on the same test samples (fedrouter_cli.stats)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from fedrouter_cli import stats
from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.files import atomic_path, read_json, read_table, write_json
from fedrouter_cli.plots import bar_chart
from fedrouter_cli.rundir import RunDir
from fedrouter_cli.stages.bench_stats import CHALLENGERS

METRICS = ("rouge1", "rouge2", "rougeL", "routing_accuracy")


def collect(runs: list[RunDir]) -> list[dict[str, Any]]:
    """Every evaluate/<alg>/<mode>/scores.json of the runs, with the run's communication cost."""
    found = []
    for index, run in enumerate(runs):
        for scores_path in run.scores_files():
            if "@r" in scores_path.parent.name:
                continue  # evaluations of earlier rounds are curves, not table rows
            scores = read_json(scores_path)
            simulated = run.manifest("simulate", scores["alg"]) or {}
            summary = simulated.get("summary", {})
            found.append({**scores, "run": str(run.root), "run_index": index,
                          "predictions": str(run.predictions_file(scores["alg"], scores_path.parent.name)),
                          "bytes": summary.get("bytes_up", 0) + summary.get("bytes_down", 0),
                          "simulate_seconds": simulated.get("seconds")})
    return found


def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and population std of the values present (std 0 for one value; None, None for none)."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0


def _key(row: dict[str, Any]) -> tuple[str, str, str]:
    mode = "-" if row["alg"] == "base" else row["mode"]  # the base model has no router
    return row["alg"], mode, row.get("test_tasks", "scenario")


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std over runs (seeds) of each (method, router mode, test set)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(_key(row), []).append(row)
    table = []
    for (alg, mode, test_tasks), members in sorted(groups.items()):
        entry: dict[str, Any] = {"method": alg, "mode": mode, "test_tasks": test_tasks, "seeds": len(members)}
        for metric in (*METRICS, "bytes", "simulate_seconds"):
            mean, std = mean_std([m.get(metric) for m in members])
            entry[metric] = None if mean is None else round(mean, 4)
            entry[f"{metric}_std"] = None if std is None else round(std, 4)
        scores = _sample_scores(members)
        entry["rouge1_interval"] = (stats.bootstrap(list(scores.values()), [k[:2] for k in scores]).to_json()
                                    if scores else None)
        table.append(entry)
    return table


def _sample_scores(members: list[dict[str, Any]]) -> dict[tuple, float]:
    """(run, client, sample id) -> ROUGE-1, from the evaluations' predictions ({} if they are gone)."""
    scores: dict[tuple, float] = {}
    for m in members:
        path = Path(m.get("predictions", ""))
        if not path.is_file():
            return {}
        table = read_table(path, ("client", "id")).to_pydict()
        scores |= {(m["run_index"], c, i): float(v) for c, i, v in zip(table["client"], table["id"], table["rouge1"])}
    return scores


def paired_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """FedRouter (each router mode; the bench's CHALLENGERS) minus every other method on the same
    test set, paired on the same runs, clients and test samples: the difference in ROUGE-1 and its
    95% interval (stats.paired_row, as the bench computes it)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(_key(row), []).append(row)
    out = []
    for mine_key, mine_rows in sorted(groups.items()):
        if mine_key[0] not in CHALLENGERS or not (mine := _sample_scores(mine_rows)):
            continue
        for other_key, other_rows in sorted(groups.items()):
            if other_key == mine_key or other_key[2] != mine_key[2] or not (theirs := _sample_scores(other_rows)):
                continue
            if (row := stats.paired_row(mine, theirs)) is not None:
                out.append({"method": f"{mine_key[0]}/{mine_key[1]}", "against": f"{other_key[0]}/{other_key[1]}",
                            "test_tasks": mine_key[2], **row})
    return out


def markdown(table: list[dict[str, Any]], paired: list[dict[str, Any]] = ()) -> str:
    def cell(entry: dict, metric: str) -> str:
        if entry[metric] is None:
            return "–"
        return f"{entry[metric]:.4f} ± {entry[f'{metric}_std']:.4f}" if entry["seeds"] > 1 else f"{entry[metric]:.4f}"

    def interval(entry: dict) -> str:
        ci = entry.get("rouge1_interval")
        return "–" if not ci else f"[{ci['low']:.4f}, {ci['high']:.4f}]"

    lines = ["| method | router | test set | seeds | ROUGE-1 | 95% interval | ROUGE-2 | ROUGE-L | routing acc. | MB sent | simulate s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in table:
        megabytes = "–" if not e["bytes"] else f"{e['bytes'] / 1e6:.1f}"
        seconds = "–" if e["simulate_seconds"] is None else f"{e['simulate_seconds']:.0f}"
        lines.append(f"| {e['method']} | {e['mode']} | {e['test_tasks']} | {e['seeds']} | {cell(e, 'rouge1')} | "
                     f"{interval(e)} | {cell(e, 'rouge2')} | {cell(e, 'rougeL')} | {cell(e, 'routing_accuracy')} | "
                     f"{megabytes} | {seconds} |")
    if paired:
        lines += ["", "Paired differences in ROUGE-1 on the same test samples (95% bootstrap interval):", "",
                  "| method | against | test set | samples | difference | 95% interval | significant |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {g['method']} | {g['against']} | {g['test_tasks']} | {g['samples']} | {g['mean']:+.4f} | "
                  f"[{g['low']:+.4f}, {g['high']:+.4f}] | {'**yes**' if g['excludes_zero'] else 'no'} |" for g in paired]
    return "\n".join(lines) + "\n"


def run_report(runs: list[RunDir]) -> dict[str, Any]:
    # a mistyped second --run-dir would otherwise just drop that seed from the mean
    missing = [run.root for run in runs if not run.root.is_dir()]
    if missing:
        raise FedrouterError(f"--run-dir {missing[0]} does not exist; pass the run dirs `fedrouter evaluate` wrote to.")
    rows = collect(runs)
    if not rows:
        raise FedrouterError("No evaluated methods in the run dir(s); run `fedrouter evaluate` first.")
    table = summarize(rows)
    paired = paired_rows(rows)
    json_path, markdown_path, plot_path = runs[0].report_files()
    write_json(json_path, {"runs": [str(r.root) for r in runs], "table": table, "paired": paired})
    with atomic_path(markdown_path) as tmp:
        tmp.write_text(markdown(table, paired))
    with atomic_path(plot_path) as tmp:
        bar_chart(tmp, [f"{e['method']}/{e['mode']}" for e in table], [e["rouge1"] for e in table],
                  [e["rouge1_std"] for e in table], "ROUGE-1 (mean over clients)")
    return {"table": table, "paired": paired, "markdown_path": str(markdown_path), "json_path": str(json_path),
            "plot_path": str(plot_path)}
