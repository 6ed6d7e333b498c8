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
    device: o.DeviceOpt = None,
    json_out: o.JsonOpt = False,
    debug: o.DebugOpt = False,
) -> None:
    """Route one prompt to the adapter of its nearest global centroid and answer it.

    Nothing is saved: the run's settings are the same after it (always computed, no cache)."""
    overrides = {"eval": {"round": round, "max_new_tokens": max_new_tokens}, "model": {"device": device}}

    def action(cfg, run, progress):
        from fedrouter_cli.serve import answer_prompt

        return asdict(answer_prompt(cfg, run, prompt))

    execute(run_dir=run_dir, json_out=json_out, debug=debug, preset=None, overrides=overrides,
            action=action, render=render_answer, persist=False)


def export(
    out: Annotated[Path, typer.Option("--out", help="New folder to write the adapters, router and README to.")],
    run_dir: o.RunDirOpt = o.DEFAULT_RUN_DIR,
    round: o.RoundOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an earlier export in --out.")] = False,
    json_out: o.JsonOpt = False,
    debug: o.DebugOpt = False,
) -> None:
    """Export a FedRouter run's adapters (PEFT format) with the router's centroids and a README.

    The run's settings are the same after it: --round picks the round for this export only."""

    def action(cfg, run, progress):
        from fedrouter_cli.serve import export_run

        return export_run(cfg, run, out, force)

    execute(run_dir=run_dir, json_out=json_out, debug=debug, preset=None, overrides={"eval": {"round": round}},
            action=action, persist=False,
            render=lambda p, c: c.print(f"exported {len(p['adapters'])} adapters (round {p['round']}) to {p['out']}"))
