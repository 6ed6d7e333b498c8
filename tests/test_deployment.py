"""The same ClientApp on Flower's deployment engine: a SuperLink and 3 SuperNodes as processes,
with TLS; a SuperNode killed mid-round and restarted, and the server killed and restarted (these
two run insecure, so both transports are covered by full federations)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from federation_harness import CLIENTS, FEDROUTER, Federation, leftovers, make_certificates

from fedrouter_cli.config import build_config, load_config, resolve_config, save_config
from fedrouter_cli.rundir import RunDir, client_name
from fedrouter_cli.stages.cluster_local import read_centroids


# long enough for a ClientApp process to start and train on 2 cores shared with 3 SuperNodes (at
# 60 s, replies of live nodes were late too), short against the default hour
FAULT_ROUND_TIMEOUT = 120.0


def test_prepare_node_makes_the_servers_folder_without_the_others_data(deploy_data: Path, tmp_path: Path) -> None:
    """What one machine makes for its client equals the server stages' files for that client."""
    from fedrouter_cli.errors import FedrouterError
    from fedrouter_cli.stages.prepare_node import prepare_node

    run = RunDir(deploy_data)
    config = build_config(load_config(run.config_path), {"embed": {"text_cache": False}})  # embed afresh
    summary = prepare_node(config, 1, tmp_path / "m1" / "c01")
    made = pq.read_table(tmp_path / "m1" / "c01" / "assignments.parquet").to_pylist()
    server = pq.read_table(run.assignments_file("c01")).to_pylist()
    assert [(r["id"], r["cluster"]) for r in made] == [(r["id"], r["cluster"]) for r in server]
    assert np.allclose(read_centroids(tmp_path / "m1" / "c01" / "centroids.parquet")[0],
                       read_centroids(run.centroids_file("c01"))[0], atol=1e-4)
    assert summary["rows"] == len(server)
    for client, folder in ((5, tmp_path / "c05"), (1, tmp_path / "c02")):
        with pytest.raises(FedrouterError):
            prepare_node(config, client, folder)


@pytest.fixture(scope="module")
def deploy_data(tmp_path_factory) -> Path:
    """A run dir with the data stages done on the smoke preset, with 3 clients."""
    from fedrouter_cli.pipeline import prepare

    run = RunDir(tmp_path_factory.mktemp("deploy") / "run")
    config = resolve_config(run.config_path, "smoke", {"data": {"clients": CLIENTS}})
    prepare(config, run, "cluster-local")
    save_config(run.config_path, config)
    return run.root


