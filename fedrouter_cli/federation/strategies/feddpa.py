"""FedDPA: a global and a local adapter per client, mixed per test instance (Long et al. 2024).

Two algorithms share the training scheme and differ in how the local adapter trains and how the
test-time weight is found:

`feddpa`, as the authors' released code does it (Lydia-yang/FedDPA):
- Training (code/main.py, code/fed_utils/client.py `set_local`): round 1 trains the global adapter
  alone; from round 2 on each client runs two jobs on all its data: the global adapter alone
  (sent whole, FedAvg'd by the server, weighted by samples) and its own local adapter (kept on its
  node, keep='all', send='none'), trained at weight 0.5 beside the global adapter as the server
  sent it at weight 0.5, frozen (job companion; the released layer forward adds
  0.5*local(x) + 0.5*detach(global(x))), so only the local one gets gradients.
- Inference (code/GlobalModel_generated.py `get_weight` and the loop after it, the LoRA layer's
  forward): the global adapter is the active one, scaled by
      w_global = 0.5 x mean cosine similarity
  between the instance's last-token hidden state (last layer, formatted prompt, the base model
  with the local adapter alone) and those of 5 local training instructions drawn at random for
  that instance (seeded here: --seed, client, instance); the local adapter is scaled by
  1 - w_global. w_global is clipped to [0, 1] and rounded to steps of 0.05, so a client needs at
  most 11 mixed adapters (the released code applies the exact weight).

`feddpa-knn`, this tool's earlier, cheaper variant:
- Training: the local adapter trains on its own, not stacked on the frozen global one.
- Inference: w_local = mean cosine similarity of the instance's sentence embedding (the router's
  embedder, MiniLM by default) to its 5 nearest train embeddings of the client, clipped to
  [0, 1], rounded to steps of 0.1. No forward pass of the language model is needed to route.

The mixture is one adapter of rank 2r:
    A_mix = concat([A_global, A_local], dim 0)          (2r x in)
    B_mix = concat([w_global*B_global, w_local*B_local], dim 1)   (out x 2r)
so B_mix @ A_mix = w_global*B_global@A_global + w_local*B_local@A_local; the evaluate stage keeps
the scale alpha/r (it loads a rank-2r adapter with alpha*2). Rounding w_local bounds the adapters
to at most 11 per client (PEFT adapter names cannot contain '.'). A client with no local adapter
(it never completed a round) uses the global adapter ('global') for every instance.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from fedrouter_cli.federation.inference import InferenceInput, Routing
from fedrouter_cli.federation.strategies.base import Job, JobResult
from fedrouter_cli.federation.strategies.common_baselines import (
    GLOBAL,
    BaselineStrategy,
    client_adapter,
    one_adapter,
)
from fedrouter_cli.model.lora import Adapter

LOCAL = "local"
NEIGHBOURS = 5   # feddpa-knn: nearest train embeddings averaged
STEPS = 10       # feddpa-knn: w_local is rounded to multiples of 1/STEPS
ANCHORS = 5      # feddpa: local train instructions drawn per test instance
SCALE = 0.5      # feddpa: w_global = SCALE x mean cosine similarity
GRID = 20        # feddpa: the weights are rounded to multiples of 1/GRID (at most 11 values of w_local in [0.5, 1])


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def local_weight(embeddings: np.ndarray, train_embeddings: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    """feddpa-knn's w_local per instance: mean cosine similarity to its k nearest train embeddings, clipped to [0, 1]."""
    if len(train_embeddings) == 0:
        return np.zeros(len(embeddings))
    sims = _unit(embeddings) @ _unit(train_embeddings).T
    k = min(k, sims.shape[1])
    nearest = -np.sort(-sims, axis=1)[:, :k]
    return np.clip(nearest.mean(axis=1), 0.0, 1.0)


def global_weight(states: np.ndarray, anchor_states: np.ndarray, scale: float = SCALE) -> np.ndarray:
    """feddpa's w_global per instance: scale x the mean cosine similarity of its hidden state
    (states[i]) to its own anchors' (anchor_states[i], [n, k, dim]: the local train instructions
    drawn for it), clipped to [0, 1]."""
    if anchor_states.shape[1] == 0:
        return np.zeros(len(states))
    unit_states = _unit(states)
    unit_anchors = _unit(anchor_states.reshape(-1, anchor_states.shape[-1])).reshape(anchor_states.shape)
    cosine = np.einsum("nd,nkd->nk", unit_states, unit_anchors)
    return np.clip(scale * cosine.mean(axis=1), 0.0, 1.0)


