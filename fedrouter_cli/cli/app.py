"""The `fedrouter` command: wiring only; each subcommand lives in its own module."""

from __future__ import annotations

from typing import Annotated

import click
import typer

from fedrouter_cli.cli.bench import bench
from fedrouter_cli.cli.cluster_local import cluster_local
from fedrouter_cli.cli.common import PlainErrorsGroup
from fedrouter_cli.cli.deploy import deploy_app
from fedrouter_cli.cli.embed import embed
from fedrouter_cli.cli.evaluate import evaluate
from fedrouter_cli.cli.partition import partition
from fedrouter_cli.cli.report import report
from fedrouter_cli.cli.run import run
from fedrouter_cli.cli.select_k import select_k
from fedrouter_cli.cli.serve import export, generate
from fedrouter_cli.cli.simulate import simulate


class _PlainHelp(click.HelpFormatter):
    """Click's help layout, minus the backslash Typer puts before '[' (an escape for Rich markup,
    which plain help does not use)."""

    def write_dl(self, rows, *args, **kwargs) -> None:
        super().write_dl([(term.replace("\\[", "["), text.replace("\\[", "[")) for term, text in rows], *args, **kwargs)


click.Context.formatter_class = _PlainHelp  # every command's help, subcommands included

app = typer.Typer(
    name="fedrouter",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help: wraps at the terminal's width, never cuts an option name
    add_completion=False,
    cls=PlainErrorsGroup,
)
for name, command in {
    "run": run,
    "partition": partition,
    "embed": embed,
    "cluster-local": cluster_local,
    "select-k": select_k,
    "simulate": simulate,
    "evaluate": evaluate,
    "generate": generate,
    "export": export,
    "report": report,
    "bench": bench,
}.items():
    app.command(name)(command)
app.add_typer(deploy_app, name="deploy")


def _show_version(value: bool) -> None:
    if value:
        from fedrouter_cli import __version__

        typer.echo(f"fedrouter {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option(
        "--version", callback=_show_version, is_eager=True, help="Print the version and exit.")] = False) -> None:
    """Task-centric personalized federated fine-tuning of language models (FedRouter) on Flower.

    Stages persist their outputs in a run directory and are cached; each command runs the stages it
    needs first. Start with `fedrouter run`."""


def main() -> None:
    app()
