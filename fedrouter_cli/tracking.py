"""`--log-to tensorboard|mlflow`: a run's per-round training metrics and its final scores, with its
settings, in an experiment tracker; both work offline.

What is logged is read back from the run dir once a stage has finished (simulate's
metrics.parquet, evaluate's scores), never from inside the federation: the run dir stays the one
record, a resumed or cached run logs exactly what a straight one does, and the Flower engines
need no tracker on their workers.
- TensorBoard: event files under <run-dir>/tracking/tensorboard/<alg>/ (`train/`, one folder per
  evaluation mode), rewritten whole each time, so a rerun never doubles a curve.
  `tensorboard --logdir <run-dir>/tracking/tensorboard` shows them.
- MLflow: one MLflow run per algorithm and simulate fingerprint in the experiment `fedrouter`, in
  a local SQLite store <run-dir>/tracking/mlflow.db (MLflow 3 no longer writes new file stores),
  or wherever MLFLOW_TRACKING_URI points. Each run remembers what it already holds (tags), so
  asking again logs nothing twice. `mlflow ui --backend-store-uri sqlite:///<run-dir>/tracking/mlflow.db`.
"""

from __future__ import annotations

import importlib.util
import math
import os
import time
from typing import Any

from fedrouter_cli.config import Config
from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.files import atomic_dir, read_json, write_json
from fedrouter_cli.rundir import RunDir

# tracker -> (module it needs, how to install it)
TRACKERS = {
    "tensorboard": ("tensorboard", 'pip install "fedrouter[tensorboard]"'),
    "mlflow": ("mlflow", 'pip install "fedrouter[mlflow]"'),
}
EXPERIMENT = "fedrouter"


def check_trackers(names: list[str] | None) -> tuple[str, ...]:
    """The trackers asked for (--log-to, repeated or comma-separated), each known and installed."""
    wanted = tuple(dict.fromkeys(n.strip() for name in names or () for n in name.split(",") if n.strip()))
    for name in wanted:
        if name not in TRACKERS:
            raise FedrouterError(f"Unknown tracker {name!r} for --log-to; choose {' or '.join(TRACKERS)}.")
        module, install = TRACKERS[name]
        if importlib.util.find_spec(module) is None:
            raise FedrouterError(f"--log-to {name} needs the {module} package, which is not installed; run `{install}`.")
    return wanted


def round_metrics(rows: list[dict[str, Any]]) -> dict[int, dict[str, float]]:
    """Per round: mean loss of the jobs trained, learning rate, optimizer steps, jobs, failures,
    clients that sat out, bytes each way, train seconds, and the mean loss of each adapter."""
    from fedrouter_cli.federation.run_output import SAT_OUT, failed

    rounds: dict[int, dict[str, float]] = {}
    for r in sorted({int(row["round"]) for row in rows}):
        these = [row for row in rows if int(row["round"]) == r]
        ok = [row for row in these if row["status"] == "ok"]
        lrs = [row["lr"] for row in these if not math.isnan(row["lr"])]
        figures = {
            "train/loss": sum(row["loss"] for row in ok) / len(ok) if ok else math.nan,
            "train/lr": lrs[0] if lrs else math.nan,
            "train/steps": float(sum(row["steps"] for row in ok)),
            "train/jobs": float(len(ok)),
            "train/failed": float(sum(failed(row["status"]) for row in these)),
            "train/sat_out": float(sum(row["status"] == SAT_OUT for row in these)),
            "train/bytes_up": float(sum(row["bytes_up"] for row in these)),
            "train/bytes_down": float(sum(row["bytes_down"] for row in these)),
            "train/seconds": float(sum(row["train_seconds"] for row in these)),
        }
        for tag in sorted({row["tag"] for row in ok}):
            losses = [row["loss"] for row in ok if row["tag"] == tag]
            figures[f"loss/{tag}"] = sum(losses) / len(losses)
        rounds[r] = {k: v for k, v in figures.items() if not math.isnan(v)}
    return rounds


def score_metrics(scores: dict[str, Any]) -> dict[str, float]:
    """An evaluation's overall figures: ROUGE-1/2/L, samples, and routing accuracy where labels exist."""
    mode = scores["mode"]
    figures = {f"eval/{mode}/{key}": float(scores[key]) for key in ("rouge1", "rouge2", "rougeL", "samples")}
    if scores.get("routing_accuracy") is not None:
        figures[f"eval/{mode}/routing_accuracy"] = float(scores["routing_accuracy"])
    return figures


