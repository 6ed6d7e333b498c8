"""--log-to: per-round training metrics and final scores reach TensorBoard's event files and an MLflow
store, read back here with each tracker's own reader; a rerun logs nothing twice; a tracker that
is not installed is refused with its install command."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from fedrouter_cli import tracking
from fedrouter_cli.cli.app import app
from fedrouter_cli.errors import FedrouterError


def cli(*args: str):
    return CliRunner().invoke(app, [*args])


def test_round_metrics_summarise_each_round() -> None:
    rows = [
        {"round": 1, "client": 0, "tag": "g00", "status": "ok", "loss": 2.0, "lr": 1e-3, "steps": 3,
         "bytes_up": 10, "bytes_down": 20, "train_seconds": 1.0},
        {"round": 1, "client": 1, "tag": "g01", "status": "ok", "loss": 4.0, "lr": 1e-3, "steps": 3,
         "bytes_up": 10, "bytes_down": 20, "train_seconds": 2.0},
        {"round": 1, "client": 2, "tag": "", "status": "sat-out", "loss": math.nan, "lr": math.nan, "steps": 0,
         "bytes_up": 0, "bytes_down": 0, "train_seconds": 0.0},
        {"round": 2, "client": 0, "tag": "g00", "status": "failed", "loss": math.nan, "lr": 5e-4, "steps": 0,
         "bytes_up": 0, "bytes_down": 20, "train_seconds": 0.0},
    ]
    figures = tracking.round_metrics(rows)
    assert figures[1]["train/loss"] == 3.0 and figures[1]["loss/g01"] == 4.0 and figures[1]["train/steps"] == 6
    assert figures[1]["train/sat_out"] == 1 and figures[1]["train/failed"] == 0 and figures[1]["train/bytes_up"] == 20
    assert "train/loss" not in figures[2] and figures[2]["train/failed"] == 1 and figures[2]["train/lr"] == 5e-4


def test_an_unknown_or_missing_tracker_is_refused_with_the_fix(monkeypatch, smoke_copy: Path) -> None:
    with pytest.raises(FedrouterError, match="choose tensorboard or mlflow"):
        tracking.check_trackers(["wandb"])
    assert tracking.check_trackers(["tensorboard,mlflow", "mlflow"]) == ("tensorboard", "mlflow")
    real = tracking.importlib.util.find_spec
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None if name == "mlflow" else real(name))
    result = cli("simulate", "--run-dir", str(smoke_copy), "--log-to", "mlflow")
    assert result.exit_code == 2 and 'pip install "fedrouter[mlflow]"' in result.output
    assert "Traceback" not in result.output and not (smoke_copy / "simulate" / "fedrouter").exists()


def test_metrics_and_scores_reach_tensorboard_and_mlflow_once(smoke_simulated, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    shutil.copytree(smoke_simulated[0], run)
    for _ in range(2):  # the second time: a cache hit that asks again, and must not log twice
        result = cli("simulate", "--run-dir", str(run), "--log-to", "tensorboard", "--log-to", "mlflow", "--json")
        assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    rows = pq.read_table(summary["metrics_path"]).to_pylist()
    rounds = sorted({r["round"] for r in rows})
    mean_loss = {r: sum(x["loss"] for x in rows if x["round"] == r and x["status"] == "ok")
                 / sum(x["status"] == "ok" for x in rows if x["round"] == r) for r in rounds}

    events = EventAccumulator(summary["tracking"]["tensorboard"]).Reload()
    scalars = events.Scalars("train/loss")
    logged = {e.step: e.value for e in scalars}
    # once each, though asked twice: the folder is rewritten whole (one event file; TensorBoard's
    # reader would hide a second file's repeated steps, so the file count is what shows it)
    assert len(list(Path(summary["tracking"]["tensorboard"]).glob("events.out.tfevents.*"))) == 1
    assert len(scalars) == len(rounds)
    assert sorted(logged) == rounds and all(abs(logged[r] - mean_loss[r]) < 1e-5 for r in rounds)
    assert {"train/lr", "train/bytes_up", "train/steps"} <= set(events.Tags()["scalars"])

    scores = json.loads(cli("evaluate", "--run-dir", str(run), "--log-to", "mlflow,tensorboard", "--json").stdout)
    store = f"sqlite:///{run / 'tracking' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store)
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("fedrouter").experiment_id])
    history = client.get_metric_history(mlflow_run.info.run_id, "train/loss")
    assert sorted(m.step for m in history) == rounds  # once each, though asked twice
    assert mlflow_run.data.params["train.alg"] == "fedrouter"
    rouge = client.get_metric_history(mlflow_run.info.run_id, f"eval/{scores['mode']}/rougeL")
    assert [(m.step, round(m.value, 6)) for m in rouge] == [(scores["round"], round(scores["rougeL"], 6))]
    eval_events = EventAccumulator(scores["tracking"]["tensorboard"]).Reload()
    assert [e.value for e in eval_events.Scalars(f"eval/{scores['mode']}/rouge1")] == pytest.approx([scores["rouge1"]])
