"""FedCluster: clustered federated learning on the similarity of client updates, as the FedRouter
authors ran it (their fed_global.py and fed_clustered.py).

Round 1 is a FedAvg warm-up: every client trains the shared initial adapter on all its data and
the server averages the replies (weighted by samples). The server then compares the clients by
their warm-up update of the last LoRA-B tensor (the last layer's last projection; returned minus
sent, flattened): the cosine similarity of every pair gives each client a row of the similarity
matrix, and Ward linkage over the Euclidean distances between those rows, cut at --clusters
groups, gives the groups (with 'auto', the K of best silhouette over 2..min(k_max, clients - 1)).
The grouping is made once. Every group starts from the warm-up's FedAvg; from round 2 on each
client trains its group's adapter and the server takes the plain mean within each group (an
empty group keeps its adapter). A client without a warm-up update (it failed in round 1) joins
the group of most clients. Inference: the client's group adapter ('kNN') for every sample.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from fedrouter_cli.federation.inference import InferenceInput, Routing
from fedrouter_cli.federation.strategies.base import Job, JobResult
from fedrouter_cli.federation.strategies.common_baselines import (
    BaselineStrategy,
    fedavg,
    one_adapter,
)
from fedrouter_cli.model.lora import Adapter, average

WARMUP = "warmup"


def group_name(group: int) -> str:
    return f"k{group:02d}"


PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def last_lora_b_key(keys) -> str:
    """The last LoRA-B tensor in the model's order (the highest layer; within it, the last
    projection): the tensor the authors compare clients by."""
    def place(key: str) -> tuple[int, int, str]:
        layer = re.search(r"\.layers\.(\d+)\.", key)
        module = next((i for i, p in enumerate(PROJECTIONS) if f".{p}." in key), -1)
        return (int(layer.group(1)) if layer else -1, module, key)

    return max((k for k in keys if "lora_B" in k), key=place)


def last_b_update(returned: Adapter, sent: Adapter) -> np.ndarray:
    key = last_lora_b_key(sent)
    return (returned[key].astype(np.float64) - sent[key].astype(np.float64)).ravel()


def cosine_matrix(updates: np.ndarray) -> np.ndarray:
    unit = updates / np.maximum(np.linalg.norm(updates, axis=1, keepdims=True), 1e-12)
    return unit @ unit.T


def largest_group(groups: dict[int, int]) -> int:
    """The group with most clients (the lowest-numbered one on a tie)."""
    return int(np.argmax(np.bincount(list(groups.values()))))


def ward_labels(similarity: np.ndarray, k: int) -> np.ndarray:
    """Ward linkage over the Euclidean distances between the similarity matrix's rows, cut at k."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    if k <= 1 or len(similarity) < 2:
        return np.zeros(len(similarity), dtype=np.int64)
    tree = linkage(pdist(np.asarray(similarity, dtype=np.float64)), method="ward")
    return fcluster(tree, t=min(k, len(similarity)), criterion="maxclust").astype(np.int64)


def group_clients(similarity: np.ndarray, wanted: str | int, k_max: int) -> np.ndarray:
    """Group label per client (0-based, numbered by first appearance) from their cosine-similarity
    matrix; wanted: a number of groups or 'auto' (the best silhouette of the similarity rows)."""
    from sklearn.metrics import silhouette_score

    n = len(similarity)
    if wanted == "auto":
        scores = {}
        for k in range(2, min(k_max, n - 1) + 1):
            labels = ward_labels(similarity, k)
            if len(set(labels.tolist())) > 1:
                scores[k] = silhouette_score(similarity, labels)
        k = max(scores, key=lambda k: (scores[k], -k)) if scores else 1
    else:
        k = min(int(wanted), n)
    labels = ward_labels(similarity, k)
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

    @staticmethod
    def fingerprint_parts(train) -> tuple[dict[str, Any], ...]:
        return ({"grouping": "authors-ward-last-b"},)  # runs grouped by K-Means on whole updates are not hits

    def combine(self, round_number: int, results: list[JobResult]) -> None:
        warm = sorted((r for r in results if r.job.tag == WARMUP), key=lambda r: r.client)
        if warm:
            self._form_groups(warm)
        # the authors' plain mean within a group (not weighted by samples)
        for tag, group in self.weighted_groups([r for r in results if r.job.tag != WARMUP]).items():
            self.adapters[tag] = average([r.adapter for r in group], [1.0] * len(group))

    def _form_groups(self, warm: list[JobResult]) -> None:
        updates = np.stack([last_b_update(r.adapter, r.job.adapter) for r in warm])
        wanted = self.train.global_clusters
        if wanted == "tasks":  # as many client groups as tasks in the federation
            wanted = self.tasks_k(len(updates))
        similarity = cosine_matrix(updates)
        labels = group_clients(similarity, wanted, self.config.cluster.k_max)
        self.similarity = np.round(similarity, 6).tolist()
        self.similarity_clients = [r.client for r in warm]
        self.groups = {r.client: int(g) for r, g in zip(warm, labels)}
        largest = largest_group(self.groups)
        for client in self.local_centroids:
            self.groups.setdefault(client, largest)
        warmed = fedavg(warm)  # every group starts from the warm-up's FedAvg
        self.adapters = {group_name(g): {k: v.copy() for k, v in warmed.items()} for g in sorted(set(labels.tolist()))}

    @staticmethod
    def _client_adapter(state: dict[str, Any], client: int) -> str:
        groups = {int(c): g for c, g in state["extra"]["groups"].items()}
        if groups:
            return group_name(groups.get(client, largest_group(groups)))
        return WARMUP  # evaluated before any grouping (no warm-up reply yet)

    @staticmethod
    def route(inputs: InferenceInput) -> Routing:
        name = FedCluster._client_adapter(inputs.state, inputs.client)
        return one_adapter(name, inputs.saved(name), len(inputs.embeddings))

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
