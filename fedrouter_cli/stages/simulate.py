"""Stage `simulate`: run an algorithm on Flower's simulation engine, one virtual node per client."""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from fedrouter_cli.clustering import AUTO_RULE_VERSIONS, purity
from fedrouter_cli.config import Config
from fedrouter_cli.errors import CorruptArtifactError, FederationStopped, FedrouterError
from fedrouter_cli.federation.node import NODE_FILES
from fedrouter_cli.federation.strategies import STRATEGIES
from fedrouter_cli.federation.strategies.base import FederationJob
from fedrouter_cli.model.device import (Placement, check_4bit, check_gpu_share, client_gpu_bytes, free_gpu_bytes,
                                        gpu_workers, resolve_device, weight_bytes)
from fedrouter_cli.rundir import (PARTITION_TEXT, RunDir, client_name, fingerprint, read_json, read_table, round_dir,
                                  saved_rounds, write_json)
from fedrouter_cli.stages.cluster_local import cluster_fingerprint
from fedrouter_cli.stages.common import Progress, StageResult, manifest, no_progress, cache_hit


def model_settings(config: Config) -> dict:
    """The model settings a result depends on. The device is left out: where a run trained (a GPU in
    bf16 or the CPU in fp32) is how it was computed, like --workers, not what was asked; a run made
    on a GPU stays usable (evaluate, report, serve) on a CPU machine and the reverse. Each stage's
    manifest records the device and dtype it ran with."""
    return {k: v for k, v in asdict(config.model).items() if k != "device"}


def simulate_fingerprint(config: Config) -> str:
    # privacy joins the fingerprint only when on, so runs made before it existed stay cached
    privacy = (asdict(config.privacy),) if config.privacy.enabled else ()
    train = asdict(config.train)
    if not train["lr_floor"]:  # likewise the schedule floor: runs without one keep their fingerprint
        del train["lr_floor"]
    # an automatic server-side K joins with its rule's version (clustering.AUTO_RULE_VERSIONS)
    rule = ({"auto_rule": AUTO_RULE_VERSIONS["global"]},) if config.train.global_clusters == "auto" else ()
    return fingerprint("simulate", cluster_fingerprint(config), train, model_settings(config), *privacy, *rule)


def check_privacy(config: Config) -> None:
    if config.privacy.centroid_epsilon and not config.embed.normalized:
        raise FedrouterError("--centroid-epsilon needs unit-norm embeddings to bound their sensitivity, and "
                             "--embedder base is not normalized; use --embedder minilm+chars (the default).")


def check_request(config: Config, gpus_per_client: float = 0.0) -> Placement:
    """Refuse what this run cannot do before any work (privacy that would not hold, CUDA-only options
    without CUDA) and return where its clients train."""
    check_privacy(config)
    placement = resolve_device(config.model.device)
    check_gpu_share(gpus_per_client, placement)
    if config.model.load_in_4bit:
        check_4bit(placement)
    return placement


def prepare_nodes(run: RunDir, clients: list[str]) -> None:
    """Give each client its own folder: the only files its Flower node reads."""
    for client in clients:
        folder = run.client_dir(client)
        folder.mkdir(parents=True, exist_ok=True)
        sources = {"train.parquet": run.partition_file(client, "train"),
                   "assignments.parquet": run.assignments_file(client),
                   "centroids.parquet": run.centroids_file(client)}
        for name in NODE_FILES:
            shutil.copyfile(sources[name], folder / name)


def global_purity(run: RunDir, clients: list[str], alg: str, state: dict) -> float | None:
    """Share of local centroids whose global cluster (as the algorithm routes them) is mostly made
    of their own task."""
    if not all(run.centroids_file(client).exists() for client in clients):
        return None  # a deployment server need not hold the clients' files
    majorities = [pq.read_table(run.centroids_file(client)).column("majority_task").to_pylist() for client in clients]
    routes = STRATEGIES[alg].local_cluster_routes(state, {i: len(m) for i, m in enumerate(majorities)})
    if not routes:
        return None
    tasks, labels = [], []
    for index, majority in enumerate(majorities):
        tasks.extend(majority)
        labels.extend(routes.get(index, [-1] * len(majority)))
    if not tasks or "" in tasks:
        return None
    return purity(np.asarray(labels), tasks)  # local centroids are the points, global clusters the labels


