"""bench.md: the bench's tables as Markdown, with intervals and the paper's orderings checked."""

from __future__ import annotations

from typing import Any

# The paper's ROUGE-1 (Llama-3.2-1B, 25 rounds), for side-by-side reading; None = not reported.
PAPER_ROUGE1: dict[str, dict[str, float | None]] = {
    "fedrouter": {"single": 0.561, "dual": 0.558, "all": 0.566, "generalization": 0.583},
    "fedrouter-star": {"single": 0.562, "dual": 0.563, "all": 0.575, "generalization": None},
    "fedit": {"single": 0.546, "dual": 0.550, "all": 0.560, "generalization": 0.570},
    "feddpa": {"single": None, "dual": None, "all": None, "generalization": 0.461},
    "local": {"single": None, "dual": None, "all": None, "generalization": 0.25},
    # Table 1, single: FedCluster ties FedRouter at 0.561 (issue 34 corrected the missing figure)
    "fedcluster": {"single": 0.561, "dual": None, "all": None, "generalization": 0.25},
    "fedsa": {"single": None, "dual": None, "all": None, "generalization": 0.25},
}

# One name for the cost column, so the legend that explains it and the tables that show it agree.
SECONDS_COLUMN = "train + eval s"


def _fmt(stat: dict[str, Any], digits: int = 3) -> str:
    if stat["mean"] is None:
        return "–"
    return f"{stat['mean']:.{digits}f}" + (f" ± {stat['std']:.{digits}f}" if stat["n"] > 1 else "")


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _ci(interval: dict[str, Any] | None, digits: int = 3) -> str:
    return "–" if not interval else f"[{interval['low']:.{digits}f}, {interval['high']:.{digits}f}]"


def _with_interval(row: dict[str, Any]) -> str:
    return _fmt(row["rouge1"]) + (f" {_ci(row['interval'])}" if row.get("interval") else "")


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
    out += ["Figures: mean ± std over seeds; in brackets after a figure, the 95% bootstrap interval over test "
            f"samples (resampled within each seed and client); paper values in braces. '{SECONDS_COLUMN}' is a cell's "
            "federated training plus its main evaluation, without embedding or the generalization evaluation.", ""]
    scenarios = list(result["scenarios"])
    if scenarios:
        out += _scenario_tables(result, scenarios)
    if result["generalization"]:
        out += ["", "## Generalization: trained on `single`, tested on every task (FedRouter in global mode)", "",
                "| method | seeds | ROUGE-1 | paper | routing acc. |", "|---|---|---|---|---|"]
        for m, row in result["generalization"].items():
            paper = PAPER_ROUGE1.get(m, {}).get("generalization")
            out.append(f"| {m} | {row['seeds']} | {_with_interval(row)} | {_num(paper)} | {_fmt(row['routing_accuracy'])} |")
    for table, gaps in result.get("paired", {}).items():
        out += _paired_markdown(table, gaps)
    if result["k_rule"]:
        out += ["", "## Ablation: the paper's K rule ('tasks') against this tool's automatic rules ('auto': "
                "local K by stability, global K by weighted silhouette), FedRouter",
                "", "| scenario / rule | local K per client | local purity | global K | global purity | routing acc. | ROUGE-1 |",
                "|---|---|---|---|---|---|---|"]
        for name, row in result["k_rule"].items():
            ks = row["local_k"]
            out.append(f"| {name} | {'–' if ks is None else ', '.join(map(str, ks))} | {_num(row['local_purity'])} | "
                       f"{row['global_clusters']} | {_num(row['global_purity'])} | {_fmt(row['routing_accuracy'])} | "
                       f"{_with_interval(row)} |")
    if result.get("schedule"):
        out += ["", "## Ablation: FedRouter's round-robin, the authors' schedule (local cluster r mod K, the main "
                "table's rows) against this tool's staggered one, on the same seeds", "",
                "| scenario | authors | staggered | staggered − authors, pooled | per seed |", "|---|---|---|---|---|"]
        for scenario, row in result["schedule"].items():
            seeds = "; ".join(f"s{seed}: {gap_cell(gap, significance=False)}" for seed, gap in row["per_seed"].items())
            out.append(f"| {scenario} | {_with_interval(row['authors'])} | {_with_interval(row['staggered'])} | "
                       f"{gap_cell(row['difference'])} | {seeds or '–'} |")
    if result["clients"]:
        out += ["", "## Ablation: number of clients (FedRouter, single scenario, on the ablation's seeds)", "",
                f"| clients | ROUGE-1 | routing acc. | {SECONDS_COLUMN} | MB sent (up+down) |", "|---|---|---|---|---|"]
        for n, row in result["clients"].items():
            out.append(f"| {n} | {_fmt(row['rouge1'])} | {_fmt(row['routing_accuracy'])} | "
                       f"{_fmt(row['seconds'], 0)} | {_fmt(row['megabytes'], 1)} |")
    out += _orderings_markdown(result.get("orderings", []))
    if failures:
        out += ["", "## Cells that failed (rerun `fedrouter bench` to retry them)", ""]
        out += [f"- `{f['cell']}`: {f['error']}" for f in failures]
    return "\n".join(out) + "\n"


