"""FedCluster: clustered federated learning on the similarity of client updates.

Round 1 is a warm-up: every client trains the shared initial adapter on all its data. The
server takes each client's update (its returned adapter minus the one it was sent, flattened),
L2-normalizes the updates, so that their squared distances are 2 - 2*cosine similarity, and
groups clients with K-Means: K = --global-clusters, or with 'auto' the K of best silhouette over
2..min(k_max, clients - 1) (one group when fewer than 3 clients replied). Each group's adapter
starts as the FedAvg of its members' warm-up adapters; from round 2 on, clients train their
group's adapter and the server averages within each group (weighted by samples). A client
without a warm-up update (it failed in round 1) joins the group of most clients.
Inference: the client's group adapter ('kNN') for every sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedrouter_cli.clustering import best_k, kmeans, silhouette_curve
from fedrouter_cli.federation.inference import InferenceInput, Routing, load_named
from fedrouter_cli.federation.strategies.base import Job, JobResult
from fedrouter_cli.federation.strategies.common_baselines import BaselineStrategy, fedavg, one_adapter
from fedrouter_cli.model.lora import Adapter

WARMUP = "warmup"


def group_name(group: int) -> str:
    return f"k{group:02d}"


def flat_update(returned: Adapter, sent: Adapter) -> np.ndarray:
    keys = sorted(sent)
    return np.concatenate([(returned[k].astype(np.float64) - sent[k].astype(np.float64)).ravel() for k in keys])


def cosine_matrix(updates: np.ndarray) -> np.ndarray:
    unit = updates / np.maximum(np.linalg.norm(updates, axis=1, keepdims=True), 1e-12)
    return unit @ unit.T


def largest_group(groups: dict[int, int]) -> int:
    """The group with most clients (the lowest-numbered one on a tie)."""
    return int(np.argmax(np.bincount(list(groups.values()))))


def group_clients(updates: np.ndarray, wanted: str | int, k_max: int, seed: int) -> np.ndarray:
    """Group label per row of `updates` (clients), by K-Means on the L2-normalized updates."""
    n = len(updates)
    unit = updates / np.maximum(np.linalg.norm(updates, axis=1, keepdims=True), 1e-12)
    if wanted == "auto":
        k = best_k(silhouette_curve(unit, 2, k_max, seed), threshold=-1.0) if n >= 3 else 1
    else:
        k = min(int(wanted), n)
    _, labels = kmeans(unit, k, seed)
    # renumber by first appearance so group names do not depend on K-Means' label order
    order = {label: i for i, label in enumerate(dict.fromkeys(labels.tolist()))}
    return np.asarray([order[label] for label in labels.tolist()], dtype=np.int64)


class FedCluster(BaselineStrategy):
    name = "fedcluster"

    def __init__(self, job) -> None:
        super().__init__(job)
        self.groups: dict[int, int] = {}            # client -> group
        self.similarity: list[list[float]] = []     # cosine similarity of the warm-up updates
        self.similarity_clients: list[int] = []

    def initialize(self) -> None:
        self.adapters = {WARMUP: self.initial}

    def plan(self, round_number: int, client: int) -> list[Job]:
        if not self.groups:  # warm-up (round 1, or until some client has replied)
            return [Job(name=WARMUP, clusters=(), adapter=self.adapters[WARMUP], tag=WARMUP)]
        tag = group_name(self.groups.get(client, largest_group(self.groups)))
        return [Job(name="group", clusters=(), adapter=self.adapters[tag], tag=tag)]

    def combine(self, round_number: int, results: list[JobResult]) -> None:
        warm = sorted((r for r in results if r.job.tag == WARMUP), key=lambda r: r.client)
        if warm:
            self._form_groups(warm)
        self.average_tags([r for r in results if r.job.tag != WARMUP])

    def _form_groups(self, warm: list[JobResult]) -> None:
        updates = np.stack([flat_update(r.adapter, r.job.adapter) for r in warm])
        wanted = self.train.global_clusters
        if wanted == "tasks":  # as many client groups as tasks in the federation
            wanted = self.tasks_k(len(updates))
        labels = group_clients(updates, wanted, self.config.cluster.k_max, self.train.seed)
        self.similarity = np.round(cosine_matrix(updates), 6).tolist()
        self.similarity_clients = [r.client for r in warm]
        self.groups = {r.client: int(g) for r, g in zip(warm, labels)}
        largest = largest_group(self.groups)
        for client in self.local_centroids:
            self.groups.setdefault(client, largest)
        self.adapters = {group_name(g): fedavg([r for r, label in zip(warm, labels) if label == g])
                         for g in sorted(set(labels.tolist()))}

    @staticmethod
    def _client_adapter(state: dict[str, Any], client: int) -> str:
        groups = {int(c): g for c, g in state["extra"]["groups"].items()}
        if groups:
            return group_name(groups.get(client, largest_group(groups)))
        return WARMUP  # evaluated before any grouping (no warm-up reply yet)

    @staticmethod
    def route(inputs: InferenceInput) -> Routing:
        name = FedCluster._client_adapter(inputs.state, inputs.client)
        return one_adapter(name, load_named(inputs.adapters_dir, name), len(inputs.embeddings))

    @staticmethod
    def evaluation_adapters(state: dict[str, Any], client: int, mode: str) -> list[str]:
        return [FedCluster._client_adapter(state, client)]

    @staticmethod
    def local_cluster_routes(state: dict[str, Any], local_counts: dict[int, int]) -> dict[int, list[int]]:
        """Every local cluster of a client belongs to the client's group."""
        return {int(c): [g] * local_counts.get(int(c), 1) for c, g in state["extra"]["groups"].items()}

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "groups": {str(c): g for c, g in sorted(self.groups.items())},
                "similarity": self.similarity, "similarity_clients": self.similarity_clients}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        self.groups = {int(c): int(g) for c, g in state.get("groups", {}).items()}
        self.similarity = state.get("similarity", [])
        self.similarity_clients = state.get("similarity_clients", [])
