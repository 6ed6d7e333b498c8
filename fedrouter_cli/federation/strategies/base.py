"""What an algorithm's rules share: the jobs a node trains, their results, and the base class of
the rules (`AdapterStrategy`): `plan` says what each node trains in a round, `combine` how the
replies combine, and the static inference methods which adapter (or mix) answers a prompt. No
Flower messages and no files here: fedrouter_cli.federation.rounds runs a rule on Flower and keeps
its checkpoints.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from fedrouter_cli.config import TrainConfig
from fedrouter_cli.errors import FederationStopped
from fedrouter_cli.federation.inference import InferenceInput, Routing
from fedrouter_cli.model.lora import Adapter, average

if TYPE_CHECKING:
    from fedrouter_cli.federation.starting_point import StartingPoint


def sampled_clients(train: TrainConfig, clients: list[int], round_number: int) -> list[int]:
    """The clients that train in a round: all of them (the default, the paper's), or a seeded
    sample of --clients-per-round or --fraction-train of them, drawn anew each round."""
    count = train.clients_per_round or (max(1, round(train.fraction_train * len(clients))) if train.fraction_train
                                        else len(clients))
    if count >= len(clients):
        return sorted(clients)
    return sorted(random.Random(f"{train.seed}-clients-{round_number}").sample(sorted(clients), count))


def started_from(source: Adapter, fresh: Adapter) -> Adapter:
    """A fresh adapter's parts taken from `source` (--init-from): the parts the fresh one has (so a
    part the server does not keep, FedSA's B, stays out), and the fresh value where the source
    lacks a part."""
    return {key: source[key].copy() if key in source else value for key, value in fresh.items()}


def lr_at(train: TrainConfig, round_number: int) -> float:
    """Cosine from --lr down to max(lr_min, lr_floor x lr) over the rounds, constant within a round."""
    if train.rounds == 1:
        return train.lr
    end = max(train.lr_min, train.lr_floor * train.lr)
    progress = (round_number - 1) / (train.rounds - 1)
    return end + 0.5 * (train.lr - end) * (1 + math.cos(math.pi * progress))


@dataclass
class Job:
    """One adapter a node trains in a round."""

    name: str                 # the client's name for it (keys its kept state)
    clusters: tuple[int, ...] # local clusters to train on, as one data set; () = all the client's data
    adapter: Adapter          # what the server sends (may be empty)
    tag: str                  # what the server aggregates it into (e.g. a global cluster)
    trainable: str = "all"    # 'all' or 'lora_B'
    send: str = "all"         # part returned: 'all', 'lora_A', 'lora_B' or 'none'
    keep: str = "none"        # part the client keeps between rounds: 'none', 'all', 'lora_B'
    companion: str = ""       # name of another job of the message whose adapter, as sent, is active
                              # and frozen while this one trains ('' = none)
    scale: float = 1.0        # weight of this job's adapter in the forward pass while it trains
    companion_scale: float = 1.0  # weight of the companion's adapter meanwhile


@dataclass
class JobResult:
    client: int
    job: Job
    adapter: Adapter
    samples: int
    loss: float
    first_loss: float
    last_loss: float
    seconds: float
    peak_rss_mb: float = 0.0
    token_budget: int = 0     # new tokens an answer of the data it trained on needs (0 = not sent)


class AdapterStrategy:
    """An algorithm's rules: what each node trains in a round and how the replies combine
    (training), and which adapter or mix answers a prompt (inference). It holds the algorithm's
    state (adapters, clusters); fedrouter_cli.federation.rounds.FlowerRounds runs it on Flower."""

    name = "base"
    # the evaluation modes whose routing differs for this algorithm (`fedrouter run` scores each)
    evaluation_modes: tuple[str, ...] = ("local",)

    @staticmethod
    def fingerprint_parts(train: TrainConfig) -> tuple[dict[str, Any], ...]:
        """What this algorithm's runs depend on beyond their settings: versions of its own rules
        and schedules, added after runs were made. They join the simulate fingerprint, so a run
        made under an older rule or schedule is not taken as a cache hit, and changing one
        algorithm's rule never reruns another's."""
        return ()

    def __init__(self, job: Any) -> None:
        """job: the run's settings (`config`), the federation's tasks (`tasks`) and how to make an
        initial adapter from a seed (`initial_adapter`): a rounds.FederationJob."""
        self.job = job
        self.config = job.config
        self.train = job.config.train
        self.adapters: dict[str, Adapter] = {}
        self.local_centroids: dict[int, np.ndarray] = {}   # client -> its local centroids, as sent
        # each local cluster's train samples, where the client sends them (not under centroid DP)
        self.local_sizes: dict[int, np.ndarray] = {}
        # rounds each client has been asked to train in, this one included (rounds.FlowerRounds
        # counts them): with every client in every round, the round number
        self.turns: dict[int, int] = {}

    # -- hooks for subclasses ------------------------------------------------------------
    def initialize(self) -> None:
        """Set up adapters (and anything else) for a fresh run, after the centroid query."""
        raise NotImplementedError

    def plan(self, round_number: int, client: int) -> list[Job]:
        raise NotImplementedError

    def combine(self, round_number: int, results: list[JobResult]) -> None:
        raise NotImplementedError

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        return None

    def warm_start(self, start: "StartingPoint") -> dict[str, str]:
        """After `initialize`, replace the fresh adapters by a starting point's (--init-from) and
        return which source adapter each came from: the one of the same name; else the source's
        only adapter; else the plain mean of the source's adapters (a method with one shared
        adapter starting from several); which parts are taken is `started_from`'s rule."""
        mapping = {}
        for name, fresh in self.adapters.items():
            if name in start.adapters:
                source, weights = name, start.adapters[name]
            elif len(start.adapters) == 1:
                source, weights = next(iter(start.adapters.items()))
            else:
                source = "mean of " + ", ".join(sorted(start.adapters))
                weights = average(list(start.adapters.values()), [1.0] * len(start.adapters))
            self.adapters[name] = started_from(weights, fresh)
            mapping[name] = source
        return mapping

    # -- helpers ----------------------------------------------------------------------------
    def lr_at(self, round_number: int) -> float:
        """The learning rate of a round (the same schedule for every algorithm)."""
        return lr_at(self.train, round_number)

    def tasks_k(self, points: int) -> int:
        """'--global-clusters tasks': as many server-side clusters as tasks in the federation
        (the paper's rule, section 3.2), at most one per point."""
        if not self.job.tasks:
            raise FederationStopped("--global-clusters tasks needs the federation's tasks; the server was given none")
        return min(len(self.job.tasks), points)

    @staticmethod
    def weighted_groups(results: list[JobResult]) -> dict[str, list[JobResult]]:
        groups: dict[str, list[JobResult]] = {}
        for result in results:
            groups.setdefault(result.job.tag, []).append(result)
        return groups

    # -- inference (used by `evaluate`) ------------------------------------------------------
    @staticmethod
    def route(inputs: "InferenceInput") -> "Routing":
        raise NotImplementedError

    @staticmethod
    def global_cluster_count(state: dict[str, Any]) -> int:
        """How many global clusters (or shared adapters) a saved round holds, for the summary."""
        return len(state["adapters"])

    @staticmethod
    def local_cluster_routes(state: dict[str, Any], local_counts: dict[int, int]) -> dict[int, list[int]]:
        """The global cluster (or client group) of each client's local clusters, where the method
        has one: what the simulate summary's global purity is measured on. {} = none."""
        return {}

    @staticmethod
    def global_router(state: dict[str, Any]) -> tuple[np.ndarray, list[str]] | None:
        """Centroids and adapter names of a router over every global adapter (answering a prompt
        from no particular client, and export); None when the method has none."""
        return None

    @staticmethod
    def evaluation_adapters(state: dict[str, Any], client: int, mode: str) -> list[str]:
        """The saved adapters a node needs to answer its test samples with `route` (evaluate --on
        nodes sends only these); what the node kept for itself is already on it."""
        return list(state["adapters"])

    @staticmethod
    def adapter_tasks(state: dict[str, Any], local_tasks: dict[int, list[str]]) -> dict[str, str]:
        """Majority task of the data behind each adapter, where the method knows it (for routing accuracy)."""
        return {}
