"""Stage `select-k`: silhouette scores over K, per client (local) or over all local centroids (global)."""

from __future__ import annotations

import statistics
import time
from collections import Counter

import numpy as np
import pyarrow as pa

from fedrouter_cli.clustering import best_global_k, best_k, silhouette_curve
from fedrouter_cli.config import Config
from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.files import write_json, write_table
from fedrouter_cli.fingerprints import select_k_fingerprint, select_k_inputs
from fedrouter_cli.plots import silhouette_plot
from fedrouter_cli.rundir import RunDir
from fedrouter_cli.stages.cluster_local import client_train, read_centroids
from fedrouter_cli.stages.common import (
    Progress,
    StageResult,
    cache_hit,
    manifest,
    no_progress,
    refuse_on_nodes,
    staged_outputs,
)

LEVELS = ("local", "global")


def _curves(config: Config, run: RunDir, level: str, progress: Progress) -> dict[str, dict[int, float]]:
    clients = run.clients()
    k_min, k_max, seed = config.cluster.k_min, config.cluster.k_max, config.cluster.seed
    label = f"select-k {level}"
    if level == "local":
        curves = {}
        for done, client in enumerate(clients):
            progress(label, done, len(clients))
            curves[client] = silhouette_curve(client_train(run, client)[2], k_min, k_max, seed)
        progress(label, len(clients), len(clients))
        return curves
    run.require("cluster-local")
    progress(label, 0, 1)
    saved = [read_centroids(run.centroids_file(c)) for c in clients]
    centroids = np.concatenate([points for points, _, _ in saved])
    # weighted by cluster size, as the server's automatic rule scores them
    sizes = np.concatenate([np.asarray(counts, dtype=np.float64) for _, counts, _ in saved])
    curve = silhouette_curve(centroids, k_min, k_max, seed, sizes)
    progress(label, 1, 1)
    return {"global": curve}


def run_select_k(config: Config, run: RunDir, level: str, force: bool = False,
                 progress: Progress = no_progress) -> StageResult:
    if level not in LEVELS:
        raise FedrouterError(f"--level must be local or global, got {level!r}.")
    run.require("embed" if level == "local" else "cluster-local")
    refuse_on_nodes(config, "select-k (it reads the clients' embeddings)")
    fp = select_k_fingerprint(config, level)
    upstream, settings = select_k_inputs(config, level)
    if hit := cache_hit(run, "select-k", fp, force, level):
        return hit
    started = time.perf_counter()
    curves = _curves(config, run, level, progress)
    best = {name: best_k(scores) for name, scores in curves.items() if scores}
    if not best:
        raise FedrouterError("Too few points to score any K; lower --k-min/--k-max or use more samples.")
    ks = sorted({k for scores in curves.values() for k in scores})
    mean = {k: statistics.fmean([s[k] for s in curves.values() if k in s]) for k in ks}
    std = {k: statistics.pstdev([s[k] for s in curves.values() if k in s]) for k in ks}
    chosen = Counter(best.values()).most_common(1)[0][0] if level == "local" else best["global"]
    # the server's automatic rule, which trains, can pick a K below the highest score
    rule_k = best_global_k(curves["global"]) if level == "global" else None
    rows = [(name, k, score) for name, scores in curves.items() for k, score in sorted(scores.items())]
    with staged_outputs(run, "select-k", level) as at:
        scores_path, plot_path = run.silhouette_files(level)
        write_table(at(scores_path), pa.table({
            "name": [r[0] for r in rows], "k": [r[1] for r in rows], "silhouette": [r[2] for r in rows]}))
        if rule_k is not None:
            silhouette_plot(at(plot_path), curves, f"global silhouette: the rule picks K = {rule_k}"
                            f" (highest at K = {chosen})", marked=rule_k, marked_label=f"the rule's K = {rule_k}")
        else:
            silhouette_plot(at(plot_path), curves, f"local silhouette (most clients' best K = {chosen})")
        seconds = time.perf_counter() - started
        summary = {
            "level": level, "best_k": chosen, "best_per_client": best if level == "local" else {},
            # the argmax keeps a task's sub-clusters apart; the server's automatic rule is what trains
            **({"server_k": rule_k} if rule_k is not None else {}),
            "scores": {str(k): {"mean": round(mean[k], 4), "std": round(std[k], 4)} for k in ks},
            "scores_path": str(scores_path), "plot": str(plot_path),
        }
        write_json(at(run.manifest_path("select-k", level)),
                   manifest("select-k", fp, settings, {"upstream": upstream}, seconds, summary, []))
    return StageResult("select-k", False, seconds, summary)
