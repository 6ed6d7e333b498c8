"""Stage `cluster-local`: K-Means per client on its train embeddings; centroids and assignments."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from fedrouter_cli.clustering import (
    STABILITY_THRESHOLD,
    kmeans,
    majority,
    purity,
    stability_curve,
    stable_k,
)
from fedrouter_cli.config import Config
from fedrouter_cli.data.partition import client_tasks
from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.files import read_table, write_json, write_table
from fedrouter_cli.fingerprints import cluster_fingerprint
from fedrouter_cli.rundir import PARTITION_TEXT, RunDir
from fedrouter_cli.stages.common import (
    Progress,
    StageResult,
    cache_hit,
    manifest,
    no_progress,
    record_on_nodes,
    staged_outputs,
)
from fedrouter_cli.vectors import read_embeddings, read_vectors, vector_column


@dataclass
class LocalClusters:
    """One client's K-Means clusters of its train rows, as the server's stage and a node's own
    `deploy prepare-node` both make and write them."""

    ids: list[str]
    tasks: list[str]
    centroids: np.ndarray
    labels: np.ndarray

    @property
    def sizes(self) -> list[int]:
        return np.bincount(self.labels, minlength=len(self.centroids)).tolist()

    @property
    def purity(self) -> float | None:
        """Share of rows whose cluster's majority task is their own; None without task labels."""
        return round(purity(self.labels, self.tasks), 4) if any(self.tasks) else None

    def centroids_table(self) -> pa.Table:
        majors = majority(self.labels, self.tasks)
        return centroids_table(self.centroids, self.sizes, [majors.get(k, "") for k in range(len(self.centroids))])

    def assignments_table(self) -> pa.Table:
        return pa.table({"id": self.ids, "cluster": self.labels.tolist(), "task": self.tasks})


def cluster_client(ids: list[str], tasks: list[str], points: np.ndarray, k: int, seed: int) -> LocalClusters:
    centroids, labels = kmeans(points, k, seed)
    return LocalClusters(ids, tasks, centroids, labels)


def centroids_table(centroids: np.ndarray, sizes: list[int], tasks: list[str]) -> pa.Table:
    return pa.table({
        "cluster": list(range(len(centroids))),
        "size": sizes,
        "majority_task": tasks,
        "centroid": vector_column(centroids),
    })


def read_centroids(path) -> tuple[np.ndarray, list[int], list[str]]:
    table = read_table(path)
    return read_vectors(table.column("centroid")), table.column("size").to_pylist(), table.column("majority_task").to_pylist()


def client_train(run: RunDir, client: str) -> tuple[list[str], list[str], np.ndarray]:
    """ids, task labels and embeddings of one client's train rows, checked to line up."""
    rows = read_table(run.partition_file(client, "train"), PARTITION_TEXT)
    ids, vectors = read_embeddings(run.embedding_file(client, "train"))
    if ids != rows.column("id").to_pylist():
        raise FedrouterError(f"Embeddings of {client} do not match its partition; rerun `fedrouter embed --force`.")
    return ids, rows.column("task").to_pylist(), vectors


def tasks_held(config: Config, federation_tasks: tuple[str, ...], index: int) -> int:
    """How many tasks client `index` holds in the scenario: single 1, dual 2, all every task."""
    return len(client_tasks(config.data.scenario, tuple(federation_tasks), config.data.clients, index))


def choose_k(points: np.ndarray, config: Config, client: str, held: int | None = None
             ) -> tuple[int, dict[int, float]]:
    """K of one client, with the stability per K that chose it ('auto'; empty otherwise):
    --n-clusters N; 'tasks' = `held`, the tasks the client holds (the paper's rule, no scan);
    'auto' = the largest K whose clustering is stable on resamples of the client's rows
    (clustering.STABILITY_THRESHOLD says why), 1 when no split is."""
    wanted = config.cluster.n_clusters
    if wanted == "tasks":
        if held is None:
            raise FedrouterError("--n-clusters tasks needs task labels, and these records have none; pass "
                                 "--task-column, or --n-clusters auto (the stability rule, which needs none).")
        return max(1, min(held, len(points))), {}
    if wanted == "auto":
        curve = stability_curve(points, config.cluster.k_min, config.cluster.k_max, config.cluster.seed,
                                stop_at=STABILITY_THRESHOLD)
        return stable_k(curve), curve
    if wanted > len(points):
        raise FedrouterError(
            f"--n-clusters {wanted} is larger than client {client}'s {len(points)} train samples; "
            "pass a smaller K or 'auto'."
        )
    return int(wanted), {}


def stability_record(curve: dict[int, float]) -> dict:
    """The automatic rule's stability per K it scanned, from k-max down to the K it took (says why a
    client got its K)."""
    return {"stability": {str(k): round(v, 4) for k, v in curve.items()}} if curve else {}


def run_cluster_local(config: Config, run: RunDir, force: bool = False, progress: Progress = no_progress
                      ) -> StageResult:
    embed = run.require("embed")
    fp = cluster_fingerprint(config)
    if hit := cache_hit(run, "cluster-local", fp, force):
        return hit
    if config.data.on_nodes:
        return record_on_nodes(run, "cluster-local", fp, asdict(config.cluster), {})
    started = time.perf_counter()
    partition = run.require("partition")["summary"]
    clients = run.clients()
    data = {c: client_train(run, c) for c in clients}
    if config.data.own_records:
        # one's own records: the tasks each client holds are whatever its rows are, not a scenario's
        held = {c: len(set(data[c][1]) - {""}) or None for c in clients}
    else:
        held = {c: tasks_held(config, tuple(partition["tasks"]), i) for i, c in enumerate(clients)}
    chosen, curves = {}, {}
    for done, client in enumerate(clients):  # every client's K, and so every bad setting, before any write
        progress("cluster-local", done, len(clients))
        chosen[client], curves[client] = choose_k(data[client][2], config, client, held[client])
    report = []
    with staged_outputs(run, "cluster-local") as at:
        for client in clients:
            ids, tasks, vectors = data[client]
            clusters = cluster_client(ids, tasks, vectors, chosen[client], config.cluster.seed)
            write_table(at(run.centroids_file(client)), clusters.centroids_table())
            write_table(at(run.assignments_file(client)), clusters.assignments_table())
            report.append({"client": client, "k": len(clusters.centroids), "purity": clusters.purity,
                           "sizes": clusters.sizes, **stability_record(curves[client])})
        progress("cluster-local", len(clients), len(clients))
        seconds = time.perf_counter() - started
        purities = [r["purity"] for r in report if r["purity"] is not None]
        summary = {"purity": round(float(np.mean(purities)), 4) if purities else None, "clients": report,
                   "cluster_dir": str(run.stage_dir("cluster-local"))}
        write_json(at(run.manifest_path("cluster-local")),
                   manifest("cluster-local", fp, asdict(config.cluster), {"embed": embed["fingerprint"]},
                            seconds, summary, []))
    return StageResult("cluster-local", False, seconds, summary)
