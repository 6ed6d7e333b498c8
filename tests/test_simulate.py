"""simulate on Flower's simulation engine: the Ray backend as a real process for the engine path
(a run killed after round 1 and resumed), the in-process backend for end to end and the rules
(what crosses the wire, failing clients, worker independence)."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import FEDROUTER_SCRIPT
from flwr.app import ArrayRecord, MetricRecord
from safetensors.numpy import load_file
from typer.testing import CliRunner

from fedrouter_cli.cli.app import app
from fedrouter_cli.presets import resolve_config
from fedrouter_cli.rundir import RunDir


def fedrouter(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*FEDROUTER_SCRIPT, *args], capture_output=True, text=True,
                            env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"fedrouter {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result


def invoke(*args: str):
    """The command in this process (so the in-process engine, when installed, is used)."""
    return CliRunner().invoke(app, list(args))


def final_adapters(run_dir: Path, rounds: int) -> dict[str, dict[str, np.ndarray]]:
    folder = run_dir / "simulate" / "fedrouter" / "rounds" / f"r{rounds:04d}" / "adapters"
    return {p.name: load_file(str(p / "adapter_model.safetensors")) for p in sorted(folder.iterdir())}


def test_smoke_simulate_end_to_end(smoke_simulated: tuple[Path, dict]) -> None:
    run_dir, out = smoke_simulated
    assert out["rounds_completed"] == 2 and out["failed_jobs"] == 0
    # the smoke data's four synthetic tasks separate cleanly: the automatic rule finds one global
    # cluster per task
    tasks = json.loads((run_dir / "partition" / "manifest.json").read_text())["summary"]["tasks"]
    assert out["global_clusters"] == len(tasks) == 4 and out["global_purity"] == 1.0
    assert out["bytes_up"] > 0 and out["bytes_down"] > 0
    metrics = pq.read_table(out["metrics_path"]).to_pylist()
    assert {m["round"] for m in metrics} == {1, 2} and all(m["status"] == "ok" for m in metrics)
    # a saved adapter loads into PEFT with exactly the weights that were saved
    from peft import PeftModel
    from peft.utils import get_peft_model_state_dict

    from fedrouter_cli.model.loading import load_causal_lm

    config = resolve_config(RunDir(run_dir).config_path, None, {})
    base, _ = load_causal_lm(config.model.model)
    adapter_dir = next(Path(out["adapters_dir"]).iterdir())
    saved = load_file(str(adapter_dir / "adapter_model.safetensors"))
    loaded = PeftModel.from_pretrained(base, adapter_dir, adapter_name="check")
    try:
        state = get_peft_model_state_dict(loaded, adapter_name="check")
        assert set(state) == set(saved) and any(np.abs(v).max() > 0 for k, v in saved.items() if "lora_B" in k)
        for key, value in saved.items():
            assert np.array_equal(state[key].numpy(), value), key
    finally:
        loaded.unload()
    again = invoke("simulate", "--run-dir", str(run_dir), "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["cache_hit"]


def _numbers_only(record) -> bool:
    if isinstance(record, MetricRecord):
        values = [v for value in record.values() for v in (value if isinstance(value, list) else [value])]
        return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    return isinstance(record, ArrayRecord) and all(record[k].numpy().dtype.kind in "fiu" for k in record.keys())


@pytest.mark.parametrize("alg", ["fedrouter", "feddpa"])
def test_clients_send_only_arrays_and_numbers(smoke_copy: Path, inprocess, alg: str) -> None:
    """Every message a node sends during a whole run holds arrays and numbers, and no train text."""
    result = invoke("simulate", "--run-dir", str(smoke_copy), "--alg", alg, "--json")
    assert result.exit_code == 0, result.output
    run = RunDir(smoke_copy)
    texts = [t.encode()[:40] for c in ("c00", "c01", "c02", "c03")
             for t in pq.read_table(run.partition_file(c, "train")).column("instruction").to_pylist()]
    replies = [reply for _, reply in inprocess.calls]
    assert len(replies) == 4 * 3  # the centroid query and two rounds, four nodes
    for reply in replies:
        assert not reply.has_error(), reply.error
        for name, record in reply.content.items():
            assert _numbers_only(record), f"{name} is a {type(record).__name__} with more than numbers"
        blob = b"".join(r[k].numpy().tobytes() for r in reply.content.values() if isinstance(r, ArrayRecord)
                        for k in r.keys())
        assert not any(text in blob for text in texts)


def _run_until_round(run_dir: Path, stop_after: int, extra: list[str]) -> str:
    """Start simulate as a real process (Flower's engine with Ray), SIGKILL its whole process group
    once round `stop_after` is saved; returns what it wrote on stderr."""
    log = run_dir.parent / f"{run_dir.name}.stderr"
    with open(log, "w") as stderr:
        process = subprocess.Popen([*FEDROUTER_SCRIPT, "simulate", "--run-dir", str(run_dir), *extra],
                                   stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    marker = run_dir / "simulate" / "fedrouter" / "rounds" / f"r{stop_after:04d}" / "state.json"
    deadline = time.monotonic() + 600
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    finished_early = process.poll() is not None
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert marker.exists(), "the run never completed the round it should be killed after"
    assert not finished_early, "the run ended by itself before it could be killed"
    return log.read_text()


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted(smoke_simulated: tuple[Path, dict], smoke_data: Path,
                                                 tmp_path: Path, inprocess) -> None:
    """Killed (SIGKILL, the whole process group) after round 1 of a real `fedrouter simulate` on
    Ray and resumed with the same settings as the straight run (one worker of two threads), the run
    ends with bit-identical adapters. The resume runs in this process: what it reads back is the
    point, not the engine that reads it. The real script said nothing a user cannot act on: no
    library noise from Ray's workers, peft or bitsandbytes on its stderr."""
    import shutil

    straight = smoke_simulated[0]
    killed = tmp_path / "killed"
    shutil.copytree(smoke_data, killed)
    noise = _run_until_round(killed, 1, ["--preset", "smoke", "--workers", "1"])
    assert "round 1/2" in noise  # its progress lines, and nothing else below
    for library_message in ("gemm_4bit", "Warning", "warnings.warn", "Loading weights", "publisher trust check"):
        assert library_message not in noise, noise[-2000:]
    assert not (killed / "simulate" / "fedrouter" / "manifest.json").exists()
    assert not (killed / "simulate" / "fedrouter" / "rounds" / "r0002").exists()
    result = invoke("simulate", "--run-dir", str(killed), "--preset", "smoke", "--workers", "1", "--json")
    assert result.exit_code == 0, result.output
    resumed = json.loads(result.stdout)
    assert resumed["rounds_completed"] == 2 and not resumed["cache_hit"]
    rounds = pq.read_table(killed / "simulate" / "fedrouter" / "metrics.parquet").column("round").to_pylist()
    assert sorted(set(rounds)) == [1, 2] and rounds.count(1) == rounds.count(2)
    a, b = final_adapters(straight, 2), final_adapters(killed, 2)
    assert a.keys() == b.keys()
    for name in a:
        for key in a[name]:
            assert np.array_equal(a[name][key], b[name][key]), f"{name}/{key} differs after resume"


def test_results_do_not_depend_on_workers_and_threads(smoke_simulated: tuple[Path, dict], smoke_copy: Path,
                                                      inprocess) -> None:
    """Two workers of one torch thread each (in process, one client after another) against one
    worker of two threads: float sums over other thread counts may differ in the last bits,
    so the adapters must agree to 1e-5 (relative) and 1e-7 (absolute), not bit for bit."""
    result = invoke("simulate", "--run-dir", str(smoke_copy), "--workers", "2", "--json")
    assert result.exit_code == 0, result.output
    a, b = final_adapters(smoke_simulated[0], 2), final_adapters(smoke_copy, 2)
    assert a.keys() == b.keys()
    moved = 0
    for name in a:
        for key in a[name]:
            np.testing.assert_allclose(b[name][key], a[name][key], rtol=1e-5, atol=1e-7, err_msg=f"{name}/{key}")
            moved += int(np.abs(a[name][key]).max() > 0)
    assert moved, "no adapter was trained"


def test_failing_client_does_not_stop_the_run(smoke_copy: Path, inprocess) -> None:
    """A client's exception reaches the server as one line; the others' work counts."""
    inprocess.fail_on = {(1, 1)}
    result = invoke("simulate", "--run-dir", str(smoke_copy), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    # one line names the failure; Flower's traceback of it is kept for --debug
    assert "client 1 failed in round 1: " in result.stderr and "injected failure of client 1 in round 1" in result.stderr
    assert "Traceback" not in result.output
    assert out["rounds_completed"] == 2
    assert out["failed_jobs"] == 1
    metrics = pq.read_table(out["metrics_path"]).to_pylist()
    failed = [m for m in metrics if m["status"] == "failed"]
    assert [(m["client"], m["round"]) for m in failed] == [(1, 1)]
    assert any(m["client"] == 1 and m["round"] == 2 and m["status"] == "ok" for m in metrics)


def test_a_round_no_client_trained_in_is_not_saved_and_resumes(smoke_copy: Path, inprocess) -> None:
    """Every client fails in round 2: the run stops with a plain error instead of saving an
    untrained round as done (which resume would then skip for good), and the rerun trains it."""
    out = smoke_copy / "simulate" / "fedrouter"
    inprocess.fail_on = {(c, 2) for c in range(4)}
    failed = invoke("simulate", "--run-dir", str(smoke_copy))
    assert failed.exit_code == 1, failed.output
    assert failed.stderr.strip().splitlines()[-1].startswith("Error: round 2: no client returned a trained adapter")
    assert "Traceback" not in failed.output
    assert (out / "rounds" / "r0001" / "state.json").exists() and not (out / "rounds" / "r0002").exists()
    assert not (out / "manifest.json").exists()
    inprocess.fail_on = set()
    resumed = invoke("simulate", "--run-dir", str(smoke_copy), "--json")
    assert resumed.exit_code == 0, resumed.output
    summary = json.loads(resumed.stdout)
    assert summary["rounds_completed"] == 2 and summary["failed_jobs"] == 0
    rounds = pq.read_table(summary["metrics_path"]).column("round").to_pylist()
    assert rounds.count(1) == rounds.count(2) == 4


def test_nodes_that_never_answer_stop_the_run_before_round_one(smoke_copy: Path, inprocess) -> None:
    inprocess.fail_on = {(c, 0) for c in range(4)}
    failed = invoke("simulate", "--run-dir", str(smoke_copy))
    assert failed.exit_code == 1, failed.output
    assert "none of the 4 nodes answered the centroid query" in failed.stderr
    assert not list((smoke_copy / "simulate").glob("*/rounds/r*"))


def test_rounds_saved_without_metrics_are_not_trusted(smoke_copy: Path) -> None:
    """Older versions could save rounds nobody trained in (no metrics rows); such output is redone."""
    from fedrouter_cli.federation.run_output import open_output
    from fedrouter_cli.fingerprints import simulate_fingerprint

    run = RunDir(smoke_copy)
    config = resolve_config(run.config_path, "smoke", {})
    fp = simulate_fingerprint(config)
    out = open_output(run, "fedrouter", fp, False, ["c00"])
    out.round(1).mkdir(parents=True)
    out.state_file(1).write_text("{}")
    assert open_output(run, "fedrouter", fp, False, ["c00"]) == out and not out.round(1).exists()
    out.round(1).mkdir(parents=True)
    out.state_file(1).write_text("{}")
    out.metrics_file.write_bytes(b"kept")
    open_output(run, "fedrouter", fp, False, ["c00"])
    assert out.state_file(1).exists()  # a sound partial run resumes


def test_parallel_workers_fit_cores_clients_and_memory() -> None:
    from fedrouter_cli.errors import FedrouterError
    from fedrouter_cli.federation.engine import parallel_workers

    gib = 2**30
    assert parallel_workers(0, clients=8, model_bytes=gib // 2, cpus=2, available_bytes=20 * gib) == (2, 1)
    assert parallel_workers(0, clients=8, model_bytes=gib // 2, cpus=8, available_bytes=20 * gib) == (7, 1)
    assert parallel_workers(0, clients=8, model_bytes=4 * gib, cpus=8, available_bytes=20 * gib) == (1, 8)
    assert parallel_workers(0, clients=1, model_bytes=gib, cpus=4, available_bytes=20 * gib) == (1, 4)
    assert parallel_workers(1, clients=8, model_bytes=gib, cpus=2) == (1, 2)
    assert parallel_workers(16, clients=4, model_bytes=gib, cpus=2) == (4, 1)
    with pytest.raises(FedrouterError):
        parallel_workers(-1, clients=4, model_bytes=gib, cpus=2)
