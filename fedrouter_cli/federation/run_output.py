"""Everything one federation run writes to <run-dir>/simulate/<alg>/, whichever Flower engine runs
it. `fedrouter simulate` (simulation engine) and the deployment ServerApp (`flwr run`) both open
the folder here, their strategy saves and restores rounds here, and both finish the run here with
the same summary and manifest; the layout itself belongs to `rundir.FederationDir`."""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fedrouter_cli.clustering import purity
from fedrouter_cli.config import Config, TrainConfig
from fedrouter_cli.errors import CorruptArtifactError, FederationStopped, FedrouterError
from fedrouter_cli.files import atomic_dir, read_json, write_json, write_table
from fedrouter_cli.manifests import StageResult, manifest
from fedrouter_cli.model.lora import Adapter, load_adapter, save_adapter
from fedrouter_cli.rundir import ROUND_ADAPTERS, ROUND_STATE, FederationDir, RunDir


def open_output(run: RunDir, alg: str, fp: str, force: bool, clients: list[str]) -> FederationDir:
    """The run's output folder; a different run (or `force`) starts over, the same one resumes."""
    out = run.federation(alg)
    previous = read_json(out.run_file)["fingerprint"] if out.run_file.exists() else None
    # saved rounds without the metrics table were not written by a sound run (older versions
    # "finished" rounds nobody trained in); they cannot be trusted, so start over
    untrusted = bool(out.saved_rounds()) and not out.metrics_file.exists()
    if force or previous != fp or untrusted:
        run.invalidate("simulate", alg)
        shutil.rmtree(out.root, ignore_errors=True)
        for client in clients:
            shutil.rmtree(run.node(client).state_dir(alg), ignore_errors=True)
    write_json(out.run_file, {"fingerprint": fp})
    return out


def pick_round(run: RunDir, alg: str, wanted: int) -> int:
    """The saved round of `alg` to use: the last one for 0, else `wanted` if it was saved."""
    done = run.federation(alg).saved_rounds()
    if not done:
        raise FedrouterError(f"The run dir has no rounds of {alg}; run `fedrouter simulate --alg {alg}` first.")
    if wanted == 0:
        return done[-1]
    if wanted not in done:
        raise FedrouterError(f"Round {wanted} of {alg} does not exist; completed rounds are {done[0]}..{done[-1]}.")
    return wanted


SAT_OUT = "sat-out"  # a metrics row's status for a client not sampled in that round


def failed(status: str) -> bool:
    """A metrics row that is neither a trained job nor a client that sat the round out."""
    return status not in ("ok", SAT_OUT)


def save_round(out: FederationDir, round_number: int, algorithm: str, adapters: dict[str, Adapter],
               extra: dict[str, Any], rows: list[dict[str, Any]], train: TrainConfig, model: str,
               token_budgets: dict[str, int] | None = None, turns: dict[int, int] | None = None) -> None:
    """Save a round's metrics rows, then its adapters and state.json; the round counts once its
    folder is in place, so a crash in between leaves the previous round as the last one.
    token_budgets: each adapter's new-token budget from its trainers' responses (kept in state.json
    beside the adapters, for generation)."""
    table = pa.Table.from_pylist(rows) if rows else None
    if out.metrics_file.exists():
        old = pq.read_table(out.metrics_file)
        old = old.filter(pa.compute.less(old["round"], round_number))  # a redone round replaces its rows
        # promote: metrics written by an older version may lack newer columns
        table = pa.concat_tables([old, table], promote_options="default") if table is not None else old
    if table is not None:
        write_table(out.metrics_file, table)
    with atomic_dir(out.round(round_number)) as tmp:
        for name, adapter in adapters.items():
            save_adapter(tmp / ROUND_ADAPTERS / name, adapter, train, model)
        state = {"round": round_number, "algorithm": algorithm, "adapters": sorted(adapters), "extra": extra}
        if token_budgets:
            state["token_budgets"] = dict(sorted(token_budgets.items()))
        if turns is not None:  # client sampling: the rounds each client has trained in so far
            state["turns"] = {str(c): n for c, n in sorted(turns.items())}
        write_json(tmp / ROUND_STATE, state)


