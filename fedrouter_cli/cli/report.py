"""`fedrouter report`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from fedrouter_cli.cli import options as o
from fedrouter_cli.cli.common import execute, simple_table

RunDirsOpt = Annotated[list[Path], typer.Option(
    "--run-dir", "-r", help="Run directory; repeat it to report several runs in one table. Runs that differ "
    "only in their seed are pooled (mean ± std over seeds); any other difference gives each its own row, "
    "named by what differs.")]
ReportOutOpt = Annotated[Path | None, typer.Option(
    "--out", help="Folder for report.json, report.md and rouge1.png. Default: the run's report/ for one run, "
                  "a folder named for the set beside the first run (report-A+B) for several.")]


def render_report(payload: dict[str, Any], console: Console) -> None:
    from fedrouter_cli.stages.report import unmatched

    def fmt(entry: dict, metric: str) -> str:
        if entry[metric] is None:
            return "-"
        return f"{entry[metric]:.4f}" + (f" ± {entry[metric + '_std']:.4f}" if entry["seeds"] > 1 else "")

    rows = [[e["name"], e["mode"], e["test_tasks"], e["seeds"], fmt(e, "rouge1"), fmt(e, "rouge2"),
             fmt(e, "rougeL"), fmt(e, "routing_accuracy"), f"{(e['bytes'] or 0) / 1e6:.1f}"] for e in payload["table"]]
    console.print(simple_table("Methods", ["method", "router", "test set", "seeds", "ROUGE-1", "ROUGE-2", "ROUGE-L",
                                           "routing acc.", "MB sent (up+down)"], rows))
    labels = [[e["name"], e["mode"], e["test_tasks"], task, f"{accuracy['mean']:.4f}",
               f"{e['label_answers'][task].get('majority_accuracy', float('nan')):.4f}",
               unmatched(e["label_answers"][task])]
              for e in payload["table"] for task, accuracy in e.get("label_accuracy", {}).items()]
    if labels:
        console.print(simple_table("Label tasks (the label the answer names)",
                                   ["method", "router", "test set", "task", "label acc.", "always the majority label",
                                    "names no label / several"], labels))
    console.print(f"Markdown: {payload['markdown_path']}\nJSON: {payload['json_path']}\nplot: {payload['plot_path']}",
                  highlight=False)


def report(run_dir: RunDirsOpt = [o.DEFAULT_RUN_DIR], out: ReportOutOpt = None,  # noqa: B006
           json_out: o.JsonOpt = False, debug: o.DebugOpt = False) -> None:
    """One table of every method evaluated in the run(s): terminal, Markdown, JSON and a bar chart PNG.

    Always computed from the runs' evaluations (nothing to cache); the runs are left as they were."""
    def action(cfg, run, progress):
        from fedrouter_cli.rundir import RunDir
        from fedrouter_cli.stages.report import run_report

        return run_report([run, *[RunDir(p) for p in run_dir[1:]]], out)

    execute(run_dir=run_dir[0], json_out=json_out, debug=debug, preset=None, overrides={},
            action=action, render=render_report, persist=False)
