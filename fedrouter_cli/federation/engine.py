"""Flower's simulation engine as this package runs it: how many clients train at once and with what
resources, Flower and Ray kept quiet, and failures reported as one sentence. Both the simulate
stage and `evaluate --on nodes` run on it."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fedrouter_cli.config import Config
from fedrouter_cli.errors import FederationStopped, FedrouterError
from fedrouter_cli.model.device import (
    Placement,
    check_4bit,
    check_gpu_share,
    client_gpu_bytes,
    free_gpu_bytes,
    gpu_workers,
    resolve_device,
    weight_bytes,
)


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


def quiet_flower() -> None:
    """Flower logs every round at INFO, warns that run_simulation is deprecated (it still is the
    offline way to use the simulation engine) and prints a Ray traceback for each failed client;
    keep the terminal for our own progress and one-line failure reports (all of it with --debug)."""
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    level = logging.ERROR if os.environ.get("FEDROUTER_DEBUG") == "1" else logging.CRITICAL
    for name in ("flwr", "ray"):
        logging.getLogger(name).setLevel(level)


def usable_cpus() -> int:
    """Cores this process may use: its CPU affinity (taskset, Slurm, containers), capped by
    OMP_NUM_THREADS when a user or a scheduler set it (more torch threads than cores spin idle)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = os.environ.get("OMP_NUM_THREADS", "")
    return max(1, min(cpus, int(limit))) if limit.isdigit() and int(limit) > 0 else max(1, cpus)


def parallel_workers(requested: int, clients: int, model_bytes: int, cpus: int | None = None,
                     available_bytes: int | None = None) -> tuple[int, int]:
    """How many clients train at once and with how many torch threads each.

    0 = auto: one client per core, as many as memory allows (each worker holds its own copy of the
    model plus activations, ~4x the weights). Two single-threaded clients train ~1.3x faster on
    2 cores than one client with 2 threads: small matrices do not keep two threads busy.
    """
    cpus = cpus or usable_cpus()
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
        threads = max(1, usable_cpus() // count)
        resources = {"num_cpus": 1, "num_gpus": share}
    # Ray runs as many clients at once as its CPUs hold client_resources: `count` of them
    backend = {"client_resources": resources,
               "init_args": {"num_cpus": count, "include_dashboard": False, "log_to_driver": False}}
    return count, threads, backend


def run_engine(server_app, nodes_root: Path, num_supernodes: int, backend_config: dict,
               errors: list[BaseException]) -> None:
    """Flower's simulation engine with this package's ClientApp, client i's folder being
    nodes_root/cNN; the ServerApp's own exception (collected in `errors`) is raised as itself, an
    engine failure as FederationStopped."""
    from flwr.simulation import run_simulation

    from fedrouter_cli.federation.client_app import build_client_app

    quiet_flower()
    try:
        run_simulation(server_app=server_app, client_app=build_client_app(nodes_root), num_supernodes=num_supernodes,
                       backend_config=backend_config)
    except RuntimeError as exc:  # Flower wraps every failure in "An error was encountered"; name the cause
        if errors:
            raise errors[0] from exc
        cause = exc.__cause__ or exc
        raise FederationStopped(f"Flower's simulation engine failed ({cause.__class__.__name__}: {cause})") from exc
    if errors:
        raise errors[0]
