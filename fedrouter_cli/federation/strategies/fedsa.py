"""FedSA-LoRA: share lora_A, keep lora_B personal (Guo et al. 2025, "Selective Aggregation").

The server holds only lora_A ('global' holds A keys only, never any B) and sends it each round.
A client trains A and B on all its data, sends back only A (Job send='lora_A') and keeps B on
its node (keep='lora_B'); the server averages the returned A's weighted by samples. A client's
B starts at zero (LoRA's initialization): the client starts a part it was neither sent nor kept
at zeros. Inference: the shared A of the evaluated round with the client's own B from its node
folder ('cNN-fedsa'), or the base model if the client never completed a round.
"""

from __future__ import annotations

from fedrouter_cli.federation.inference import InferenceInput, Routing
from fedrouter_cli.federation.strategies.base import Job, JobResult
from fedrouter_cli.federation.strategies.common_baselines import (
    GLOBAL,
    BaselineStrategy,
    client_adapter,
    fedavg,
    one_adapter,
)
from fedrouter_cli.model.lora import select


class FedSA(BaselineStrategy):
    name = "fedsa"

    def initialize(self) -> None:
        self.adapters = {GLOBAL: select(self.initial, "lora_A")}

    def plan(self, round_number: int, client: int) -> list[Job]:
        return [Job(name=GLOBAL, clusters=(), adapter=select(self.adapters[GLOBAL], "lora_A"), tag=GLOBAL,
                    send="lora_A", keep="lora_B")]

    def combine(self, round_number: int, results: list[JobResult]) -> None:
        group = [r for r in results if r.job.tag == GLOBAL]
        if group:
            self.adapters[GLOBAL] = fedavg(group, "lora_A")
        self.note_kept(results)

    @staticmethod
    def route(inputs: InferenceInput) -> Routing:
        own_b = inputs.kept(FedSA.name, GLOBAL)
        if not own_b:
            return one_adapter("", None, len(inputs.embeddings))
        shared = inputs.saved(GLOBAL)

        def build():
            return {**select(shared(), "lora_A"), **select(own_b, "lora_B")}

        return one_adapter(client_adapter(inputs.client, "fedsa"), build, len(inputs.embeddings))
