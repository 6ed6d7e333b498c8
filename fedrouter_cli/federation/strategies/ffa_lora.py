"""FFA-LoRA: federated LoRA with lora_A frozen at its initialization (Sun et al. 2024).

lora_A is the server's seeded initial adapter's A, identical on every client and never trained
(Job trainable='lora_B'); clients train and send back only lora_B (send='lora_B'), which the
server averages weighted by samples. Averaging B alone is exact: with A shared,
mean(B_i) @ A = mean(B_i @ A). The server sends the whole adapter (A and B) each round, as
the client keeps nothing between rounds. Inference: the global adapter for every sample.
"""

from __future__ import annotations

from fedrouter_cli.federation.inference import InferenceInput, Routing
from fedrouter_cli.federation.strategies.base import Job, JobResult
from fedrouter_cli.federation.strategies.common_baselines import (
    GLOBAL,
    BaselineStrategy,
    fedavg,
    one_adapter,
)
from fedrouter_cli.model.lora import select


class FFALoRA(BaselineStrategy):
    name = "ffa-lora"

    def initialize(self) -> None:
        self.adapters = {GLOBAL: self.initial}

    def plan(self, round_number: int, client: int) -> list[Job]:
        return [Job(name=GLOBAL, clusters=(), adapter=self.adapters[GLOBAL], tag=GLOBAL,
                    trainable="lora_B", send="lora_B")]

    def combine(self, round_number: int, results: list[JobResult]) -> None:
        group = [r for r in results if r.job.tag == GLOBAL]
        if group:
            frozen = select(self.adapters[GLOBAL], "lora_A")
            self.adapters[GLOBAL] = {**frozen, **fedavg(group, "lora_B")}

    @staticmethod
    def route(inputs: InferenceInput) -> Routing:
        return one_adapter(GLOBAL, inputs.saved(GLOBAL), len(inputs.embeddings))
