"""Stage `report`: one table of every method evaluated in one or more runs (seeds), as JSON,
Markdown and a bar chart, with 95% bootstrap intervals over test samples and paired differences
of FedRouter against every other method on the same test samples (fedrouter_cli.stats)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.files import atomic_path, read_json, write_json
from fedrouter_cli.plots import bar_chart
from fedrouter_cli.rundir import RunDir
from fedrouter_cli.stages import bench_stats
from fedrouter_cli.stages.bench_markdown import floor_sentence, gap_cell, per_seed_cell
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


# (method, router mode, test set) -> its runs' rows, their records as the bench's statistics see
# cells, and their per-sample scores ([] when any predictions file is gone)
Groups = dict[tuple[str, str, str], tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, list]]]]


def load_groups(rows: list[dict[str, Any]]) -> Groups:
    """The rows grouped by (method, router mode, test set), each predictions file read once for
    both the table and the paired differences."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(_key(row), []).append(row)
    return {key: (members, _records(members), _samples(members)) for key, members in sorted(groups.items())}


def summarize(groups: Groups) -> list[dict[str, Any]]:
    """Mean ± std over runs (seeds) of each (method, router mode, test set), with the bootstrap
    interval of its ROUGE-1 and, on label tasks (one-word references such as QQP's yes/no), its
    label accuracy, most common answer and the floor of always giving the majority label."""
    table = []
    for (alg, mode, test_tasks), (members, records, samples) in groups.items():
        entry: dict[str, Any] = {"method": alg, "mode": mode, "test_tasks": test_tasks, "seeds": len(members)}
        for metric in (*METRICS, "bytes", "simulate_seconds"):
            mean, std = mean_std([m.get(metric) for m in members])
            entry[metric] = None if mean is None else round(mean, 4)
            entry[f"{metric}_std"] = None if std is None else round(std, 4)
        entry["rouge1_interval"] = bench_stats.interval(records, samples) if samples else None
        labels = sorted(bench_stats.label_tasks(samples)) if samples else []
        entry["label_accuracy"] = {t: bench_stats.interval(records, samples, "exact", task=t) for t in labels}
        entry["label_answers"] = {t: bench_stats.label_answers(records, samples, t) for t in labels}
        table.append(entry)
    return table


