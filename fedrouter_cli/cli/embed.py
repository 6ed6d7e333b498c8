"""`fedrouter embed`."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from fedrouter_cli.cli import options as o
from fedrouter_cli.cli.common import execute, render_on_nodes, show_warnings


def render_embed(payload: dict[str, Any], console: Console) -> None:
    if render_on_nodes("embed", payload, console):
        return
    state = "cache hit" if payload["cache_hit"] else f"{payload['unique_texts']} distinct texts"
    console.print(f"[bold]embed[/bold]: {state} in {payload['seconds']:.1f}s; {payload['rows']} rows, "
                  f"dim {payload['dim']}, embedder {payload['embedder']}")
    show_warnings(console, payload.get("warnings", []))


@o.with_options(o.DATA_OPTIONS, o.EMBED_OPTIONS, o.COMMON_OPTIONS)
def embed(
    run_dir: o.RunDirOpt = o.DEFAULT_RUN_DIR,
    embed_batch_size: o.EmbedBatchOpt = None,
    embed_max_length: o.EmbedMaxLengthOpt = None,
    *,
    shared: dict[str, Any],
) -> None:
    """Embed each client's raw instructions (mean of the last hidden layer over real tokens) to Parquet.

    Runs `partition` first if its output is missing or stale. With --model given and no --embedder,
    the base model itself is the embedder (the paper's choice).
    """
    overrides = o.upstream_overrides(shared)
    if shared["model"] is not None and shared["embedder"] is None:
        overrides["embed"]["embedder"] = "base"
    overrides["embed"]["batch_size"] = embed_batch_size
    overrides["embed"]["max_length"] = embed_max_length
    force = shared["force"]

    def action(cfg, run, progress):
        from fedrouter_cli.stages.pipeline import prepare

        results = prepare(cfg, run, "embed", force, progress)
        return {**results[-1].to_json(), "warnings": [w for r in results for w in r.warnings]}

    execute(run_dir=run_dir, json_out=shared["json_out"], debug=shared["debug"], preset=shared["preset"],
            overrides=overrides, action=action, render=render_embed)
