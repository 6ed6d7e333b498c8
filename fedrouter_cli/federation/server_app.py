"""The ServerApp: connects to the nodes, restores or initialises the strategy, runs the rounds."""

from __future__ import annotations

import logging

from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp

from fedrouter_cli.federation.strategies.base import AdapterStrategy, FederationJob

log = logging.getLogger(__name__)


def build_server_app(job: FederationJob, strategy_class: type[AdapterStrategy],
                     errors: list[BaseException]) -> ServerApp:
    """A ServerApp bound to one run; exceptions land in `errors` for the caller to report."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            strategy = strategy_class(job)
            strategy.connect(grid)
            strategy.restore_or_initialize()
            remaining = job.config.train.rounds - strategy.completed
            if remaining > 0:
                strategy.start(grid=grid, initial_arrays=ArrayRecord(), num_rounds=remaining,
                               timeout=job.config.train.round_timeout)
        except BaseException as exc:  # surfaced by the simulate stage, not lost in a thread
            errors.append(exc)
            raise

    return app