def draw_anchors(count: int, seed: int, client: int, instance: int, k: int = ANCHORS) -> list[int]:
    """Indices of k local train instructions drawn at random for one test instance (seeded, so a
    rerun draws the same)."""
    rng = np.random.default_rng([seed, client, instance])
    return sorted(rng.choice(count, size=min(k, count), replace=False).tolist())


def quantize(weights: np.ndarray, steps: int = STEPS) -> np.ndarray:
    """Rounded to steps of 1/steps, as integers 0..steps."""
    return np.clip(np.rint(np.asarray(weights) * steps), 0, steps).astype(np.int64)


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


def mix_name(client: int, step: int, steps: int = STEPS) -> str:
    """'cNN-mix0_7' for w_local = 0.7 with steps of 0.1, 'cNN-mix0_45' for 0.45 with steps of 0.05."""
    whole, rest = divmod(step, steps)
    digits = len(str(steps - 1))
    return client_adapter(client, f"mix{whole}_{rest * 10 ** digits // steps:0{digits}d}")


def _mixture_routing(client: int, own: Adapter, global_build, w_local: np.ndarray, steps: int) -> Routing:
    grid = quantize(w_local, steps)
    shared = functools.lru_cache(maxsize=1)(global_build)
    names = [mix_name(client, int(s), steps) for s in grid]
    build = {mix_name(client, s, steps): (lambda s=s: mix_adapter(shared(), own, s / steps))
             for s in sorted(set(grid.tolist()))}
    return Routing(names=names, build=build, routed_tasks=None)


class FedDPA(BaselineStrategy):
    name = "feddpa"
    stacked = True  # the local adapter trains with the global one active and frozen
    weight_steps = GRID  # w_local is rounded to multiples of 1/weight_steps

    def initialize(self) -> None:
        self.adapters = {GLOBAL: self.initial}

    @staticmethod
    def fingerprint_parts(train) -> tuple[dict[str, Any], ...]:
        return ({"rules": "released-code"},)  # runs under the earlier, inverted rules are not hits

    def plan(self, round_number: int, client: int) -> list[Job]:
        jobs = [Job(name=GLOBAL, clusters=(), adapter=self.adapters[GLOBAL], tag=GLOBAL)]
        if self.stacked and round_number == 1:
            return jobs  # the released code's first round trains the global adapter alone
        own = {} if client in self.has_state else self.initial
        stacked = {"companion": GLOBAL, "scale": 0.5, "companion_scale": 0.5} if self.stacked else {}
        return jobs + [Job(name=LOCAL, clusters=(), adapter=own, tag=LOCAL, send="none", keep="all", **stacked)]

    def combine(self, round_number: int, results: list[JobResult]) -> None:
        self.average_tags(results, tags={GLOBAL})
        self.note_kept(results)

    @classmethod
    def route(cls, inputs: InferenceInput) -> Routing:
        own = inputs.kept(cls.name, LOCAL)
        global_build = inputs.saved(GLOBAL)
        if not own:
            return one_adapter(GLOBAL, global_build, len(inputs.embeddings))
        return _mixture_routing(inputs.client, own, global_build, cls.local_weights(inputs, own), cls.weight_steps)

    @staticmethod
    def local_weights(inputs: InferenceInput, own: Adapter) -> np.ndarray:
        """1 - w_global: each instance's anchors are its own draw; every train instruction drawn
        for any instance is run through the model once."""
        if inputs.hidden_states is None:
            raise ValueError("feddpa needs the model's hidden states to weight its adapters (InferenceInput.hidden_states)")
        count = len(inputs.train_instructions)
        draws = [draw_anchors(count, inputs.seed, inputs.client, i) for i in range(len(inputs.instructions))]
        used = sorted({j for draw in draws for j in draw})
        states = inputs.hidden_states(list(inputs.instructions) + [inputs.train_instructions[j] for j in used], own)
        n = len(inputs.instructions)
        position = {j: n + p for p, j in enumerate(used)}
        anchor_states = np.stack([states[[position[j] for j in draw]] for draw in draws]) if n else states[:0, None]
        return 1.0 - global_weight(states[:n], anchor_states)


class FedDPAKnn(FedDPA):
    name = "feddpa-knn"
    stacked = False
    weight_steps = STEPS

    @staticmethod
    def fingerprint_parts(train) -> tuple[dict[str, Any], ...]:
        return ()  # its rules did not change with feddpa's

    @staticmethod
    def local_weights(inputs: InferenceInput, own: Adapter) -> np.ndarray:
        return local_weight(inputs.embeddings, inputs.train_embeddings)