def flat_settings(config: Config) -> dict[str, str]:
    return {f"{section}.{key}": str(value) for section, values in config.to_dict().items()
            for key, value in values.items()}


def track_training(trackers: tuple[str, ...], run: RunDir, config: Config) -> dict[str, str]:
    """Log the finished simulate run of config's --alg; returns where each tracker wrote."""
    if not trackers:
        return {}
    import pyarrow.parquet as pq

    from fedrouter_cli.fingerprints import simulate_fingerprint

    alg = config.train.alg
    rows = pq.read_table(run.federation(alg).metrics_file).to_pylist()
    rounds = round_metrics(rows)
    where = {}
    if "tensorboard" in trackers:
        where["tensorboard"] = _tensorboard(run, alg, "train", rounds, config)
    if "mlflow" in trackers:
        where["mlflow"] = _mlflow(run, config, simulate_fingerprint(config), "training", rounds)
    return where


def track_scores(trackers: tuple[str, ...], run: RunDir, config: Config, scores: dict[str, Any]) -> dict[str, str]:
    """Log an evaluation's overall scores (at the step of the round it evaluated)."""
    if not trackers:
        return {}
    from fedrouter_cli.fingerprints import simulate_fingerprint

    step = {int(scores["round"]): score_metrics(scores)}
    alg = scores["alg"]
    where = {}
    if "tensorboard" in trackers:
        where["tensorboard"] = _tensorboard(run, alg, f"eval-{scores['mode']}", step, config)
    if "mlflow" in trackers:
        fp = simulate_fingerprint(config) if alg == config.train.alg else alg  # `--alg base`: no training run
        where["mlflow"] = _mlflow(run, config, fp, f"eval-{scores['mode']}-r{scores['round']}", step, alg)
    return where


def _tensorboard(run: RunDir, alg: str, part: str, steps: dict[int, dict[str, float]], config: Config) -> str:
    from torch.utils.tensorboard import SummaryWriter

    folder = run.tracking_dir / "tensorboard" / alg / part
    with atomic_dir(folder) as tmp:  # rewritten whole: a rerun replaces the curve instead of doubling it
        writer = SummaryWriter(log_dir=str(tmp))
        writer.add_text("settings", "\n".join(f"    {k} = {v}" for k, v in flat_settings(config).items()), 0)
        for step, figures in steps.items():
            for name, value in figures.items():
                writer.add_scalar(name, value, step)
        writer.close()
    return str(folder)


def _mlflow(run: RunDir, config: Config, fingerprint: str, what: str, steps: dict[int, dict[str, float]],
            alg: str | None = None) -> str:
    """Log `steps` into the MLflow run of (alg, fingerprint), unless that run already holds `what`."""
    import logging

    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its own notes on creating tables are not ours
    alg = alg or config.train.alg
    run.tracking_dir.mkdir(parents=True, exist_ok=True)
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{run.tracking_dir / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
    known = read_json(run.mlflow_runs_file) if run.mlflow_runs_file.exists() else {}
    key = f"{uri} {alg} {fingerprint}"
    run_id = known.get(key)
    if run_id is None:
        created = client.create_run(experiment_id, run_name=f"{run.root.name}/{alg}",
                                    tags={"fedrouter.run_dir": str(run.root), "fedrouter.alg": alg,
                                          "fedrouter.fingerprint": fingerprint})
        run_id = created.info.run_id
        client.log_batch(run_id, params=[Param(k, v[:6000]) for k, v in flat_settings(config).items()])
        write_json(run.mlflow_runs_file, {**known, key: run_id})
    if client.get_run(run_id).data.tags.get(f"fedrouter.logged.{what}") != "true":
        now = int(time.time() * 1000)
        metrics = [Metric(name, value, now, step) for step, figures in steps.items() for name, value in figures.items()]
        for start in range(0, len(metrics), 1000):  # MLflow takes at most 1,000 metrics a batch
            client.log_batch(run_id, metrics=metrics[start:start + 1000])
        client.set_tag(run_id, f"fedrouter.logged.{what}", "true")
    return f"{uri} (run {run_id})"
