"""`fedrouter embed`."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from fedrouter_cli.cli import options as o
from fedrouter_cli.cli.common import execute, show_warnings


def render_embed(payload: dict[str, Any], console: Console) -> None:
    state = "cache hit" if payload["cache_hit"] else f"embedded {payload['unique_texts']} distinct texts"
    console.print(f"[bold]embed[/bold]: {state} in {payload['seconds']:.1f}s; {payload['rows']} rows, "
                  f"dim {payload['dim']}, embedder {payload['embedder']}")
    show_warnings(console, payload.get("warnings", []))


def embed(
    run_dir: o.RunDirOpt = o.DEFAULT_RUN_DIR,
    model: o.ModelOpt = None,
    embedder: o.EmbedderOpt = None,
    embed_batch_size: o.EmbedBatchOpt = None,
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
    """Embed each client's raw instructions (mean of the last hidden layer over real tokens) to Parquet.

    Runs `partition` first if its output is missing or stale. With --model given and no --embedder,
    the base model itself is the embedder (the paper's choice).
    """
    if model is not None and embedder is None:
        embedder = "base"
    overrides = {"data": o.data_overrides(source, tasks, scenario, clients, train_per_client, test_per_client,
                                          None, seed),
                 "model": {"model": model}, "embed": {"embedder": embedder, "batch_size": embed_batch_size}}

    def action(cfg, run, progress):
        from fedrouter_cli.pipeline import prepare

        results = prepare(cfg, run, "embed", force, progress)
        return {**results[-1].to_json(), "warnings": [w for r in results for w in r.warnings]}

    execute(run_dir=run_dir, json_out=json_out, debug=debug, preset=preset, overrides=overrides,
            action=action, render=render_embed)