def _quiet_flower() -> None:
    """Flower logs every round at INFO, warns that run_simulation is deprecated (it still is the
    offline way to use the simulation engine) and prints a Ray traceback for each failed client;
    keep the terminal for our own progress and one-line failure reports (all of it with --debug)."""
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    level = logging.ERROR if os.environ.get("FEDROUTER_DEBUG") == "1" else logging.CRITICAL
    for name in ("flwr", "ray"):
        logging.getLogger(name).setLevel(level)


def parallel_workers(requested: int, clients: int, model_bytes: int, cpus: int | None = None,
                     available_bytes: int | None = None) -> tuple[int, int]:
    """How many clients train at once and with how many torch threads each.

    0 = auto: one client per core, as many as memory allows (each worker holds its own copy of the
    model plus activations, ~4x the weights). Two single-threaded clients train ~1.3x faster on
    2 cores than one client with 2 threads: small matrices do not keep two threads busy.
    """
    cpus = cpus or os.cpu_count() or 1
    if requested < 0:
        raise FedrouterError(f"--workers must be 0 (auto) or a positive number, got {requested}.")
    if requested == 0:
        if available_bytes is None:
            import psutil

            available_bytes = psutil.virtual_memory().available
        fits = max(1, int(0.7 * available_bytes // max(4 * model_bytes, 1)))
        requested = min(cpus, fits)
    workers = max(1, min(requested, clients))
    return workers, max(1, cpus // workers)


def simulation_resources(placement: Placement, clients: int, model, config: Config, workers: int = 0,
                         gpus_per_client: float = 0.0, free_bytes: list[int] | None = None) -> tuple[int, int, dict]:
    """Clients training at once, torch threads each, and Flower's backend_config for them.

    On the CPU: one client per core as memory allows (parallel_workers). On CUDA: as many clients
    per GPU as their memory fits (or the --gpus-per-client share asked), each with that share of a
    GPU as its Ray resource, so Ray places them on the GPUs.
    """
    parameters = sum(p.numel() for p in model.parameters())
    check_gpu_share(gpus_per_client, placement)
    if not placement.is_cuda:
        model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        count, threads = parallel_workers(workers, clients, model_bytes)
        resources = {"num_cpus": 1, "num_gpus": 0.0}
    else:
        text = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        hidden = int(getattr(text, "hidden_size", 0) or 0)
        layers = int(getattr(text, "num_hidden_layers", 0) or 0)
        need = client_gpu_bytes(weight_bytes(parameters, placement, config.model.load_in_4bit),
                                config.train.batch_size, config.train.max_length, hidden, layers, placement)
        count, share = gpu_workers(clients, need, free_gpu_bytes() if free_bytes is None else free_bytes,
                                   gpus_per_client, workers)
        threads = max(1, (os.cpu_count() or 1) // count)
        resources = {"num_cpus": 1, "num_gpus": share}
    # Ray runs as many clients at once as its CPUs hold client_resources: `count` of them
    backend = {"client_resources": resources,
               "init_args": {"num_cpus": count, "include_dashboard": False, "log_to_driver": False}}
    return count, threads, backend


def run_simulate(config: Config, run: RunDir, force: bool = False, progress: Progress = no_progress,
                 workers: int = 0, gpus_per_client: float = 0.0) -> StageResult:
    run.require("cluster-local")
    alg = config.train.alg
    placement = check_request(config, gpus_per_client)
    fp = simulate_fingerprint(config)
    if hit := cache_hit(run, "simulate", fp, force, alg):
        return hit
    from fedrouter_cli.federation.server_app import build_server_app
    from fedrouter_cli.model.lora import initial_adapter, peft_model

    started = time.perf_counter()
    clients = run_clients(run)
    for client in clients:  # a corrupt partition file fails here, in one sentence, before anything is written
        read_table(run.partition_file(client, "train"), PARTITION_TEXT)
    out = open_output(run, alg, fp, force, clients)
    prepare_nodes(run, clients)
    # the server's copy (initial adapters) stays on the CPU in fp32; loading it first also converts
    # the default model before the workers start
    model, _ = peft_model(config.model.model, config.train)
    workers, threads, backend_config = simulation_resources(placement, len(clients), model, config, workers,
                                                            gpus_per_client)
    job = FederationJob(config=config, out_dir=out, num_nodes=len(clients),
                        initial_adapter=lambda seed: initial_adapter(config.model.model, config.train, seed),
                        progress=progress, torch_threads=threads,
                        tasks=tuple(run.require("partition")["summary"]["tasks"]))
    errors: list[BaseException] = []
    os.environ["FEDROUTER_NODES_ROOT"] = str(run.stage_dir("nodes"))
    run_engine(build_server_app(job, STRATEGIES[alg], errors), len(clients), backend_config, errors)
    return finish_simulation(config, run, out, fp, started,
                             {**placement.describe(), "parallel_clients": workers,
                              "gpus_per_client": backend_config["client_resources"]["num_gpus"]})


def run_engine(server_app, num_supernodes: int, backend_config: dict, errors: list[BaseException]) -> None:
    """Flower's simulation engine with this package's ClientApp; the ServerApp's own exception
    (collected in `errors`) is raised as itself, an engine failure as FederationStopped."""
    from flwr.simulation import run_simulation

    from fedrouter_cli.federation.client_app import app as client_app

    _quiet_flower()
    try:
        run_simulation(server_app=server_app, client_app=client_app, num_supernodes=num_supernodes,
                       backend_config=backend_config)
    except RuntimeError as exc:  # Flower wraps every failure in "An error was encountered"; name the cause
        if errors:
            raise errors[0] from exc
        cause = exc.__cause__ or exc
        raise FederationStopped(f"Flower's simulation engine failed ({cause.__class__.__name__}: {cause})") from exc
    if errors:
        raise errors[0]


def run_clients(run: RunDir) -> list[str]:
    return [client_name(i) for i in range(len(run.require("partition")["summary"]["clients"]))]


def open_output(run: RunDir, alg: str, fp: str, force: bool, clients: list[str]) -> Path:
    """The run's output folder; a different run (or `force`) starts over, the same one resumes."""
    out = run.simulate_dir(alg)
    previous = read_json(out / "run.json")["fingerprint"] if (out / "run.json").exists() else None
    # saved rounds without the metrics table were not written by a sound run (older versions
    # "finished" rounds nobody trained in); they cannot be trusted, so start over
    untrusted = bool(saved_rounds(out)) and not (out / "metrics.parquet").exists()
    if force or previous != fp or untrusted:
        run.invalidate("simulate", alg)
        shutil.rmtree(out, ignore_errors=True)
        for client in clients:
            shutil.rmtree(run.client_dir(client) / "state" / alg, ignore_errors=True)
    write_json(out / "run.json", {"fingerprint": fp})
    return out


def finish_simulation(config: Config, run: RunDir, out: Path, fp: str, started: float,
                      execution: dict | None = None) -> StageResult:
    """Check the rounds, summarise them and write the simulate manifest (shared with deploy_app)."""
    alg = config.train.alg
    cluster = run.require("cluster-local")
    clients = run_clients(run)
    rounds = saved_rounds(out)
    completed = rounds[-1] if rounds else 0
    if completed < config.train.rounds:
        raise FederationStopped(f"the federation stopped after {completed} of {config.train.rounds} rounds")
    if not (out / "metrics.parquet").exists():
        raise CorruptArtifactError(f"{out} has {completed} saved rounds but no metrics.parquet, so it was not written by "
                                   "a complete run; rerun `fedrouter simulate` with --force to train it again.")
    last = round_dir(out, completed)
    state = read_json(last / "state.json")
    metrics = pq.read_table(out / "metrics.parquet").to_pylist()
    seconds = time.perf_counter() - started
    summary = {
        "alg": alg, "variant": config.train.variant, "rounds_completed": completed,
        "global_clusters": STRATEGIES[alg].global_cluster_count(state),
        "global_purity": global_purity(run, clients, alg, state),
        "bytes_up": int(sum(r["bytes_up"] for r in metrics)),
        "bytes_down": int(sum(r["bytes_down"] for r in metrics)),
        "failed_jobs": int(sum(r["status"] != "ok" for r in metrics)),
        "train_seconds": round(float(sum(r["train_seconds"] for r in metrics)), 3),
        "loss_by_round": _loss_by_round(metrics),
        "client_peak_rss_mb_by_round": _peak_rss_by_round(metrics),
        "adapters_dir": str(last / "adapters"),
        "metrics_path": str(out / "metrics.parquet"),
        **(execution or {}),  # where the simulation engine ran the clients (not part of the fingerprint)
    }
    run.write_manifest("simulate", manifest("simulate", fp, asdict(config.train),
                                            {"cluster-local": cluster["fingerprint"]}, seconds, summary, []), alg)
    return StageResult("simulate", False, seconds, summary)


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
