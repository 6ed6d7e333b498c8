"""Stage `report`: one table of every method evaluated in one or more runs (seeds), as JSON,
Markdown and a bar chart, with 95% bootstrap intervals over test samples and paired differences
of FedRouter against every other method on the same test samples (fedrouter_cli.stats)."""

from __future__ import annotations

import hashlib
import json
import statistics
from pathlib import Path
from typing import Any

from fedrouter_cli.config_file import load_config
from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.experiments import paired as bench_stats
from fedrouter_cli.experiments.markdown import floor_sentence, gap_cell, per_seed_cell
from fedrouter_cli.experiments.paired import CHALLENGERS
from fedrouter_cli.files import atomic_path, read_json, write_json
from fedrouter_cli.fingerprints import ADDED_LATER
from fedrouter_cli.plots import bar_chart
from fedrouter_cli.rundir import RunDir

METRICS = ("rouge1", "rouge2", "rougeL", "routing_accuracy")
REPORT_FILES = ("report.json", "report.md", "rouge1.png")
MISSING = "–"  # a setting a run's stage did not record (it ran before the setting existed)


# settings that do not change what an evaluation scores (speed only), and the method's own
# name and router mode, which name the row already
NOT_A_SETTING = frozenset({"evaluate.batch_size", "evaluate.generation", "evaluate.mode", "simulate.round_timeout",
                           "simulate.alg", "simulate.variant"})
SEED_SETTINGS = ("partition.seed", "cluster-local.seed", "simulate.seed")
# the config section whose settings each stage's manifest records
STAGE_SECTIONS = {"partition": "data", "simulate": "train", "evaluate": "eval"}


def collect(runs: list[RunDir]) -> list[dict[str, Any]]:
    """Every evaluate/<alg>/<mode>/scores.json of the runs, with the run's communication cost and
    the settings that produced it (`setting`, seeds apart) and its seeds (`seed`)."""
    found = []
    for index, run in enumerate(runs):
        model = load_config(run.config_path).model
        for scores_path in run.scores_files():
            if "@r" in scores_path.parent.name:
                continue  # evaluations of earlier rounds are curves, not table rows
            scores = read_json(scores_path)
            simulated = run.manifest("simulate", scores["alg"]) or {}
            summary = simulated.get("summary", {})
            setting: dict[str, Any] = {"model.model": model.model, "model.load_in_4bit": model.load_in_4bit}
            for stage, sub in (("partition", ()), ("embed", ()), ("cluster-local", ()),
                               ("simulate", (scores["alg"],)), ("evaluate", (scores["alg"], scores_path.parent.name))):
                if (config := (run.manifest(stage, *sub) or {}).get("config")) is not None:
                    # a manifest older than a setting ran with the value that setting was added at
                    config = {**ADDED_LATER.get(STAGE_SECTIONS.get(stage, ""), {}), **config}
                    setting |= {f"{stage}.{k}": v for k, v in config.items()}
            variant = (simulated.get("config") or {}).get("variant", "standard")
            found.append({**scores, "run": str(run.root), "run_index": index,
                          "method": scores["alg"] if variant == "standard" else f"{scores['alg']}-{variant}",
                          "seed": tuple(setting.get(k) for k in SEED_SETTINGS),
                          "setting": {k: v for k, v in setting.items() if k not in NOT_A_SETTING | set(SEED_SETTINGS)},
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


def _key(row: dict[str, Any]) -> tuple[str, str, str, str]:
    """Rows with the same key are one setting's seeds: same method (variant included), router
    mode, test set and every setting but the seed."""
    mode = "-" if row["alg"] == "base" else row["mode"]  # the base model has no router
    setting = json.dumps(row.get("setting", {}), sort_keys=True, default=str)
    return row.get("method", row["alg"]), mode, row.get("test_tasks", "scenario"), setting


# (method, router mode, test set, setting) -> its runs' rows, their records as the bench's
# statistics see cells, and their per-sample scores ([] when any predictions file is gone)
Groups = dict[tuple[str, str, str, str], tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, list]]]]