def _scenario_tables(result: dict[str, Any], scenarios: list[str]) -> list[str]:
    out = ["## ROUGE-1 by scenario (FedRouter routes in local mode)", "",
           "| method | " + " | ".join(scenarios) + " |", "|---|" + "---|" * len(scenarios)]
    methods = list(result["scenarios"][scenarios[0]])
    for m in methods:
        cells = []
        for s in scenarios:
            row = result["scenarios"][s].get(m)
            paper = PAPER_ROUGE1.get(m, {}).get(s)
            cells.append(("–" if row is None else _with_interval(row)) + (f" {{{paper:.3f}}}" if paper else ""))
        out.append(f"| {m} | " + " | ".join(cells) + " |")
    for s in scenarios:
        rows = result["scenarios"][s]
        labels = sorted({t for row in rows.values() for t in row.get("label_accuracy", {})})
        out += ["", f"### {s}", "",
                "| method | seeds | ROUGE-1 | ROUGE-2 | ROUGE-L | "
                + "".join(f"{t} label acc. | {t} top answer | " for t in labels)
                + f"routing acc. | {SECONDS_COLUMN} | MB sent (up+down) |", "|---|" + "---|" * (7 + 2 * len(labels))]
        for m, row in rows.items():
            accuracy = "".join(f"{_num((row.get('label_accuracy') or {}).get(t, {}).get('mean'))} "
                               f"{_ci((row.get('label_accuracy') or {}).get(t))} | {_top_answer(row, t)} | "
                               for t in labels)
            out.append(f"| {m} | {row['seeds']} | {_with_interval(row)} | {_fmt(row['rouge2'], 4)} | "
                       f"{_fmt(row['rougeL'], 4)} | {accuracy}{_fmt(row['routing_accuracy'])} | "
                       f"{_fmt(row['seconds'], 0)} | {_fmt(row['megabytes'], 1)} |")
        out += _majority_lines(rows, labels)
        tasks = sorted({t for row in rows.values() for t in row["per_task"]})
        if tasks:
            out += ["", f"### {s}: ROUGE-1 per task", "", "| method | " + " | ".join(tasks) + " |",
                    "|---|" + "---|" * len(tasks)]
            out += [f"| {m} | " + " | ".join(_fmt(row["per_task"][t]) if t in row["per_task"] else "–" for t in tasks)
                    + " |" for m, row in rows.items()]
    return out


def _top_answer(row: dict[str, Any], task: str) -> str:
    """'s0 no 99%, s1 yes 90%': per seed, the method's most common answer on a label task and how
    often it gives it."""
    answers = (row.get("label_answers") or {}).get(task) or {}
    top = answers.get("top_answers")
    text = ", ".join(f"s{a['seed']} {a['answer'] or '(none)'} {a['share']:.0%}" for a in top) if top else "–"
    if "names_no_label" in answers:
        text += f"; names no label {answers['names_no_label']:.0%}, several {answers['names_several']:.0%}"
    elif answers.get("scored_by") in ("first word", "mixed"):
        text += f" (answers read by {'their first word' if answers['scored_by'] == 'first word' else 'two rules'})"
    return text


