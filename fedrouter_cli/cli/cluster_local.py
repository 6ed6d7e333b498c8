"""`fedrouter cluster-local`."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from fedrouter_cli.cli import options as o
from fedrouter_cli.cli.common import execute, show_warnings, simple_table, stage_line
from fedrouter_cli.stages.common import StageResult


def render_clusters(payload: dict[str, Any], console: Console) -> None:
    console.print(stage_line(StageResult("cluster-local", payload["cache_hit"], payload["seconds"])))
    rows = [[c["client"], c["k"], c["purity"], " ".join(map(str, c["sizes"]))] for c in payload["clients"]]
    console.print(simple_table("Local clusters", ["client", "K", "purity", "sizes"], rows))
    console.print(f"mean purity: [bold]{payload['purity']:.4f}[/bold]")
    show_warnings(console, payload.get("warnings", []))


def cluster_local(
    run_dir: o.RunDirOpt = o.DEFAULT_RUN_DIR,
    n_clusters: o.NClustersOpt = None,
    k_min: o.KMinOpt = None,
    k_max: o.KMaxOpt = None,
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
    """K-Means per client on its train embeddings; writes centroids and assignments, reports purity."""
    overrides = {"data": o.data_overrides(source, tasks, scenario, clients, train_per_client, test_per_client,
                                          None, seed),
                 "model": {"model": model}, "embed": {"embedder": embedder},
                 "cluster": {"n_clusters": n_clusters, "k_min": k_min, "k_max": k_max}}

    def action(cfg, run, progress):
        from fedrouter_cli.pipeline import prepare

        results = prepare(cfg, run, "cluster-local", force, progress)
        return {**results[-1].to_json(), "warnings": [w for r in results for w in r.warnings]}

    execute(run_dir=run_dir, json_out=json_out, debug=debug, preset=preset, overrides=overrides,
            action=action, render=render_clusters)
