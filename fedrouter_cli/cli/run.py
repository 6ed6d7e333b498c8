"""`fedrouter run`: the whole pipeline in one command."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console

from fedrouter_cli.cli import options as o
from fedrouter_cli.cli.cluster_local import render_clusters
from fedrouter_cli.cli.common import execute, show_tracking, simple_table
from fedrouter_cli.cli.evaluate import render_scores
from fedrouter_cli.cli.partition import render_partition
from fedrouter_cli.cli.select_k import render_select_k
from fedrouter_cli.cli.simulate import render_simulate


def render_run(report: dict[str, Any], console: Console) -> None:
    render_partition(report["partition"], console)
    console.print(f"[bold]embed[/bold]: {report['embed']['rows']} rows, dim {report['embed']['dim']} "
                  f"({report['embed']['embedder']})", highlight=False)
    render_clusters(report["cluster_local"], console)
    for level in ("local", "global"):
        render_select_k(report["select_k"][level], console)
    for payload in report["simulate"].values():
        render_simulate(payload, console)
    for payload in report["evaluate"].values():
        render_scores(payload, console)
    rows = [[name, p["rouge1"], p["rouge2"], p["rougeL"],
             "-" if p.get("routing_accuracy") is None else p["routing_accuracy"]]
            for name, p in report["evaluate"].items()]
    for where in report.get("tracking", {}).values():
        show_tracking(console, where)
    console.print(simple_table("Summary (mean over clients)", ["method/mode", "ROUGE-1", "ROUGE-2", "ROUGE-L", "routing acc."], rows))


RunForceOpt = Annotated[bool, typer.Option("--force", help="Rerun every stage even if its cached output matches.")]


@o.with_options(o.EMBED_OPTIONS, o.DATA_OPTIONS, {"force": RunForceOpt, "dry_run": o.DryRunOpt, "json_out": o.JsonOpt,
                                                    "debug": o.DebugOpt})
def run(
    run_dir: o.RunDirOpt = o.DEFAULT_RUN_DIR,
    preset: o.PresetOpt = None,
    alg: o.AlgOpt = None,
    variant: o.VariantOpt = None,
    rounds: o.RoundsOpt = None,
    local_steps: o.LocalStepsOpt = None,
    group_by_length: o.GroupByLengthOpt = None,
    prompt_format: o.PromptFormatOpt = None,
    token_budget: o.TokenBudgetOpt = None,
    log_to: o.LogToOpt = None,
    *,
    shared: dict[str, Any],
) -> None:
    """Run the whole pipeline: partition, embed, cluster-local, select-k, simulate, evaluate.

    Defaults to the quick preset (the cpu preset's sizes, 3 rounds x 3 steps, 12 test samples per
    client) on the built-in synthetic data and the offline model: about 6 minutes on 2 CPU cores.
    --preset cpu runs the bench's sizes (about 10 minutes). Every stage is cached: rerunning
    continues where it stopped.
    """
    overrides = o.upstream_overrides(shared)
    overrides["train"] = o.train_overrides(alg=alg, variant=variant, rounds=rounds, local_steps=local_steps,
                                           seed=shared["seed"], group_by_length=group_by_length,
                                           prompt_format=prompt_format)
    overrides["eval"] = {"token_budget": token_budget}

    def action(cfg, rundir, progress):
        from fedrouter_cli.stages.pipeline import run_all
        from fedrouter_cli.tracking import check_trackers

        return run_all(cfg, rundir, progress, algs=(cfg.train.alg,), force=shared["force"],
                       trackers=check_trackers(log_to))

    execute(run_dir=run_dir, json_out=shared["json_out"], debug=shared["debug"], preset=preset,
            default_preset="quick", overrides=overrides,
            action=action, render=render_run, dry_run=shared["dry_run"])
