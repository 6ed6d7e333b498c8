"""The `fedrouter` command: wiring only; each subcommand lives in its own module."""

from __future__ import annotations

import typer

from fedrouter_cli.cli.cluster_local import cluster_local
from fedrouter_cli.cli.embed import embed
from fedrouter_cli.cli.partition import partition
from fedrouter_cli.cli.select_k import select_k

app = typer.Typer(
    name="fedrouter",
    help="Task-centric personalized federated fine-tuning of language models (FedRouter) on Flower.\n\n"
         "Stages persist their outputs in a run directory and are cached; each command runs the "
         "stages it needs first.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("partition")(partition)
app.command("embed")(embed)
app.command("cluster-local")(cluster_local)
app.command("select-k")(select_k)


def main() -> None:
    app()
