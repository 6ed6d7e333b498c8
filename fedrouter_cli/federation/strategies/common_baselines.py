"""What the baseline strategies (FedIT, Local, FedCluster, FedSA, FFA-LoRA, FedDPA) share.

- `BaselineStrategy`: the shared initial adapter (seed = --seed, the same for every method, so
  all baselines start from identical weights), FedAvg per tag weighted by samples, and the set
  of clients that already hold kept state on their node (so the server knows when it can stop
  sending an adapter the client keeps itself).
- Inference helpers: per-client adapter names, a client's kept state for a round, one
  adapter for every test sample.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from fedrouter_cli.federation.inference import Routing
from fedrouter_cli.federation.strategies.base import AdapterStrategy, JobResult
from fedrouter_cli.model.generate import BASE
from fedrouter_cli.model.lora import Adapter, average, select
from fedrouter_cli.names import client_name

GLOBAL = "global"


def client_adapter(client: int, suffix: str) -> str:
    """Adapter name unique across clients, e.g. 'c03-local'."""
    return f"{client_name(client)}-{suffix}"


def one_adapter(name: str, build: Callable[[], Adapter] | None, samples: int) -> Routing:
    """Every sample to the same adapter; no adapter (base model) when `build` is None."""
    if build is None:
        return Routing(names=[BASE] * samples, build={}, routed_tasks=None)
    return Routing(names=[name] * samples, build={name: build}, routed_tasks=None)


def fedavg(results: list[JobResult], part: str = "all") -> Adapter:
    """Sample-weighted mean of the returned adapters (only the keys of `part`)."""
    return average([select(r.adapter, part) for r in results], [r.samples for r in results])


class BaselineStrategy(AdapterStrategy):
    """AdapterStrategy plus the pieces every baseline uses."""

    def __init__(self, job) -> None:
        super().__init__(job)
        self.has_state: set[int] = set()  # clients whose node holds kept weights of this run

    @functools.cached_property
    def initial(self) -> Adapter:
        """The run's initial adapter (lora_A seeded, lora_B zero); recomputed after a resume."""
        return self.job.initial_adapter(self.train.seed)

    def average_tags(self, results: list[JobResult], tags: set[str] | None = None, part: str = "all") -> None:
        """Replace each tag's adapter by the FedAvg of its returned adapters (tags not trained keep theirs)."""
        for tag, group in self.weighted_groups(results).items():
            if tags is None or tag in tags:
                self.adapters[tag] = fedavg(group, part)

    def note_kept(self, results: list[JobResult]) -> None:
        """Clients that finished a job with keep != 'none' now hold that state on their node."""
        self.has_state.update(r.client for r in results if r.job.keep != "none")

    def extra_state(self) -> dict[str, Any]:
        return {"has_state": sorted(self.has_state)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.has_state = {int(c) for c in state.get("has_state", [])}
