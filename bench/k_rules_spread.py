"""A candidate automatic global K rule, measured: silhouette that counts each local cluster's spread.

The server sees only local centroids, so its silhouette treats each as a point with no spread, and
a task that clients split into tight sub-clusters looks like several tasks. This candidate adds
each local cluster's mean squared distance to its centroid (which a client could send with its
centroid and size): a local cluster m with spread v, own global centroid c and nearest other c',
scores (b - a) / max(a, b) with a = sqrt(|m - c|^2 + v), b = sqrt(|m - c'|^2 + v), weighted by
size; K = the argmax over k-min..k-max. Compared with the plain centroid silhouette (its argmax
and this tool's rule, clustering.best_global_k) under both local rules, on the raw tasks and the
two FLAN sets (cpu preset sizes, minilm+chars, 8 clients x 150 train rows).

    python bench/k_rules_spread.py [--sets raw,flan-a,flan-b] [--scenarios single,dual,all]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402
from k_rules import embedded_runs  # noqa: E402


def spread_silhouette(means: np.ndarray, sizes: np.ndarray, spreads: np.ndarray, k: int, seed: int
                      ) -> tuple[float, np.ndarray]:
    from fedrouter_cli.clustering import kmeans

    centroids, labels = kmeans(means, k, seed)
    distances = ((means[:, None, :] - centroids[None]) ** 2).sum(-1)
    rows = np.arange(len(means))
    own = distances[rows, labels]
    distances[rows, labels] = np.inf
    a, b = np.sqrt(own + spreads), np.sqrt(distances.min(1) + spreads)
    return float((sizes * (b - a) / np.maximum(a, b)).sum() / sizes.sum()), labels


def local_clusters(run, clients: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Every client's local cluster means, sizes, spreads and majority tasks."""
    from fedrouter_cli.clustering import majority
    from fedrouter_cli.files import read_table
    from fedrouter_cli.rundir import PARTITION_TEXT, client_name
    from fedrouter_cli.vectors import read_embeddings

    means, sizes, spreads, tasks_of = [], [], [], []
    for c in range(clients):
        name = client_name(c)
        tasks = read_table(run.partition_file(name, "train"), PARTITION_TEXT).column("task").to_pylist()
        _, vectors = read_embeddings(run.embedding_file(name, "train"))
        labels = read_table(run.assignments_file(name)).column("cluster").to_numpy()
        majors = majority(labels, tasks)
        for k in range(labels.max() + 1):
            members = vectors[labels == k]
            mean = members.mean(0)
            means.append(mean)
            sizes.append(len(members))
            spreads.append(float(((members - mean) ** 2).sum(1).mean()))
            tasks_of.append(majors[k])
    return np.stack(means), np.asarray(sizes, dtype=float), np.asarray(spreads), tasks_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="raw,flan-a,flan-b")
    parser.add_argument("--scenarios", default="single,dual,all")
    args = parser.parse_args()

    from fedrouter_cli.clustering import best_global_k, kmeans, purity, silhouette_curve
    from fedrouter_cli.stages.cluster_local import run_cluster_local

    rows = []
    for set_name, scenario, _, config, run, _, _ in embedded_runs(args.sets.split(","), args.scenarios.split(","),
                                                                  ["minilm+chars"]):
        for local_rule in ("tasks", "auto"):
            cfg = replace(config, cluster=replace(config.cluster, n_clusters=local_rule))
            run_cluster_local(cfg, run, force=True)
            means, sizes, spreads, tasks_of = local_clusters(run, cfg.data.clients)
            seed, k_min, k_max = cfg.cluster.seed, cfg.cluster.k_min, cfg.cluster.k_max
            plain = silhouette_curve(means, k_min, k_max, seed)
            spread = {k: spread_silhouette(means, sizes, spreads, k, seed)[0] for k in plain}
            picks = {"plain_argmax": max(plain, key=plain.get), "tool_rule": best_global_k(plain),
                     "spread_argmax": max(spread, key=spread.get)}
            row = {"set": set_name, "scenario": scenario, "local_rule": local_rule,
                   "local_clusters": len(means), "tasks": len(config.data.tasks),
                   "mean_spread": round(float(spreads.mean()), 3),
                   **{f"{name}_k": k for name, k in picks.items()},
                   **{f"{name}_purity": round(purity(kmeans(means, k, seed)[1], tasks_of), 3)
                      for name, k in picks.items()},
                   "spread_curve": {str(k): round(v, 4) for k, v in spread.items()}}
            rows.append(row)
            print(row, file=sys.stderr)
    write_result("k_rules_spread", {"command": "python bench/k_rules_spread.py", "rows": rows})


if __name__ == "__main__":
    main()
