"""simulate through Flower's simulation engine, on the smoke preset."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from safetensors.numpy import load_file

from fedrouter_cli.config import resolve_config
from fedrouter_cli.federation import client_app
from fedrouter_cli.federation.wire import to_record
from fedrouter_cli.model.lora import initial_adapter
from fedrouter_cli.rundir import RunDir
from fedrouter_cli.stages.simulate import prepare_nodes

FEDROUTER = [sys.executable, "-m", "fedrouter_cli"]


def fedrouter(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*FEDROUTER, *args], capture_output=True, text=True, env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"fedrouter {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result


def final_adapters(run_dir: Path, rounds: int) -> dict[str, dict[str, np.ndarray]]:
    folder = run_dir / "simulate" / "fedrouter" / "rounds" / f"r{rounds:04d}" / "adapters"
    return {p.name: load_file(str(p / "adapter_model.safetensors")) for p in sorted(folder.iterdir())}


def test_smoke_simulate_end_to_end(smoke_simulated: tuple[Path, dict]) -> None:
    run_dir, out = smoke_simulated
    assert out["rounds_completed"] == 2 and out["failed_jobs"] == 0
    assert out["global_clusters"] >= 1 and out["global_purity"] == 1.0
    assert out["bytes_up"] > 0 and out["bytes_down"] > 0
    metrics = pq.read_table(out["metrics_path"]).to_pylist()
    assert {m["round"] for m in metrics} == {1, 2} and all(m["status"] == "ok" for m in metrics)
    from peft import PeftModel

    from fedrouter_cli.model.loading import load_causal_lm

    base, _ = load_causal_lm("smollm2-135m-instruct")
    adapter_dir = next(Path(out["adapters_dir"]).iterdir())
    loaded = PeftModel.from_pretrained(base, adapter_dir, adapter_name="check")
    assert "check" in loaded.peft_config
    loaded.unload()
    again = json.loads(fedrouter("simulate", "--run-dir", str(run_dir), "--json").stdout)
    assert again["cache_hit"]


def _walk_values(record) -> list:
    values = []
    for value in record.values():
        values.extend(value if isinstance(value, list) else [value])
    return values


def test_clients_send_only_arrays_and_numbers(smoke_copy: Path, monkeypatch) -> None:
    run = RunDir(smoke_copy)
    config = resolve_config(run.config_path, None, {})
    prepare_nodes(run, ["c00"])
    monkeypatch.setenv("FEDROUTER_NODES_ROOT", str(run.stage_dir("nodes")))
    from flwr.supercore.task_identity import TaskIdentity

    # A grid would have set who is sending; outside a running federation the test says it.
    for attribute in ("_run_id", "_task_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, attribute, 1, raising=False)
    context = Context(run_id=1, node_id=1, node_config={"partition-id": 0, "num-partitions": 1},
                      state=RecordDict(), run_config={})
    query = Message(content=RecordDict({"config": ConfigRecord({"round": 0})}), dst_node_id=1,
                    message_type="query.centroids")
    t = config.train
    train = Message(content=RecordDict({
        "config": ConfigRecord({"round": 1, "alg": "fedrouter", "model": config.model.model, "lr": 1e-4,
                                "local-steps": 1, "batch-size": 2, "max-length": 48, "seed": 0, "lora-r": t.lora_r,
                                "lora-alpha": t.lora_alpha, "lora-dropout": t.lora_dropout,
                                "target-modules": list(t.target_modules), "torch-threads": 0,
                                "job-name": ["l0"], "job-cluster": [0], "job-trainable": ["all"],
                                "job-send": ["all"], "job-keep": ["none"]}),
        "adapter-0": to_record(initial_adapter(config.model.model, t, 0)),
    }), dst_node_id=1, message_type="train")
    texts = pq.read_table(run.partition_file("c00", "train")).column("instruction").to_pylist()
    # The ClientApp's own handlers, called as Flower calls them (without a SuperNode around them).
    for handler, message in ((client_app.centroids, query), (client_app.train, train)):
        reply = handler(message, context)
        assert not reply.has_error(), reply.error
        for name, record in reply.content.items():
            assert isinstance(record, (ArrayRecord, MetricRecord)), f"{name} is a {type(record).__name__}"
            if isinstance(record, MetricRecord):
                assert all(isinstance(v, (int, float)) for v in _walk_values(record))
            else:
                assert all(record[k].numpy().dtype.kind in "fiu" for k in record.keys())  # numbers only
        blob = b"".join(r[k].numpy().tobytes() for r in reply.content.values() if isinstance(r, ArrayRecord)
                        for k in r.keys())
        assert not any(t.encode()[:40] in blob for t in texts)


def _run_until_round(run_dir: Path, stop_after: int, extra: list[str]) -> None:
    """Start simulate, SIGKILL its whole process group once round `stop_after` is saved."""
    process = subprocess.Popen([*FEDROUTER, "simulate", "--run-dir", str(run_dir), *extra],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    marker = run_dir / "simulate" / "fedrouter" / "rounds" / f"r{stop_after:04d}" / "state.json"
    deadline = time.monotonic() + 300
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert marker.exists(), "the run never completed the round it should be killed after"


def test_resume_after_kill_matches_uninterrupted(smoke_simulated: tuple[Path, dict], smoke_data: Path,
                                                 tmp_path: Path) -> None:
    import shutil

    """Also: the straight run trained clients in parallel (--workers auto, one per core) and this one
    one at a time, so equal adapters show that the worker count does not change results."""
    straight = smoke_simulated[0]
    killed = tmp_path / "killed"
    shutil.copytree(smoke_data, killed)
    _run_until_round(killed, 1, ["--preset", "smoke", "--workers", "1"])
    assert not (killed / "simulate" / "fedrouter" / "manifest.json").exists()
    resumed = json.loads(fedrouter("simulate", "--run-dir", str(killed), "--preset", "smoke", "--workers", "1",
                                   "--json").stdout)
    assert resumed["rounds_completed"] == 2 and not resumed["cache_hit"]
    rounds = pq.read_table(killed / "simulate" / "fedrouter" / "metrics.parquet").column("round").to_pylist()
    assert sorted(set(rounds)) == [1, 2] and rounds.count(1) == rounds.count(2)
    a, b = final_adapters(straight, 2), final_adapters(killed, 2)
    assert a.keys() == b.keys()
    for name in a:
        for key in a[name]:
            assert np.array_equal(a[name][key], b[name][key]), f"{name}/{key} differs after resume"


def test_failing_client_does_not_stop_the_run(smoke_copy: Path) -> None:
    result = fedrouter("simulate", "--run-dir", str(smoke_copy), "--preset", "smoke", "--json",
                       env={"FEDROUTER_FAIL_ON": "1:1"})
    out = json.loads(result.stdout)
    # one line names the failure; Flower's Ray traceback of it is kept for --debug
    assert "client 1 failed in round 1: " in result.stderr and "injected failure of client 1 in round 1" in result.stderr
    assert "Traceback" not in result.stderr
    assert out["rounds_completed"] == 2
    assert out["failed_jobs"] == 1
    metrics = pq.read_table(out["metrics_path"]).to_pylist()
    failed = [m for m in metrics if m["status"] == "failed"]
    assert [(m["client"], m["round"]) for m in failed] == [(1, 1)]
    assert any(m["client"] == 1 and m["round"] == 2 and m["status"] == "ok" for m in metrics)


def test_a_round_no_client_trained_in_is_not_saved_and_resumes(smoke_copy: Path) -> None:
    """Every client fails in round 2: the run stops with a plain error instead of saving an
    untrained round as done (which resume would then skip for good), and the rerun trains it."""
    out = smoke_copy / "simulate" / "fedrouter"
    failed = fedrouter("simulate", "--run-dir", str(smoke_copy), "--preset", "smoke", check=False,
                       env={"FEDROUTER_FAIL_ON": "0:2,1:2,2:2,3:2"})
    assert failed.returncode == 1, failed.stderr[-2000:]
    assert failed.stderr.strip().splitlines()[-1].startswith("Error: round 2: no client returned a trained adapter")
    assert "Traceback" not in failed.stderr
    assert (out / "rounds" / "r0001" / "state.json").exists() and not (out / "rounds" / "r0002").exists()
    assert not (out / "manifest.json").exists()
    resumed = json.loads(fedrouter("simulate", "--run-dir", str(smoke_copy), "--preset", "smoke", "--json").stdout)
    assert resumed["rounds_completed"] == 2 and resumed["failed_jobs"] == 0
    rounds = pq.read_table(resumed["metrics_path"]).column("round").to_pylist()
    assert rounds.count(1) == rounds.count(2) == 4


def test_nodes_that_never_answer_stop_the_run_before_round_one(smoke_copy: Path) -> None:
    failed = fedrouter("simulate", "--run-dir", str(smoke_copy), "--preset", "smoke", check=False,
                       env={"FEDROUTER_FAIL_ON": "0:0,1:0,2:0,3:0"})
    assert failed.returncode == 1, failed.stderr[-2000:]
    assert "none of the 4 nodes answered the centroid query" in failed.stderr
    assert not list((smoke_copy / "simulate").glob("*/rounds/r*"))


def test_rounds_saved_without_metrics_are_not_trusted(smoke_copy: Path) -> None:
    """Older versions could save rounds nobody trained in (no metrics rows); such output is redone."""
    from fedrouter_cli.stages.simulate import open_output, simulate_fingerprint

    run = RunDir(smoke_copy)
    config = resolve_config(run.config_path, "smoke", {})
    fp = simulate_fingerprint(config)
    out = open_output(run, "fedrouter", fp, False, ["c00"])
    (out / "rounds" / "r0001").mkdir(parents=True)
    (out / "rounds" / "r0001" / "state.json").write_text("{}")
    assert open_output(run, "fedrouter", fp, False, ["c00"]) == out and not (out / "rounds").exists()
    (out / "rounds" / "r0001").mkdir(parents=True)
    (out / "rounds" / "r0001" / "state.json").write_text("{}")
    (out / "metrics.parquet").write_bytes(b"kept")
    open_output(run, "fedrouter", fp, False, ["c00"])
    assert (out / "rounds" / "r0001" / "state.json").exists()  # a sound partial run resumes


def test_parallel_workers_fit_cores_clients_and_memory() -> None:
    from fedrouter_cli.errors import FedrouterError
    from fedrouter_cli.stages.simulate import parallel_workers

    gib = 2**30
    assert parallel_workers(0, clients=8, model_bytes=gib // 2, cpus=2, available_bytes=20 * gib) == (2, 1)
    assert parallel_workers(0, clients=8, model_bytes=gib // 2, cpus=8, available_bytes=20 * gib) == (7, 1)
    assert parallel_workers(0, clients=8, model_bytes=4 * gib, cpus=8, available_bytes=20 * gib) == (1, 8)
    assert parallel_workers(0, clients=1, model_bytes=gib, cpus=4, available_bytes=20 * gib) == (1, 4)
    assert parallel_workers(1, clients=8, model_bytes=gib, cpus=2) == (1, 2)
    assert parallel_workers(16, clients=4, model_bytes=gib, cpus=2) == (4, 1)
    with pytest.raises(FedrouterError):
        parallel_workers(-1, clients=4, model_bytes=gib, cpus=2)
