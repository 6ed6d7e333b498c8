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


def select_k(
    run_dir: o.RunDirOpt = o.DEFAULT_RUN_DIR,
    level: LevelOpt = "local",
    k_min: o.KMinOpt = None,
    k_max: o.KMaxOpt = None,
    n_clusters: o.NClustersOpt = None,
    model: o.ModelOpt = None,
    embedder: o.EmbedderOpt = None,
    source: o.SourceOpt = None,
    tasks: o.TasksOpt = None,
    scenario: o.ScenarioOpt = None,
    clients: o.ClientsOpt = None,
    train_per_client: o.TrainPerClientOpt = None,
    test_per_client: o.TestPerClientOpt = None,
    seed: o.SeedOpt = None,
    preset: o.PresetOpt = None,
    force: o.ForceOpt = False,
    json_out: o.JsonOpt = False,
    debug: o.DebugOpt = False,
) -> None:
    """Silhouette score for each K in k-min..k-max: a table, Parquet and a PNG plot.

    local: per client, mean ± std over clients, best K = the most common per-client best.
    global: over every client's local centroids (what the server clusters in round 1).
    """
    overrides = {"data": o.data_overrides(source, tasks, scenario, clients, train_per_client, test_per_client,
                                          None, seed),
                 "model": {"model": model}, "embed": {"embedder": embedder},
                 "cluster": {"n_clusters": n_clusters, "k_min": k_min, "k_max": k_max}}

    def action(cfg, run, progress):
        from fedrouter_cli.pipeline import prepare
        from fedrouter_cli.stages.select_k import run_select_k

        prepare(cfg, run, "embed" if level == "local" else "cluster-local", False, progress)
        return run_select_k(cfg, run, level, force).to_json()

    execute(run_dir=run_dir, json_out=json_out, debug=debug, preset=preset, overrides=overrides,
            action=action, render=render_select_k)