def load_groups(rows: list[dict[str, Any]]) -> Groups:
    """The rows grouped by (method, router mode, test set, setting), each predictions file read
    once for both the table and the paired differences. Runs are pooled only as seeds of one
    setting; the same setting and seed twice would count one seed twice, so it is refused."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(_key(row), []).append(row)
    for members in groups.values():
        seen: dict[Any, str] = {}
        for m in members:
            if (seed := m.get("seed", m["run_index"])) in seen:
                raise FedrouterError(f"{seen[seed]} and {m['run']} hold the same evaluation ({m['alg']}, same settings "
                                     "and seed); pass each run once.")
            seen[seed] = m["run"]
    return {key: (members, _records(members), _samples(members)) for key, members in sorted(groups.items())}


def varying_settings(groups: Groups) -> list[str]:
    """The settings whose value differs between rows that ran their stage: what the row names must
    show. A row without a stage (the base model has no training) has none of its settings; a row
    that ran the stage but lacks one of its settings counts as a value of its own, so two rows
    never share a name."""
    settings = [members[0].get("setting", {}) for members, _, _ in groups.values()]
    values: dict[str, set[str]] = {}
    for setting in settings:
        for key, value in setting.items():
            values.setdefault(key, set()).add(json.dumps(value, sort_keys=True, default=str))
    for setting in settings:
        for key, seen in values.items():
            if key not in setting and _ran_stage(setting, key):
                seen.add(MISSING)
    return sorted(key for key, seen in values.items() if len(seen) > 1)


def _ran_stage(setting: dict[str, Any], key: str) -> bool:
    stage = key.split(".", 1)[0]
    return any(k.split(".", 1)[0] == stage for k in setting)


def row_name(method: str, setting: dict[str, Any], varying: list[str]) -> str:
    """`method`, followed by the values of the settings that tell its row from the others."""
    short = {key: key.split(".", 1)[1] for key in varying}
    ambiguous = {name for name in short.values() if list(short.values()).count(name) > 1}
    shown = [f"{key if short[key] in ambiguous else short[key]}="
             f"{_plain(setting[key]) if key in setting else MISSING}"
             for key in varying if key in setting or _ran_stage(setting, key)]
    return f"{method} ({', '.join(shown)})" if shown else method


def _plain(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def summarize(groups: Groups) -> list[dict[str, Any]]:
    """Mean ± std over runs (seeds) of each (method, router mode, test set, setting), with the
    bootstrap interval of its ROUGE-1 and, on label tasks (one-word references such as QQP's
    yes/no), its label accuracy, most common answer and the floor of always giving the majority
    label. `name` is the method followed by the settings that tell the row from the others."""
    varying = varying_settings(groups)
    table = []
    for (method, mode, test_tasks, _), (members, records, samples) in groups.items():
        setting = members[0].get("setting", {})
        entry: dict[str, Any] = {
            "method": method, "name": row_name(method, setting, varying), "mode": mode, "test_tasks": test_tasks,
            "setting": {key: setting[key] for key in varying if key in setting},
            "seeds": len(members), "runs": [m.get("run") for m in members]}
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
    """FedRouter (each router mode; the bench's CHALLENGERS) minus every other method evaluated on
    the same runs and test set, paired on the same clients and test samples: the difference in
    ROUGE-1 and its 95% interval, also without label tasks when there are some (bench_stats.pair,
    as the bench computes it). Rows of other runs (another scenario, say) share no test sample,
    so they are not paired."""
    varying = varying_settings(groups)
    comparable: dict[tuple, dict[str, list]] = {}
    challengers: set[str] = set()
    for (method, mode, test_tasks, _), (members, records, samples) in groups.items():
        if samples:
            name = f"{row_name(method, members[0].get('setting', {}), varying)}/{mode}"
            runs = tuple(sorted(m["run_index"] for m in members))
            comparable.setdefault((test_tasks, runs), {})[name] = list(zip(records, samples))
            if method in CHALLENGERS:
                challengers.add(name)
    out = []
    for (test_tasks, _), methods in comparable.items():
        for mine in methods:
            if mine not in challengers:
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

    lines = ["Runs are pooled as seeds only when they differ in nothing but the seed; a row's name adds the "
             "settings that tell it from the others. MB sent counts both directions (server to nodes and back).", "",
             "| method | router | test set | seeds | ROUGE-1 | 95% interval | ROUGE-2 | ROUGE-L | routing acc. | MB sent (up+down) | simulate s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in table:
        megabytes = "–" if not e["bytes"] else f"{e['bytes'] / 1e6:.1f}"
        seconds = "–" if e["simulate_seconds"] is None else f"{e['simulate_seconds']:.0f}"
        lines.append(f"| {e.get('name', e['method'])} | {e['mode']} | {e['test_tasks']} | {e['seeds']} | {cell(e, 'rouge1')} | "
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


def unmatched(answers: dict[str, Any]) -> str:
    """'3% / 0%': the share of answers naming no label and several ('–' for first-word scores)."""
    if "names_no_label" not in answers:
        return "–"
    return f"{answers['names_no_label']:.0%} / {answers['names_several']:.0%}"


def _label_lines(table: list[dict[str, Any]]) -> list[str]:
    """Label tasks (one-word references): each method's exact-match accuracy, its most common
    answer per run, and the floor of always answering the majority label."""
    rows = [(e, t) for e in table for t in e.get("label_accuracy", {})]
    if not rows:
        return []
    lines = ["", "Label tasks (every reference one word), scored by the one label of the task's label set that "
             "the answer names; an answer naming none or several is wrong:", "",
             "| method | router | test set | task | label acc. | 95% interval | most common answer per run | "
             "names no label / several |", "|---|---|---|---|---|---|---|---|"]
    floors: dict[tuple[str, str], dict[str, Any]] = {}  # per test set and task; the most runs have the most samples
    for e, t in rows:
        accuracy, answers = e["label_accuracy"][t], e["label_answers"].get(t, {})
        top = ", ".join(f"run {a['seed'] + 1}: {a['answer'] or '(none)'} {a['share']:.0%}"
                        for a in answers.get("top_answers", [])) or "–"
        lines.append(f"| {e.get('name', e['method'])} | {e['mode']} | {e['test_tasks']} | {t} | {accuracy['mean']:.4f} | "
                     f"[{accuracy['low']:.4f}, {accuracy['high']:.4f}] | {top} | {unmatched(answers)} |")
        if "majority" in answers and e["seeds"] >= floors.get((e["test_tasks"], t), {}).get("seeds", 0):
            floors[(e["test_tasks"], t)] = {"seeds": e["seeds"], **answers}
    for (test_tasks, t), floor in sorted(floors.items()):
        lines += ["", floor_sentence(t, floor, where=f"the {test_tasks} test samples", digits=4)]
    return lines


def default_folder(runs: list[RunDir]) -> Path:
    """One run's report goes in its own report/; several runs' in a folder beside the first one,
    named for the set (so the report of A and B never replaces A's own)."""
    if len(runs) == 1:
        return runs[0].report_folder
    names = "+".join(run.root.resolve().name for run in runs)
    if len(names) > 60:
        digest = hashlib.sha256("\n".join(str(r.root.resolve()) for r in runs).encode()).hexdigest()[:8]
        names = f"{runs[0].root.resolve().name}+{len(runs) - 1}-more-{digest}"
    return runs[0].root.resolve().parent / f"report-{names}"


def run_report(runs: list[RunDir], out: Path | None = None) -> dict[str, Any]:
    """The table, paired differences and bar chart of every evaluation in `runs`, written to `out`
    (default_folder when None) as report.json, report.md and rouge1.png."""
    # a mistyped second --run-dir would otherwise just drop that seed from the mean
    missing = [run.root for run in runs if not run.root.is_dir()]
    if missing:
        raise FedrouterError(f"--run-dir {missing[0]} does not exist; pass the run dirs `fedrouter evaluate` wrote to.")
    roots = [run.root.resolve() for run in runs]
    if len(set(roots)) < len(roots):
        twice = next(r for r in roots if roots.count(r) > 1)
        raise FedrouterError(f"--run-dir {twice} is given twice; pass each run once (a run counted twice would "
                             "count its seed twice).")
    rows = collect(runs)
    if not rows:
        raise FedrouterError("No evaluated methods in the run dir(s); run `fedrouter evaluate` first.")
    groups = load_groups(rows)
    table = summarize(groups)
    paired = paired_rows(groups)
    folder = out if out is not None else default_folder(runs)
    json_path, markdown_path, plot_path = (folder / name for name in REPORT_FILES)
    with atomic_path(plot_path) as tmp:
        drawn = bar_chart(tmp, [f"{e['name']}/{e['mode']}" for e in table],
                          [e["rouge1_interval"]["mean"] if e["rouge1_interval"] else e["rouge1"] or 0 for e in table],
                          [(e["rouge1_interval"]["low"], e["rouge1_interval"]["high"]) if e["rouge1_interval"] else None
                           for e in table], "ROUGE-1 (bars: 95% interval, as in report.md)")
    write_json(json_path, {"runs": [str(r.root) for r in runs], "table": table, "paired": paired,
                           "plot_error_bars": drawn})
    with atomic_path(markdown_path) as tmp:
        tmp.write_text(markdown(table, paired))
    return {"table": table, "paired": paired, "markdown_path": str(markdown_path), "json_path": str(json_path),
            "plot_path": str(plot_path), "plot_error_bars": drawn}