def _records(members: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs as the bench's statistics see cells: the run's index stands for its seed."""
    return [{"seed": m["run_index"]} for m in members]


def _samples(members: list[dict[str, Any]]) -> list[dict[str, list]]:
    """Each evaluation's per-sample scores, from its predictions ([] if any of them is gone)."""
    paths = [Path(m.get("predictions", "")) for m in members]
    return [bench_stats.sample_scores(p) for p in paths] if all(p.is_file() for p in paths) else []


def paired_rows(groups: Groups) -> list[dict[str, Any]]:
    """FedRouter (each router mode; the bench's CHALLENGERS) minus every other method on the same
    test set, paired on the same runs, clients and test samples: the difference in ROUGE-1 and its
    95% interval, also without label tasks when there are some (bench_stats.pair, as the bench
    computes it)."""
    by_test_set: dict[str, dict[str, list]] = {}
    for (alg, mode, test_tasks), (_, records, samples) in groups.items():
        if samples:
            by_test_set.setdefault(test_tasks, {})[f"{alg}/{mode}"] = list(zip(records, samples))
    out = []
    for test_tasks, methods in by_test_set.items():
        for mine in methods:
            if mine.split("/")[0] not in CHALLENGERS:
                continue
            for other in methods:
                if other != mine and (gap := bench_stats.pair(methods, mine, other)) is not None:
                    out.append({**gap, "test_tasks": test_tasks})
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
    lines += _label_lines(table)
    if paired:
        left_out = sorted({t for g in paired for t in (g.get("without_labels") or {}).get("left_out", [])})
        extra = f" without {', '.join(left_out)}: difference [95% interval] |" if left_out else ""
        lines += ["", "Paired differences in ROUGE-1 on the same test samples: each run's (seed's) difference, the 95% "
                  "bootstrap interval over test samples, and the one that resamples runs as well, which decides "
                  "significance:", "",
                  "| method | against | test set | samples | difference | per run | 95% interval, test samples | "
                  "95% interval, runs and samples | significant |" + extra,
                  "|---|---|---|---|---|---|---|---|---|" + "---|" * bool(left_out)]
        for g in paired:
            over = g.get("over_seeds", g)
            line = (f"| {g['method']} | {g['against']} | {g['test_tasks']} | {g['samples']} | {g['mean']:+.4f} | "
                    f"{per_seed_cell(g)} | [{g['low']:+.4f}, {g['high']:+.4f}] | [{over['low']:+.4f}, {over['high']:+.4f}] | "
                    f"{'**yes**' if over['excludes_zero'] else 'no'} |")
            lines.append(line + (f" {gap_cell(g.get('without_labels'))} |" if left_out else ""))
    return "\n".join(lines) + "\n"


def _label_lines(table: list[dict[str, Any]]) -> list[str]:
    """Label tasks (one-word references): each method's exact-match accuracy, its most common
    answer per run, and the floor of always answering the majority label."""
    rows = [(e, t) for e in table for t in e.get("label_accuracy", {})]
    if not rows:
        return []
    lines = ["", "Label tasks, scored by exact match of the answer's first word with the label:", "",
             "| method | router | test set | task | label acc. | 95% interval | most common answer per run |",
             "|---|---|---|---|---|---|---|"]
    floors: dict[tuple[str, str], dict[str, Any]] = {}  # per test set and task; the most runs have the most samples
    for e, t in rows:
        accuracy, answers = e["label_accuracy"][t], e["label_answers"].get(t, {})
        top = ", ".join(f"run {a['seed'] + 1}: {a['answer'] or '(none)'} {a['share']:.0%}"
                        for a in answers.get("top_answers", [])) or "–"
        lines.append(f"| {e['method']} | {e['mode']} | {e['test_tasks']} | {t} | {accuracy['mean']:.4f} | "
                     f"[{accuracy['low']:.4f}, {accuracy['high']:.4f}] | {top} |")
        if "majority" in answers and e["seeds"] >= floors.get((e["test_tasks"], t), {}).get("seeds", 0):
            floors[(e["test_tasks"], t)] = {"seeds": e["seeds"], **answers}
    for (test_tasks, t), floor in sorted(floors.items()):
        lines += ["", floor_sentence(t, floor, where=f"the {test_tasks} test samples", digits=4)]
    return lines


def run_report(runs: list[RunDir]) -> dict[str, Any]:
    # a mistyped second --run-dir would otherwise just drop that seed from the mean
    missing = [run.root for run in runs if not run.root.is_dir()]
    if missing:
        raise FedrouterError(f"--run-dir {missing[0]} does not exist; pass the run dirs `fedrouter evaluate` wrote to.")
    rows = collect(runs)
    if not rows:
        raise FedrouterError("No evaluated methods in the run dir(s); run `fedrouter evaluate` first.")
    groups = load_groups(rows)
    table = summarize(groups)
    paired = paired_rows(groups)
    json_path, markdown_path, plot_path = runs[0].report_files()
    write_json(json_path, {"runs": [str(r.root) for r in runs], "table": table, "paired": paired})
    with atomic_path(markdown_path) as tmp:
        tmp.write_text(markdown(table, paired))
    with atomic_path(plot_path) as tmp:
        bar_chart(tmp, [f"{e['method']}/{e['mode']}" for e in table], [e["rouge1"] for e in table],
                  [e["rouge1_std"] for e in table], "ROUGE-1 (mean over clients)")
    return {"table": table, "paired": paired, "markdown_path": str(markdown_path), "json_path": str(json_path),
            "plot_path": str(plot_path)}
