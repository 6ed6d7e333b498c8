"""`fedrouter bench`: the paper's experiment matrix, resumable, with tables and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

from fedrouter_cli.algorithms import BENCH_METHODS
from fedrouter_cli.cli import options as o
from fedrouter_cli.cli.common import execute, simple_table, stderr
from fedrouter_cli.errors import BenchStopped, FedrouterError

MethodsOpt = Annotated[Optional[str], typer.Option(
    "--methods", help=f"Comma-separated methods (default: {', '.join(BENCH_METHODS)}). The base model is always "
                      "evaluated too.")]
ScenariosOpt = Annotated[str, typer.Option("--scenarios", help="Comma-separated scenarios.")]
SeedsOpt = Annotated[str, typer.Option("--seeds", help="Comma-separated seeds; tables show mean ± std over them.")]
GeneralizationOpt = Annotated[bool, typer.Option(
    "--generalization/--no-generalization", help="Also test the single-scenario models on every task.")]
AblationClientsOpt = Annotated[str, typer.Option(
    "--ablation-clients", help="Client counts for FedRouter's single-scenario ablation; 'none' to skip.")]
KRuleOpt = Annotated[str, typer.Option(
    "--k-rule", help="FedRouter's K rule in the main table: 'tasks' (the paper's: global K = the number of tasks, "
                     "local K = the tasks a client holds) or 'auto' (this tool's rules: stability locally, silhouette on the server).")]
ScheduleScenariosOpt = Annotated[str, typer.Option(
    "--schedule-scenarios", help="Scenarios of the ablation row with FedRouter's staggered round-robin (every seed); "
                                 "'none' to skip.")]
KRuleScenariosOpt = Annotated[str, typer.Option(
    "--k-rule-scenarios", help="Scenarios of the ablation row with the other K rule (first seed); 'none' to skip.")]
CurveScenarioOpt = Annotated[str, typer.Option(
    "--curve-scenario", help="Scenario in which every round of --curve-methods is evaluated; 'none' to skip.")]
CurveMethodsOpt = Annotated[str, typer.Option("--curve-methods", help="Methods with a ROUGE-1-per-round curve.")]
ReportOnlyOpt = Annotated[bool, typer.Option(
    "--report-only", help="Run nothing: rebuild the tables and plots from the cells finished so far.")]
RetriesOpt = Annotated[int, typer.Option(
    "--retries", min=0, help="Times a crashed cell is rerun (from its last finished round) before it counts as failed.")]
ResultsDirOpt = Annotated[Optional[Path], typer.Option(
    "--results-dir", help="Where bench.md, bench.json and the plots go (default: RUN_DIR/results).")]


def _ints(option: str, text: str) -> tuple[int, ...]:
    if text.strip().lower() == "none":
        return ()
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise FedrouterError(f"{option} must be comma-separated integers (or 'none'), got {text!r}.") from None


def _optional(text: str) -> str | None:
    return None if text.strip().lower() == "none" else text.strip()


def render_bench(payload: dict[str, Any], console: Console) -> None:
    if stopped := payload.get("stopped_before"):
        console.print(f"Stopped before cell {escape(stopped)}, as asked; finished cells are in {escape(payload['json'])}. "
                      "Rerun the same command to continue.", highlight=False, soft_wrap=True)
        return
    scenarios = payload["tables"]["scenarios"]
    if scenarios:
        methods = list(next(iter(scenarios.values())))
        rows = [[m, *[_mean(scenarios[s][m]["rouge1"]) for s in scenarios]] for m in methods]
        console.print(simple_table("ROUGE-1 by scenario", ["method", *scenarios], rows))
    if general := payload["tables"]["generalization"]:
        console.print(simple_table("Generalization (every task)", ["method", "ROUGE-1"],
                                   [[m, _mean(r["rouge1"])] for m, r in general.items()]))
    if payload["failed_cells"]:
        console.print(f"[red]{len(payload['failed_cells'])} cell(s) failed[/red]: {escape(', '.join(payload['failed_cells']))}; "
                      "rerun the same command to retry them.", highlight=False)
    console.print(f"{payload['cells']} cells in {payload['seconds']:.0f}s ({payload['cached_cells']} cached)\n"
                  f"Markdown: {payload['markdown']}\nJSON: {payload['json']}\nplots: {', '.join(payload['plots'])}",
                  highlight=False)


def _mean(stat: dict[str, Any]) -> str:
    return "-" if stat["mean"] is None else f"{stat['mean']:.4f}" + (f" ± {stat['std']:.4f}" if stat["n"] > 1 else "")


@o.with_options(o.EMBED_OPTIONS, {"source": o.SourceOpt, "tasks": o.TasksOpt, "clients": o.ClientsOpt,
                                  "train_per_client": o.TrainPerClientOpt, "test_per_client": o.TestPerClientOpt},
                {"dry_run": o.DryRunOpt, "json_out": o.JsonOpt, "debug": o.DebugOpt})
def bench(
    run_dir: o.RunDirOpt = Path("artifacts/bench"),
    preset: o.PresetOpt = None,
    methods: MethodsOpt = None,
    scenarios: ScenariosOpt = "single,dual,all",
    seeds: SeedsOpt = "0",
    generalization: GeneralizationOpt = True,
    ablation_clients: AblationClientsOpt = "4,8,16",
    k_rule: KRuleOpt = "tasks",
    k_rule_scenarios: KRuleScenariosOpt = "single,dual,all",
    schedule_scenarios: ScheduleScenariosOpt = "dual,all",
    curve_scenario: CurveScenarioOpt = "dual",
    curve_methods: CurveMethodsOpt = "fedrouter,fedit",
    rounds: o.RoundsOpt = None,
    local_steps: o.LocalStepsOpt = None,
    group_by_length: o.GroupByLengthOpt = False,
    token_budget: o.TokenBudgetOpt = False,
    results_dir: ResultsDirOpt = None,
    report_only: ReportOnlyOpt = False,
    retries: RetriesOpt = 1,
    *,
    shared: dict[str, Any],
) -> None:
    """Run the paper's experiments: every method x scenario x seed, generalization, ablations.

    Each cell is an ordinary run dir under RUN_DIR/cells/, so finished cells are cache hits and
    an interrupted bench continues where it stopped: just run the same command again. A failing
    cell is rerun once (--retries), then reported and skipped. All methods get the same settings (the preset's).

    bench.json in --results-dir is rewritten after every cell and is also the bench's memory: a
    cell whose record there has the same settings and data fingerprints is carried over, not
    rerun, even from a fresh RUN_DIR on another machine. Commit it to continue a matrix later.

    To stop after the running cell (to free the cores), create RUN_DIR/STOP; Ctrl-C stops at once.
    """
    overrides = o.upstream_overrides(shared)
    # Off unless asked: the table's finished cells were measured without them, and a cell with
    # other settings is another experiment (it would rerun rather than carry over).
    overrides["train"] = o.train_overrides(rounds=rounds, local_steps=local_steps, group_by_length=group_by_length)
    overrides["eval"] = {"token_budget": token_budget}

    def action(cfg, run, progress):
        import time

        from fedrouter_cli.experiments.matrix import (
            METHODS,
            BenchPlan,
            kept_records,
            read_ledger,
            run_bench,
        )
        from fedrouter_cli.experiments.results import write_results
        from fedrouter_cli.rundir import BenchDir, BenchResults

        plan = BenchPlan(
            methods=tuple(o.split_tasks(methods) or METHODS), scenarios=tuple(o.split_tasks(scenarios) or ()),
            seeds=_ints("--seeds", seeds), generalization=generalization,
            ablation_clients=_ints("--ablation-clients", ablation_clients),
            k_rule=k_rule, k_rule_scenarios=tuple(o.split_tasks(_optional(k_rule_scenarios) or "") or ()),
            schedule_scenarios=tuple(o.split_tasks(_optional(schedule_scenarios) or "") or ()),
            curve_scenario=_optional(curve_scenario),
            curve_methods=tuple(o.split_tasks(curve_methods) or ()))
        started = time.perf_counter()
        cached = 0

        def on_cell(index, total, cell, record):
            nonlocal cached
            cached += bool(record.get("cached"))
            if record.get("pending"):
                state = "not finished yet"
            elif record.get("carried_over"):
                state = f"carried over from {out / 'bench.json'}"
            elif "error" in record:
                state = f"[red]failed[/red]: {escape(record['error'])}"
            else:
                state = "cached" if record["cached"] else f"{record['bench_seconds']:.0f}s"
                if retried := record.get("retried_after"):
                    state += f" (after {len(retried)} crash(es): {escape(retried[-1])})"
            stderr.print(f"[{index}/{total}] {cell.name}: {state}", highlight=False, soft_wrap=True)

        out = results_dir or BenchDir(run.root).default_results
        ledger = read_ledger(BenchResults(out).json_file)
        def save(known):
            return write_results(out, known, plan.__dict__, kept_records(ledger, known))

        try:
            records = run_bench(cfg, run.root, plan, progress, on_cell, report_only=report_only, ledger=ledger,
                                checkpoint=None if report_only else save, retries=retries,
                                stop_file=BenchDir(run.root).stop_file)
        except BenchStopped as stopped:
            return {"stopped_before": stopped.cell, "json": str(BenchResults(out).json_file)}
        if not records:
            raise FedrouterError(f"No finished bench cells in {run.root}; run `fedrouter bench` without --report-only.")
        written = save(records)
        return {**written, "cells": len(records), "cached_cells": cached,
                "seconds": round(time.perf_counter() - started, 1)}

    execute(run_dir=run_dir, json_out=shared["json_out"], debug=shared["debug"], preset=preset,
            default_preset="cpu", overrides=overrides,
            action=action, render=render_bench, dry_run=shared["dry_run"])
