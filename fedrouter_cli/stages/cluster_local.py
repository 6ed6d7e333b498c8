"""Stage `cluster-local`: K-Means per client on its train embeddings; centroids and assignments."""

from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np
import pyarrow as pa

from fedrouter_cli.clustering import AUTO_RULE_VERSIONS, K_TOLERANCE, best_k, kmeans, majority, purity, silhouette_curve
from fedrouter_cli.config import Config
from fedrouter_cli.data.partition import client_tasks
from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.rundir import PARTITION_TEXT, RunDir, client_name, fingerprint, read_table, write_json, write_table
from fedrouter_cli.stages.common import StageResult, cache_hit, manifest, staged_outputs
from fedrouter_cli.stages.embed import embed_fingerprint, read_embeddings


def cluster_fingerprint(config: Config) -> str:
    rule = ({"auto_rule": AUTO_RULE_VERSIONS["local"]},) if config.cluster.n_clusters == "auto" else ()
    return fingerprint("cluster-local", embed_fingerprint(config), asdict(config.cluster), *rule)


def centroids_table(centroids: np.ndarray, sizes: list[int], tasks: list[str]) -> pa.Table:
    flat = pa.array(centroids.astype(np.float32).ravel(), type=pa.float32())
    return pa.table({
        "cluster": list(range(len(centroids))),
        "size": sizes,
        "majority_task": tasks,
        "centroid": pa.FixedSizeListArray.from_arrays(flat, centroids.shape[1]),
    })


def read_centroids(path) -> tuple[np.ndarray, list[int], list[str]]:
    table = read_table(path)
    column = table.column("centroid").combine_chunks()
    values = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    return values.reshape(len(table), -1), table.column("size").to_pylist(), table.column("majority_task").to_pylist()


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


def choose_k(points: np.ndarray, config: Config, client: str, held: int | None = None) -> int:
    """K of one client: --n-clusters N; 'tasks' = `held`, the tasks the client holds (the paper's
    rule, no silhouette); 'auto' = silhouette (the largest K within K_TOLERANCE of the best)."""
    wanted = config.cluster.n_clusters
    if wanted == "tasks":
        if held is None:
            raise FedrouterError("--n-clusters tasks needs the tasks of the federation (the partition stage's).")
        return max(1, min(held, len(points)))
    if wanted == "auto":
        scores = silhouette_curve(points, config.cluster.k_min, config.cluster.k_max, config.cluster.seed)
        return best_k(scores, tolerance=K_TOLERANCE)
    if wanted > len(points):
        raise FedrouterError(
            f"--n-clusters {wanted} is larger than client {client}'s {len(points)} train samples; "
            "pass a smaller K or 'auto'."
        )
    return int(wanted)


def run_cluster_local(config: Config, run: RunDir, force: bool = False) -> StageResult:
    embed = run.require("embed")
    fp = cluster_fingerprint(config)
    if hit := cache_hit(run, "cluster-local", fp, force):
        return hit
    started = time.perf_counter()
    partition = run.require("partition")["summary"]
    clients = [client_name(i) for i in range(len(partition["clients"]))]
    data = {c: client_train(run, c) for c in clients}
    held = {c: tasks_held(config, tuple(partition["tasks"]), i) for i, c in enumerate(clients)}
    chosen = {c: choose_k(data[c][2], config, c, held[c]) for c in clients}  # validate all before writing
    report = []
    with staged_outputs(run, "cluster-local") as at:
        for client in clients:
            ids, tasks, vectors = data[client]
            centroids, labels = kmeans(vectors, chosen[client], config.cluster.seed)
            sizes = np.bincount(labels, minlength=len(centroids)).tolist()
            majors = majority(labels, tasks)
            write_table(at(run.centroids_file(client)),
                        centroids_table(centroids, sizes, [majors.get(k, "") for k in range(len(centroids))]))
            write_table(at(run.assignments_file(client)),
                        pa.table({"id": ids, "cluster": labels.tolist(), "task": tasks}))
            report.append({"client": client, "k": len(centroids), "purity": round(purity(labels, tasks), 4),
                           "sizes": sizes})
        seconds = time.perf_counter() - started
        summary = {"purity": round(float(np.mean([r["purity"] for r in report])), 4), "clients": report,
                   "cluster_dir": str(run.stage_dir("cluster-local"))}
        write_json(at(run.manifest_path("cluster-local")),
                   manifest("cluster-local", fp, asdict(config.cluster), {"embed": embed["fingerprint"]},
                            seconds, summary, []))
    return StageResult("cluster-local", False, seconds, summary)
