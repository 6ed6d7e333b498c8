"""Local: every client trains its own adapter on its own data; nothing is shared.

Each round a client trains its adapter (kept on its node, Job keep='all') and sends nothing
back (send='none'). The server sends the shared initial adapter (seed --seed) only to a client
that holds no adapter yet, i.e. in round 1 (and again after a client failed before its first
completed round); afterwards it sends an empty adapter, so bytes in both directions are ~0.
The server holds no adapters. Inference: the client's own adapter from its node folder
('cNN-local'), or the base model if the client never completed a round.
"""

from __future__ import annotations

from fedrouter_cli.federation.inference import InferenceInput, Routing
from fedrouter_cli.federation.strategies.base import Job, JobResult
from fedrouter_cli.federation.strategies.common_baselines import (
    BaselineStrategy,
    client_adapter,
    one_adapter,
)

JOB = "local"


class Local(BaselineStrategy):
    name = "local"

    def initialize(self) -> None:
        self.adapters = {}

    def plan(self, round_number: int, client: int) -> list[Job]:
        sent = {} if client in self.has_state else self.initial
        return [Job(name=JOB, clusters=(), adapter=sent, tag=JOB, send="none", keep="all")]

    def combine(self, round_number: int, results: list[JobResult]) -> None:
        self.note_kept(results)

    @staticmethod
    def route(inputs: InferenceInput) -> Routing:
        own = inputs.kept(Local.name, JOB)
        build = (lambda: dict(own)) if own else None
        return one_adapter(client_adapter(inputs.client, "local"), build, len(inputs.embeddings))
