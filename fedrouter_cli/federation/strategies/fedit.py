"""FedIT: federated instruction tuning as FedAvg of one LoRA adapter (Zhang et al. 2024).

Every round every client trains the global adapter on all its data (cluster -1) and sends it
back whole; the server replaces it by the mean of the returned adapters, weighted by samples.
Inference: the global adapter for every test sample (both evaluate modes).
"""

from __future__ import annotations

from fedrouter_cli.federation.inference import InferenceInput, Routing
from fedrouter_cli.federation.strategies.base import Job, JobResult
from fedrouter_cli.federation.strategies.common_baselines import (
    GLOBAL,
    BaselineStrategy,
    one_adapter,
)


class FedIT(BaselineStrategy):
    name = "fedit"

    def initialize(self) -> None:
        self.adapters = {GLOBAL: self.initial}

    def plan(self, round_number: int, client: int) -> list[Job]:
        return [Job(name=GLOBAL, clusters=(), adapter=self.adapters[GLOBAL], tag=GLOBAL)]

    def combine(self, round_number: int, results: list[JobResult]) -> None:
        self.average_tags(results)

    @staticmethod
    def route(inputs: InferenceInput) -> Routing:
        return one_adapter(GLOBAL, inputs.saved(GLOBAL), len(inputs.embeddings))
