"""FedDPA: a global and a local adapter per client, mixed per test instance (after Long et al. 2024).

Training: each round a client runs two jobs on all its data: the global adapter (sent whole,
FedAvg'd by the server, weighted by samples) and its own local adapter (kept on its node,
keep='all', send='none'; the server sends the shared initial adapter only until the client
holds one). Simplification of the paper: the local adapter trains on its own, not stacked on
the frozen global one.

Inference (instance-wise dynamic weighting):
    w_local  = clip(mean cosine similarity of the instance's embedding to its k=5 nearest train
               embeddings of the client, 0, 1), then rounded to steps of 0.1
    w_global = 1 - w_local
The mixture is one adapter of rank 2r:
    A_mix = concat([A_global, A_local], dim 0)          (2r x in)
    B_mix = concat([w_global*B_global, w_local*B_local], dim 1)   (out x 2r)
so B_mix @ A_mix = w_global*B_global@A_global + w_local*B_local@A_local; the evaluate stage keeps
the scale alpha/r (it loads a rank-2r adapter with alpha*2). Rounding w_local to 0.1 bounds the
adapters to at most 11 per client, named 'cNN-mix0_7' for w_local = 0.7 (PEFT adapter names
cannot contain '.'). A client with no local adapter (it
never completed a round) uses the global adapter ('global') for every instance.
"""

from __future__ import annotations

import functools

import numpy as np

from fedrouter_cli.federation.inference import InferenceInput, Routing, load_named
from fedrouter_cli.federation.strategies.base import Job, JobResult
from fedrouter_cli.federation.strategies.common_baselines import (GLOBAL, BaselineStrategy, client_adapter,
                                                                  kept_state, one_adapter)
from fedrouter_cli.model.lora import Adapter

LOCAL = "local"
NEIGHBOURS = 5
STEPS = 10  # w_local is rounded to multiples of 1/STEPS


def local_weight(embeddings: np.ndarray, train_embeddings: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    """w_local per instance: mean cosine similarity to its k nearest train embeddings, clipped to [0, 1]."""
    if len(train_embeddings) == 0:
        return np.zeros(len(embeddings))

    def unit(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    sims = unit(embeddings) @ unit(train_embeddings).T
    k = min(k, sims.shape[1])
    nearest = -np.sort(-sims, axis=1)[:, :k]
    return np.clip(nearest.mean(axis=1), 0.0, 1.0)


def quantize(weights: np.ndarray) -> np.ndarray:
    """Rounded to steps of 1/STEPS, as integers 0..STEPS."""
    return np.clip(np.rint(np.asarray(weights) * STEPS), 0, STEPS).astype(np.int64)


def mix_adapter(global_adapter: Adapter, local_adapter: Adapter, w_local: float) -> Adapter:
    """Rank-2r adapter whose B@A is (1 - w_local)*B_g@A_g + w_local*B_l@A_l."""
    w_global = 1.0 - w_local
    out: Adapter = {}
    for key, a_or_b in global_adapter.items():
        if "lora_A" in key:
            out[key] = np.concatenate([a_or_b, local_adapter[key]], axis=0)
        else:
            out[key] = np.concatenate([w_global * a_or_b, w_local * local_adapter[key]], axis=1)
        out[key] = out[key].astype(np.float32)
    return out


def mix_name(client: int, step: int) -> str:
    return client_adapter(client, f"mix{step // STEPS}_{step % STEPS}")  # no "." in PEFT adapter names


class FedDPA(BaselineStrategy):
    name = "feddpa"

    def initialize(self) -> None:
        self.adapters = {GLOBAL: self.initial}

    def plan(self, round_number: int, client: int) -> list[Job]:
        own = {} if client in self.has_state else self.initial
        return [Job(name=GLOBAL, cluster=-1, adapter=self.adapters[GLOBAL], tag=GLOBAL),
                Job(name=LOCAL, cluster=-1, adapter=own, tag=LOCAL, send="none", keep="all")]

    def combine(self, round_number: int, results: list[JobResult]) -> None:
        self.average_tags(results, tags={GLOBAL})
        self.note_kept(results)

    @staticmethod
    def route(inputs: InferenceInput) -> Routing:
        own = kept_state(inputs.node_dir, FedDPA.name, LOCAL, inputs.state)
        global_build = load_named(inputs.adapters_dir, GLOBAL)
        if not own:
            return one_adapter(GLOBAL, global_build, len(inputs.embeddings))
        steps = quantize(local_weight(inputs.embeddings, inputs.train_embeddings))
        shared = functools.lru_cache(maxsize=1)(global_build)
        names = [mix_name(inputs.client, int(s)) for s in steps]
        build = {mix_name(inputs.client, s): (lambda s=s: mix_adapter(shared(), own, s / STEPS))
                 for s in sorted(set(steps.tolist()))}
        return Routing(names=names, build=build, routed_tasks=None)
