"""`fedrouter select-k`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console

from fedrouter_cli.cli import options as o
from fedrouter_cli.cli.common import execute, simple_table

LevelOpt = Annotated[str, typer.Option(
    "--level", help="local: per client on its train embeddings; global: over all clients' local centroids.")]


def render_select_k(payload: dict[str, Any], console: Console) -> None:
    rows = [[k, s["mean"], s["std"]] for k, s in payload["scores"].items()]
    console.print(simple_table(f"Silhouette ({payload['level']})", ["K", "mean", "std"], rows))
    console.print(f"best K: [bold]{payload['best_k']}[/bold]   plot: {payload['plot']}")
    if "server_k" in payload:
        console.print(f"the server's automatic rule (--global-clusters auto) picks K = [bold]{payload['server_k']}[/bold]")


@o.with_options(o.CLUSTER_OPTIONS, o.EMBED_OPTIONS, o.DATA_OPTIONS, o.COMMON_OPTIONS)
def select_k(run_dir: o.RunDirOpt = o.DEFAULT_RUN_DIR, level: LevelOpt = "local", *,
             shared: dict[str, Any]) -> None:
    """Silhouette score for each K in k-min..k-max: a table, Parquet and a PNG plot.

    local: per client, mean ± std over clients, best K = the most common per-client best.
    global: over every client's local centroids (what the server clusters in round 1).
    """
    def action(cfg, run, progress):
        from fedrouter_cli.stages.pipeline import prepare
        from fedrouter_cli.stages.select_k import run_select_k

        prepare(cfg, run, "embed" if level == "local" else "cluster-local", False, progress)
        return run_select_k(cfg, run, level, shared["force"], progress).to_json()

    execute(run_dir=run_dir, json_out=shared["json_out"], debug=shared["debug"], preset=shared["preset"],
            overrides=o.upstream_overrides(shared), action=action, render=render_select_k)
