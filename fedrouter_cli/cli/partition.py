"""`fedrouter partition`."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from fedrouter_cli.cli import options as o
from fedrouter_cli.cli.common import (
    execute,
    render_on_nodes,
    show_warnings,
    simple_table,
    stage_line,
)
from fedrouter_cli.stages.common import StageResult


def holdings_table(summary: dict[str, Any]) -> Any:
    tasks = summary["tasks"]
    rows = [[c["client"], *[f"{c['train'].get(t, 0)}/{c['test'].get(t, 0)}" for t in tasks]]
            for c in summary["clients"]]
    return simple_table(f"Who holds what ({summary['scenario']}; train/test rows)", ["client", *tasks], rows)


def render_partition(payload: dict[str, Any], console: Console) -> None:
    if render_on_nodes("partition", payload, console):
        return
    console.print(stage_line(StageResult("partition", payload["cache_hit"], payload["seconds"])))
    console.print(holdings_table(payload))
    show_warnings(console, payload.get("warnings", []))


@o.with_options(o.DATA_OPTIONS, o.COMMON_OPTIONS)
def partition(run_dir: o.RunDirOpt = o.DEFAULT_RUN_DIR, test_tasks: o.TestTasksOpt = None, *,
              shared: dict[str, Any]) -> None:
    """Split task data over clients by scenario; one Parquet per client and split (train, test, test_all)."""
    overrides = {"data": o.upstream_overrides(shared)["data"] | {"test_tasks": test_tasks}}

    def action(cfg, run, progress):
        from fedrouter_cli.stages.partition import run_partition

        return run_partition(cfg, run, shared["force"], progress).to_json()

    execute(run_dir=run_dir, json_out=shared["json_out"], debug=shared["debug"], preset=shared["preset"],
            overrides=overrides,
            action=action,
            render=render_partition)
