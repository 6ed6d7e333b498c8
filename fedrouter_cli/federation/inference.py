"""How each algorithm answers a test sample: which adapter, built from what."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedrouter_cli.model.lora import Adapter


@dataclass
class InferenceInput:
    """One client's test samples and what the run left behind for it."""

    client: int
    mode: str                       # 'local' or 'global'
    embeddings: np.ndarray          # [n, dim] test embeddings
    state: dict[str, Any]           # state.json of the evaluated round
    adapters_dir: Path              # that round's adapters/<name>/ folders
    node_dir: Path                  # the client's own folder (its kept state)
    train_embeddings: np.ndarray    # the client's train embeddings (for similarity-based mixing)
    local_centroids: np.ndarray     # the client's local centroids
    local_tasks: list[str]          # majority task of each local cluster
    global_tasks: dict[str, str]    # adapter name -> majority task of the clients' clusters it serves
    instructions: list[str] = field(default_factory=list)        # the test instructions (raw), row by row
    train_instructions: list[str] = field(default_factory=list)  # the client's train instructions
    # last-layer hidden state at the last prompt token of each instruction (formatted as a prompt),
    # of the base model with the given adapter: [n, hidden]; None where no model is at hand
    hidden_states: Callable[[list[str], Adapter], np.ndarray] | None = None
    seed: int = 0                   # --seed, for methods that draw at random
    local_route: str = "local"      # FedRouter's local mode: 'local' or 'global' centroids (--local-route)

    # The rules read adapters only through these two, so they need no file layer of their own.
    def saved(self, name: str) -> Callable[[], Adapter]:
        """A loader of the evaluated round's adapter `name` (called when a batch needs it)."""
        from fedrouter_cli.model.lora import load_adapter

        folder = self.adapters_dir / name
        return lambda: load_adapter(folder)

    def kept(self, alg: str, name: str) -> Adapter | None:
        """What this client kept for job `name` of `alg` up to and including the evaluated round."""
        from fedrouter_cli.federation.node import latest_state

        return latest_state(self.node_dir, alg, name, before_round=int(self.state["round"]) + 1)


@dataclass
class Routing:
    names: list[str]                # adapter name per sample ('__base__' = no adapter)
    build: dict[str, Any]           # adapter name -> callable returning its weights (PEFT keys, no
                                    # adapter name); its rank may differ from --lora-r (e.g. a
                                    # concatenation of two adapters), the scale alpha/r is kept
    routed_tasks: list[str] | None  # majority task of the adapter chosen, for routing accuracy
    # adapter name -> its new-token budget from its training responses (evaluation.route fills it)
    budgets: dict[str, int] = field(default_factory=dict)


def merged(parts: list) -> Adapter:
    out: Adapter = {}
    for part in parts:
        out.update(part())
    return out