def load_round(out: FederationDir, round_number: int) -> tuple[dict[str, Any], dict[str, Adapter]]:
    """A saved round's state and adapters."""
    state = read_json(out.state_file(round_number))
    return state, {name: load_adapter(out.adapters_dir(round_number) / name) for name in state["adapters"]}


def finish(config: Config, run: RunDir, out: FederationDir, fp: str, started: float, strategy: type,
           execution: dict | None = None) -> StageResult:
    """Check the rounds, summarise them and write the simulate manifest; `strategy` is the
    algorithm's Strategy class, which reads its own saved state."""
    alg = config.train.alg
    cluster = run.require("cluster-local")
    rounds = out.saved_rounds()
    completed = rounds[-1] if rounds else 0
    if completed < config.train.rounds:
        raise FederationStopped(f"the federation stopped after {completed} of {config.train.rounds} rounds")
    if not out.metrics_file.exists():
        raise CorruptArtifactError(f"{out.root} has {completed} saved rounds but no metrics.parquet, so it was not "
                                   "written by a complete run; rerun `fedrouter simulate` with --force to train it again.")
    state = read_json(out.state_file(completed))
    metrics = pq.read_table(out.metrics_file).to_pylist()
    seconds = time.perf_counter() - started
    summary = {
        "alg": alg, "variant": config.train.variant, "rounds_completed": completed,
        "global_clusters": strategy.global_cluster_count(state),
        "global_purity": global_purity(run, run.clients(), strategy, state),
        "bytes_up": int(sum(r["bytes_up"] for r in metrics)),
        "bytes_down": int(sum(r["bytes_down"] for r in metrics)),
        "failed_jobs": int(sum(failed(r["status"]) for r in metrics)),
        "train_seconds": round(float(sum(r["train_seconds"] for r in metrics)), 3),
        "loss_by_round": _loss_by_round(metrics),
        "client_peak_rss_mb_by_round": _peak_rss_by_round(metrics),
        "adapters_dir": str(out.adapters_dir(completed)),
        "init_from": read_json(out.starting_point_file) if out.starting_point_file.exists() else None,
        "metrics_path": str(out.metrics_file),
        **(execution or {}),  # where the engine ran the clients (not part of the fingerprint)
    }
    run.write_manifest("simulate", manifest("simulate", fp, asdict(config.train),
                                            {"cluster-local": cluster["fingerprint"]}, seconds, summary, []), alg)
    return StageResult("simulate", False, seconds, summary)


def global_purity(run: RunDir, clients: list[str], strategy: type, state: dict) -> float | None:
    """Share of local centroids whose global cluster (as the algorithm's Strategy class routes
    them) is mostly made of their own task."""
    if not all(run.centroids_file(client).exists() for client in clients):
        return None  # a deployment server need not hold the clients' files
    majorities = [pq.read_table(run.centroids_file(client)).column("majority_task").to_pylist() for client in clients]
    routes = strategy.local_cluster_routes(state, {i: len(m) for i, m in enumerate(majorities)})
    if not routes:
        return None
    tasks, labels = [], []
    for index, majority in enumerate(majorities):
        tasks.extend(majority)
        labels.extend(routes.get(index, [-1] * len(majority)))
    if not tasks or "" in tasks:
        return None
    return purity(np.asarray(labels), tasks)  # local centroids are the points, global clusters the labels


def _loss_by_round(metrics: list[dict]) -> dict[str, dict[str, float]]:
    """Mean training loss per adapter (tag) and round, for the summary table."""
    sums: dict[str, dict[int, list[float]]] = {}
    for row in metrics:
        if row["status"] == "ok":
            sums.setdefault(row["tag"], {}).setdefault(row["round"], []).append(row["loss"])
    return {tag: {str(r): round(float(np.mean(v)), 4) for r, v in sorted(rounds.items())}
            for tag, rounds in sorted(sums.items())}


def _peak_rss_by_round(metrics: list[dict]) -> dict[str, float]:
    """Largest client worker peak RSS reported in each round (flat = memory does not grow)."""
    peaks: dict[int, float] = {}
    for row in metrics:
        value = row.get("client_peak_rss_mb")
        if value is not None and value == value:  # skip missing and NaN (failed jobs)
            peaks[row["round"]] = max(peaks.get(row["round"], 0.0), float(value))
    return {str(r): round(v, 1) for r, v in sorted(peaks.items())}
