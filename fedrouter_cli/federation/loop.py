"""The federation loop, the only one, for both of Flower's engines; the ServerApps that run it are
in fedrouter_cli.stages.server_app."""

from __future__ import annotations

import logging

from flwr.app import ArrayRecord
from flwr.serverapp import Grid

from fedrouter_cli.errors import FederationStopped
from fedrouter_cli.federation.rounds import FederationJob, FlowerRounds
from fedrouter_cli.federation.strategies.base import AdapterStrategy

log = logging.getLogger(__name__)


def run_rounds(grid: Grid, job: FederationJob, strategy_class: type[AdapterStrategy], connect_timeout: float = 600.0,
               every_node: bool = False) -> FlowerRounds:
    """Wait for the nodes and their centroids, restore the last saved round (or initialise a new
    run), and run the rounds that remain. every_node: stop unless all `job.num_nodes` answered
    (a deployment, where a missing SuperNode is a misconfiguration, not a failed client)."""
    strategy = FlowerRounds(strategy_class(job), job)
    strategy.connect(grid, timeout=connect_timeout)
    if every_node and len(strategy.node_client) < job.num_nodes:
        raise FederationStopped(f"only {len(strategy.node_client)} of {job.num_nodes} SuperNodes sent their centroids")
    strategy.restore_or_initialize()
    remaining = job.config.train.rounds - strategy.completed
    if remaining > 0:
        strategy.start(grid=grid, initial_arrays=ArrayRecord(), num_rounds=remaining,
                       timeout=job.config.train.round_timeout)
    return strategy