def _majority_lines(rows: dict[str, dict[str, Any]], labels: list[str]) -> list[str]:
    """The floor of each label task: the accuracy of always answering its most common label."""
    out = []
    for t in labels:
        # the row with the most seeds has the most test samples (all rows share the same ones per seed)
        floors = [(row["seeds"], a) for row in rows.values()
                  if "majority" in (a := (row.get("label_answers") or {}).get(t) or {})]
        if floors:
            out += ["", floor_sentence(t, max(floors, key=lambda f: f[0])[1])]
    return out


def floor_sentence(task: str, answers: dict[str, Any], where: str = "these test samples", digits: int = 3) -> str:
    """The accuracy of always answering a label task's most common label, said as the bar to clear;
    `answers` is one entry of bench_stats.label_answers."""
    return (f"Always answering '{answers['majority']}' on {task} scores label accuracy "
            f"{answers['majority_accuracy']:.{digits}f} on {where}: the floor a {task} classifier must beat.")


def _paired_markdown(table: str, gaps: list[dict[str, Any]]) -> list[str]:
    if not gaps:
        return []
    left_out = sorted({t for g in gaps for t in (g.get("without_labels") or {}).get("left_out", [])})
    extra = f" without {', '.join(left_out)}: difference [95% interval] |" if left_out else ""
    out = ["", f"## Paired differences in ROUGE-1, {table}: FedRouter(*) minus each method on the same test samples",
           "", "Each seed's difference; the 95% interval over test samples (pooled over seeds); the 95% interval "
           "that resamples seeds as well (hierarchical bootstrap), which the verdicts read.", "",
           "| method | against | seeds | samples | difference | per seed | 95% interval, test samples | "
           "95% interval, seeds and samples | significant |" + extra,
           "|---|---|---|---|---|---|---|---|---|" + ("---|" if left_out else "")]
    for g in gaps:
        over = g.get("over_seeds", g)
        mark = "**yes**" if over["excludes_zero"] else "no"
        line = (f"| {g['method']} | {g['against']} | {g['seeds']} | {g['samples']} | {g['mean']:+.4f} | "
                f"{per_seed_cell(g)} | [{g['low']:+.4f}, {g['high']:+.4f}] | "
                f"[{over['low']:+.4f}, {over['high']:+.4f}] | {mark} |")
        out.append(line + (f" {gap_cell(g.get('without_labels'))} |" if left_out else ""))
    return out


def gap_cell(gap: dict[str, Any] | None, significance: bool = True) -> str:
    """'+0.0123 [+0.0010, +0.0240] **yes**': a paired difference in one cell, with the interval
    that resamples seeds as well as test samples (the one verdicts read)."""
    if not gap:
        return "–"
    over = gap.get("over_seeds", gap)
    mark = (" **yes**" if over["excludes_zero"] else " no") if significance else ""
    return f"{gap['mean']:+.4f} [{over['low']:+.4f}, {over['high']:+.4f}]{mark}"


def per_seed_cell(gap: dict[str, Any] | None) -> str:
    """'s0 +0.012, s1 −0.004': each seed's paired difference."""
    seeds = (gap or {}).get("per_seed") or {}
    return ", ".join(f"s{seed} {value:+.3f}" for seed, value in seeds.items()) or "–"


def _orderings_markdown(checked: list[dict[str, Any]]) -> list[str]:
    if not any(c["holds"] is not None for c in checked):
        return []
    out = ["", "## The paper's orderings, checked here (ROUGE-1; paper values in braces)", "",
           "| where | ordering | ours | paired difference [95% interval over seeds and samples] | per seed | verdict "
           "| the same without label tasks |",
           "|---|---|---|---|---|---|---|"]
    for c in checked:
        paper = " {" + " vs ".join("–" if v is None else f"{v:.3f}" for v in c["paper"]) + "}"
        ours = "not run yet" if c["holds"] is None else f"{c['ours'][0]:.3f} vs {c['ours'][1]:.3f}"
        gap = c.get("paired")  # its verdict column says whether it excludes 0
        out.append(f"| {c['table']} | {c['better']} > {c['worse']} | {ours}{paper} | {gap_cell(gap, significance=False)} | "
                   f"{per_seed_cell(gap)} | {c['verdict'] or '–'} | {gap_cell((gap or {}).get('without_labels'))} |")
    return out
