"""FedRouter: one adapter per global task cluster, routed to clients by their local clusters.

Round 0 (setup): every client sends its local centroids; the server clusters them (K-Means)
into global clusters and keeps one adapter per global cluster. K: `--global-clusters tasks` =
the number of tasks in the federation (the paper's rule, section 3.2); `auto` = the smallest K
whose size-weighted silhouette is within 12% of the best, or the curve's knee if earlier (this
tool's rule, clustering.best_global_k: it merges one task's sub-clusters rather than keep them
apart); or a number.
Each round, each client trains one global adapter (`--schedule`):
- `authors` (the paper's rule, as the authors' server.py runs it): in round r (from 1) the client
  trains its local cluster r mod K (K its local clusters, in its own K-Means label order) on that
  cluster's data, with the global adapter that cluster routes to. Which global adapter a client
  trains in a round is therefore arbitrary per client.
- `staggered` (this tool's proposal): round-robin over the distinct global adapters the client
  holds data for, each client's cycle starting at its own place (so every adapter moves every
  round), as one job on the data of all its local clusters that route to it; where several local
  clusters map to one adapter (a client split a task in two), the adapter is not trained twice as
  often, nor do the others wait for their turn.
FedRouter* (`--variant star`) trains each adapter a client holds data for once every round. The
server averages returned adapters per global cluster, weighted by samples; an untrained cluster
keeps its adapter.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from fedrouter_cli.clustering import (
    AUTO_RULE_VERSIONS,
    best_global_k,
    kmeans,
    majority,
    silhouette_curve,
)
from fedrouter_cli.config import TrainConfig
from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.federation.inference import InferenceInput, Routing
from fedrouter_cli.federation.strategies.base import (
    AdapterStrategy,
    Job,
    JobResult,
    started_from,
)
from fedrouter_cli.model.lora import average
from fedrouter_cli.router import nearest

log = logging.getLogger(__name__)


def adapter_name(global_cluster: int) -> str:
    return f"g{global_cluster:02d}"


class FedRouter(AdapterStrategy):
    name = "fedrouter"
    evaluation_modes = ("local", "global")  # the client's own clusters' routes, or the global centroids

    @staticmethod
    def fingerprint_parts(train: TrainConfig) -> tuple[dict[str, Any], ...]:
        # the automatic global K's version; and the staggered round-robin, which came after runs
        # were made in step (only the standard variant has a round-robin: FedRouter* runs keep theirs)
        rule = ({"auto_rule": AUTO_RULE_VERSIONS["global"]},) if train.global_clusters == "auto" else ()
        schedule = ({"round_robin": train.schedule},) if train.variant == "standard" else ()
        shared = ({"shared_init": True},) if train.shared_init else ()
        return rule + schedule + shared

    def __init__(self, job) -> None:
        super().__init__(job)
        # client -> global cluster of each of its local clusters
        self.routes: dict[int, list[int]] = {}
        self.global_centroids = np.zeros((0, 0), dtype=np.float32)

    def cluster_globally(self) -> None:
        clients = sorted(self.local_centroids)
        stacked = np.concatenate([self.local_centroids[c] for c in clients])
        wanted = self.train.global_clusters
        weights = None
        if wanted == "tasks":
            k = self.tasks_k(len(stacked))
        elif wanted == "auto":
            # centroids count by their cluster sizes (clustering.GLOBAL_K_TOLERANCE says why)
            if all(c in self.local_sizes for c in clients):
                weights = np.concatenate([self.local_sizes[c] for c in clients]).astype(np.float64)
            k = best_global_k(silhouette_curve(stacked, self.config.cluster.k_min, self.config.cluster.k_max,
                                               self.train.seed, weights))
        else:
            k = min(int(wanted), len(stacked))
        self.global_centroids, labels = kmeans(stacked, k, self.train.seed, weights)
        start = 0
        for client in clients:
            count = len(self.local_centroids[client])
            self.routes[client] = labels[start:start + count].tolist()
            start += count

    def initialize(self) -> None:
        self.cluster_globally()
        # one initialisation for all (the authors'), or one seed each
        self.adapters = {adapter_name(g): self.job.initial_adapter(self.train.seed + (0 if self.train.shared_init else g))
                         for g in range(len(self.global_centroids))}
        most = max((len(set(r)) for r in self.routes.values()), default=0)
        if self.train.variant == "standard" and most > self.train.rounds:
            log.warning("a client holds data for %d global adapters but the run has %d rounds: round-robin "
                        "leaves %d of them untrained there; pass more --rounds or --global-clusters tasks",
                        most, self.train.rounds, most - self.train.rounds)

    def warm_start(self, start) -> dict[str, str]:
        """Each new global cluster starts from the adapter of the nearest source centroid (the
        source's router, as a prompt would be routed); a source without centroids as the base rule."""
        if not start.centroids:
            return super().warm_start(start)
        names = sorted(start.centroids)
        centroids = np.stack([start.centroids[n] for n in names])
        if centroids.shape[1] != self.global_centroids.shape[1]:
            raise FedrouterError(f"--init-from's centroids have {centroids.shape[1]} dimensions and this run's "
                                    f"{self.global_centroids.shape[1]}; start from a run embedded with the same --embedder.")
        mapping = {}
        for g, source in enumerate(nearest(self.global_centroids, centroids)):
            name, source_name = adapter_name(g), names[int(source)]
            self.adapters[name] = started_from(start.adapters[source_name], self.adapters[name])
            mapping[name] = source_name
        return mapping

    def plan(self, round_number: int, client: int) -> list[Job]:
        routes = self.routes.get(client)
        if not routes:
            return []
        if self.train.variant == "standard" and self.train.schedule == "authors":
            # the authors' server: cluster `round mod K`, rounds from 1; a client that sat rounds out
            # (client sampling) continues its own cycle: its turns, not the round, count
            local = self.turns.get(client, round_number) % len(routes)
            g = routes[local]
            return [Job(name=adapter_name(g), clusters=(local,), adapter=self.adapters[adapter_name(g)],
                        tag=adapter_name(g))]
        held = sorted(set(routes))  # the distinct global adapters this client has data for
        # each client starts its cycle at its own place: in step, all clients holding the same
        # adapters would train the same one each round, and each adapter would move in only one
        # round of every len(held) (in `all`, 1-2 of the cpu preset's 5 rounds)
        turn = (self.turns.get(client, round_number) - 1 + client) % len(held)
        chosen = held if self.train.variant == "star" else [held[turn]]
        return [Job(name=adapter_name(g), clusters=tuple(local for local, to in enumerate(routes) if to == g),
                    adapter=self.adapters[adapter_name(g)], tag=adapter_name(g)) for g in chosen]

    def combine(self, round_number: int, results: list[JobResult]) -> None:
        for tag, group in self.weighted_groups(results).items():
            self.adapters[tag] = average([r.adapter for r in group], [r.samples for r in group])

    @staticmethod
    def route(inputs: InferenceInput) -> Routing:
        """Local mode: the nearest of the client's own local centroids, then that cluster's global
        adapter. Global mode: the nearest of all global centroids, which reaches tasks the client
        never trained on."""
        state = inputs.state["extra"]
        if inputs.mode == "local" and inputs.local_route == "global":
            # the authors' client.py: the nearest of the global centroids the client's clusters map to
            held = sorted(set(state["routes"][str(inputs.client)]))
            centroids = np.asarray(state["global_centroids"], dtype=np.float32)[held]
            chosen = [held[i] for i in nearest(inputs.embeddings, centroids)]
        elif inputs.mode == "local":
            routes = state["routes"][str(inputs.client)]
            chosen = [routes[i] for i in nearest(inputs.embeddings, inputs.local_centroids)]
        else:
            chosen = nearest(inputs.embeddings, np.asarray(state["global_centroids"], dtype=np.float32)).tolist()
        names = [adapter_name(g) for g in chosen]
        return Routing(names=names, build={n: inputs.saved(n) for n in set(names)},
                       routed_tasks=[inputs.global_tasks.get(n, "") for n in names])

    @staticmethod
    def adapter_tasks(state: dict[str, Any], local_tasks: dict[int, list[str]]) -> dict[str, str]:
        """Each global adapter's majority task over the local clusters routed to it (of the clients
        whose labels are known: an evaluation on the nodes may miss a node)."""
        labels: list[int] = []
        tasks: list[str] = []
        for client, routes in state["extra"]["routes"].items():
            if int(client) not in local_tasks:
                continue
            for g, task in zip(routes, local_tasks[int(client)], strict=True):
                labels.append(g)
                tasks.append(task)
        return {adapter_name(g): task for g, task in majority(np.asarray(labels), tasks).items()}

    @staticmethod
    def global_cluster_count(state: dict[str, Any]) -> int:
        return len(state["extra"]["global_centroids"])

    @staticmethod
    def local_cluster_routes(state: dict[str, Any], local_counts: dict[int, int]) -> dict[int, list[int]]:
        return {int(c): list(routes) for c, routes in state["extra"]["routes"].items()}

    @staticmethod
    def global_router(state: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
        centroids = np.asarray(state["extra"]["global_centroids"], dtype=np.float32)
        return centroids, [adapter_name(g) for g in range(len(centroids))]

    @staticmethod
    def evaluation_adapters(state: dict[str, Any], client: int, mode: str) -> list[str]:
        """Local mode needs only the adapters the client's local clusters route to."""
        if mode == "local":
            return sorted({adapter_name(g) for g in state["extra"]["routes"][str(client)]})
        return list(state["adapters"])

    def extra_state(self) -> dict[str, Any]:
        return {"routes": {str(c): r for c, r in self.routes.items()},
                "global_centroids": self.global_centroids.tolist()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.routes = {int(c): r for c, r in state["routes"].items()}
        self.global_centroids = np.asarray(state["global_centroids"], dtype=np.float32)

