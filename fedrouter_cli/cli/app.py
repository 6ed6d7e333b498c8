"""The `fedrouter` command: wiring only; each subcommand lives in its own module."""

from __future__ import annotations

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

app = typer.Typer(
    name="fedrouter",
    help="Task-centric personalized federated fine-tuning of language models (FedRouter) on Flower.\n\n"
         "Stages persist their outputs in a run directory and are cached; each command runs the "
         "stages it needs first. Start with `fedrouter run`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring paragraphs reflow instead of keeping source line breaks
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


def main() -> None:
    app()