@pytest.fixture
def federation(deploy_data: Path, tmp_path: Path, request):
    run_dir = tmp_path / "run"
    shutil.copytree(deploy_data, run_dir)
    mode = getattr(request, "param", "insecure")
    if mode in ("node-faults", "link-faults"):  # 3 longer rounds with a short timeout, so a kill lands mid-round
        run = RunDir(run_dir)
        save_config(run.config_path, build_config(load_config(run.config_path), {
            "train": {"rounds": 3, "round_timeout": FAULT_ROUND_TIMEOUT, "local_steps": 6}}))
    certificates = make_certificates(tmp_path / "certs") if mode == "tls" else None
    # only a SuperLink that is restarted needs its state on disk; Flower's in-memory state has no
    # SQLite to report "database is locked" on a loaded machine
    federation = Federation(tmp_path, RunDir(run_dir), certificates, keep_link_state=mode == "link-faults")
    try:
        yield federation
    finally:
        federation.stop()
        assert all(p.poll() is not None for p in federation.processes)
        assert not federation.survivors(), "Flower processes outlived the test"


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("federation", ["tls"], indirect=True)
def test_deployment_engine_runs_fedrouter(federation: Federation) -> None:
    started = time.monotonic()
    # each "machine" makes its own folder from its share of the source, as the README says
    for i in range(CLIENTS):
        done = subprocess.run([*FEDROUTER, "deploy", "prepare-node", "--client", str(i), "--node-dir",
                               str(federation.node_dir(i)), "--preset", "smoke", "--clients", str(CLIENTS),
                               "--json"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        made = read_centroids(federation.node_dir(i) / "centroids.parquet")[0]
        server = read_centroids(federation.run.centroids_file(client_name(i)))[0]
        assert made.shape == server.shape and np.allclose(made, server, atol=1e-4)
    federation.start()
    status = federation.run_app()
    assert status == "finished:completed", f"run ended {status}:\n{federation.logs()}"
    seconds = time.monotonic() - started
    federation.stop()  # free the cores for evaluate; the fixture checks nothing is left
    run = federation.run
    config = load_config(run.config_path)
    out = run.simulate_dir("fedrouter")
    manifest = run.require("simulate", "fedrouter")
    assert manifest["summary"]["rounds_completed"] == config.train.rounds == 2
    assert manifest["summary"]["failed_jobs"] == 0
    metrics = pq.read_table(out / "metrics.parquet").to_pylist()
    assert {m["round"] for m in metrics} == {1, 2}
    assert {m["client"] for m in metrics} == set(range(CLIENTS)) and all(m["status"] == "ok" for m in metrics)
    adapters = sorted((out / "rounds" / "r0002" / "adapters").iterdir())
    assert adapters and all((a / "adapter_model.safetensors").exists() for a in adapters)
    # each SuperNode read only its own folder; the run dir's shared nodes/ folder was never made
    assert not run.stage_dir("nodes").exists()

    from fedrouter_cli.stages.evaluate import run_evaluate

    scores = run_evaluate(config, run)
    assert scores.summary["samples"] == CLIENTS * config.data.test_per_client
    assert 0.0 <= scores.summary["rougeL"] <= 1.0
    assert set(scores.summary["per_client"]) == {client_name(i) for i in range(CLIENTS)}
    print(f"deployment federation ({'tls' if federation.certificates else 'insecure'}): run {seconds:.1f}s, "
          f"evaluate {time.monotonic() - started - seconds:.1f}s")


def _clientapp_pids(node) -> set[int]:
    import psutil

    try:
        return {c.pid for c in psutil.Process(node.pid).children(recursive=True)
                if "clientapp" in " ".join(c.cmdline())}
    except psutil.Error:
        return set()


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("federation", ["node-faults"], indirect=True)
def test_supernode_killed_mid_round_then_restarted_takes_part_again(federation: Federation) -> None:
    victim = 2
    federation.start()
    run_id = federation.submit()
    seen: set[int] = set()

    def training_started() -> bool:  # the node's first ClientApp answers the centroid query, the second trains
        seen.update(_clientapp_pids(federation.nodes[victim]))
        return len(seen) >= 2

    federation.wait(run_id, timeout=150, until=training_started)
    round_one = federation.run.round_dir("fedrouter", 1) / "state.json"
    assert not round_one.exists(), "the kill came after round 1 ended; the test needs it mid-round"
    federation.kill(federation.nodes[victim])
    killed_at = time.time()
    federation.start_node(victim)  # same machine folder, new process, new Flower node id
    status = federation.wait(run_id, timeout=600)
    assert status == "finished:completed", f"run ended {status}:\n{federation.logs()}"
    # round 1 closed at its short timeout, not the default hour (with room for the server's work)
    assert round_one.stat().st_mtime - killed_at < FAULT_ROUND_TIMEOUT + 60
    metrics = pq.read_table(federation.run.simulate_dir("fedrouter") / "metrics.parquet").to_pylist()
    status_of = {(m["round"], m["client"]): m["status"] for m in metrics}
    assert status_of[(1, victim)] in ("missing", "failed")
    assert status_of[(1, 0)] == status_of[(1, 1)] == "ok"  # the others' work in round 1 was kept
    assert any(status_of.get((r, victim)) == "ok" for r in (2, 3)), metrics  # the restarted node came back
    summary = federation.run.require("simulate", "fedrouter")["summary"]
    assert summary["rounds_completed"] == 3 and summary["failed_jobs"] >= 1


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("federation", ["link-faults"], indirect=True)
def test_server_killed_then_restarted_resumes_from_last_round(federation: Federation) -> None:
    federation.start()
    run_id = federation.submit()
    round_one = federation.run.round_dir("fedrouter", 1) / "state.json"
    federation.wait(run_id, timeout=300, until=round_one.exists)
    federation.kill(federation.link)  # the SuperLink with the ServerApp it started
    assert not leftovers({federation.link.pid})
    written = round_one.stat().st_mtime_ns
    assert not federation.run.round_dir("fedrouter", 3).exists()
    federation.start_link()  # same address; the SuperNodes reconnect on their own
    status = federation.wait(federation.submit(), timeout=600)
    assert status == "finished:completed", f"run ended {status}:\n{federation.logs()}"
    assert round_one.stat().st_mtime_ns == written  # round 1 was not redone
    summary = federation.run.require("simulate", "fedrouter")["summary"]
    assert summary["rounds_completed"] == 3
    metrics = pq.read_table(federation.run.simulate_dir("fedrouter") / "metrics.parquet").to_pylist()
    assert {m["round"] for m in metrics} == {1, 2, 3}
