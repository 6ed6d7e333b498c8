"""`fedrouter partition`."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from fedrouter_cli.cli import options as o
from fedrouter_cli.cli.common import execute, show_warnings, simple_table, stage_line
from fedrouter_cli.stages.common import StageResult
from fedrouter_cli.stages.partition import run_partition


def holdings_table(summary: dict[str, Any]) -> Any:
    tasks = summary["tasks"]
    rows = [[c["client"], *[f"{c['train'].get(t, 0)}/{c['test'].get(t, 0)}" for t in tasks]]
            for c in summary["clients"]]
    return simple_table(f"Who holds what ({summary['scenario']}; train/test rows)", ["client", *tasks], rows)


def render_partition(payload: dict[str, Any], console: Console) -> None:
    console.print(stage_line(StageResult("partition", payload["cache_hit"], payload["seconds"])))
    console.print(holdings_table(payload))
    show_warnings(console, payload.get("warnings", []))


def partition(
    run_dir: o.RunDirOpt = o.DEFAULT_RUN_DIR,
    source: o.SourceOpt = None,
    tasks: o.TasksOpt = None,
    scenario: o.ScenarioOpt = None,
    clients: o.ClientsOpt = None,
    train_per_client: o.TrainPerClientOpt = None,
    test_per_client: o.TestPerClientOpt = None,
    test_tasks: o.TestTasksOpt = None,
    seed: o.SeedOpt = None,
    preset: o.PresetOpt = None,
    force: o.ForceOpt = False,
    json_out: o.JsonOpt = False,
    debug: o.DebugOpt = False,
) -> None:
    """Split task data over clients by scenario; one Parquet per client and split (train, test, test_all)."""
    overrides = {"data": o.data_overrides(source, tasks, scenario, clients, train_per_client,
                                          test_per_client, test_tasks, seed)}
    execute(run_dir=run_dir, json_out=json_out, debug=debug, preset=preset, overrides=overrides,
            action=lambda cfg, run, progress: run_partition(cfg, run, force).to_json(),
            render=render_partition)
