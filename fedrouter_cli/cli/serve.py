"""`fedrouter generate` and `fedrouter export`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from fedrouter_cli.cli import options as o
from fedrouter_cli.cli.common import execute


def render_answer(payload: dict[str, Any], console: Console) -> None:
    ranked = sorted(payload["distances"].items(), key=lambda item: item[1])
    console.print(f"[bold]adapter {payload['adapter']}[/bold] (nearest global centroid; distances: "
                  + ", ".join(f"{n} {d:.3f}" for n, d in ranked) + ")", highlight=False)
    console.print(payload["answer"], highlight=False)


def generate(
    prompt: Annotated[str, typer.Argument(help="The instruction to answer.")],
    run_dir: o.RunDirOpt = o.DEFAULT_RUN_DIR,
    round: o.RoundOpt = None,
    max_new_tokens: o.MaxNewTokensOpt = None,
    json_out: o.JsonOpt = False,
    debug: o.DebugOpt = False,
) -> None:
    """Route one prompt to the adapter of its nearest global centroid and answer it."""
    overrides = {"eval": {"round": round, "max_new_tokens": max_new_tokens}}

    def action(cfg, run, progress):
        from fedrouter_cli.serve import answer_prompt

        return asdict(answer_prompt(cfg, run, prompt))

    execute(run_dir=run_dir, json_out=json_out, debug=debug, preset=None, overrides=overrides,
            action=action, render=render_answer)


def export(
    out: Annotated[Path, typer.Option("--out", help="New folder to write the adapters, router and README to.")],
    run_dir: o.RunDirOpt = o.DEFAULT_RUN_DIR,
    round: o.RoundOpt = None,
    json_out: o.JsonOpt = False,
    debug: o.DebugOpt = False,
) -> None:
    """Export a FedRouter run's adapters (PEFT format) with the router's centroids and a README."""

    def action(cfg, run, progress):
        from fedrouter_cli.serve import export_run

        return export_run(cfg, run, out)

    execute(run_dir=run_dir, json_out=json_out, debug=debug, preset=None, overrides={"eval": {"round": round}},
            action=action, render=lambda p, c: c.print(f"exported {len(p['adapters'])} adapters (round {p['round']}) to {p['out']}"))
