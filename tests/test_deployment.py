"""The same ClientApp on Flower's deployment engine, in one federation that covers what a real one
meets: a SuperLink (TLS, its state in a database) and 3 SuperNodes as processes on 127.0.0.1,
each machine's folder made by `fedrouter deploy prepare-node`, a SuperNode killed mid-round and
restarted (it rejoins), the SuperLink and its ServerApp killed after a saved round and restarted
(the run resumes), and at the end an evaluation on the nodes by a server that holds no test data.
The tiny model keeps each ClientApp process cheap."""

from __future__ import annotations

import json
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

# Long enough for a ClientApp process (torch, transformers, peft imports) to start and answer on
# 2 loaded cores shared with 3 SuperNodes; short against the default hour, since the round a node
# is killed in closes only at this timeout.
FAULT_ROUND_TIMEOUT = 90.0
ROUNDS = 3


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
def deploy_data(tmp_path_factory, tiny_model: str) -> Path:
    """A run dir with the data stages done on the smoke preset, with 3 clients and the tiny model."""
    from fedrouter_cli.pipeline import prepare

    run = RunDir(tmp_path_factory.mktemp("deploy") / "run")
    config = resolve_config(run.config_path, "smoke", {"data": {"clients": CLIENTS}, "model": {"model": tiny_model},
                                                       "train": {"rounds": ROUNDS, "round_timeout": FAULT_ROUND_TIMEOUT}})
    prepare(config, run, "cluster-local")
    save_config(run.config_path, config)
    return run.root


@pytest.fixture
def federation(deploy_data: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    shutil.copytree(deploy_data, run_dir)
    federation = Federation(tmp_path, RunDir(run_dir), make_certificates(tmp_path / "certs"), keep_link_state=True)
    try:
        yield federation
    finally:
        federation.stop()
        assert not federation.survivors(), "Flower processes outlived the test"


def _clientapp_pids(node) -> set[int]:
    import psutil

    try:
        return {c.pid for c in psutil.Process(node.pid).children(recursive=True)
                if "clientapp" in " ".join(c.cmdline())}
    except psutil.Error:
        return set()


def _prepare_machines(federation: Federation) -> None:
    """Each "machine" makes its own folder from its share of the source, as the README says."""
    jobs = [subprocess.Popen([*FEDROUTER, "deploy", "prepare-node", "--client", str(i), "--node-dir",
                              str(federation.node_dir(i)), "--preset", "smoke", "--clients", str(CLIENTS), "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(CLIENTS)]
    for i, job in enumerate(jobs):
        _, err = job.communicate(timeout=600)
        assert job.returncode == 0, err[-2000:]
        made = read_centroids(federation.node_dir(i) / "centroids.parquet")[0]
        server = read_centroids(federation.run.centroids_file(client_name(i)))[0]
        assert made.shape == server.shape and np.allclose(made, server, atol=1e-4)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_deployment_federation_survives_node_and_server_crashes(federation: Federation) -> None:
    started = time.monotonic()
    _prepare_machines(federation)
    federation.start()
    run = federation.run
    victim = 2
    run_id = federation.submit()
    seen: set[int] = set()

    def training_started() -> bool:  # the node's first ClientApp answers the centroid query, the second trains
        seen.update(_clientapp_pids(federation.nodes[victim]))
        return len(seen) >= 2

    # 1. a SuperNode dies mid-round and comes back on the same machine folder under a new node id
    federation.wait(run_id, timeout=300, until=training_started)
    round_one, round_two = (run.round_dir("fedrouter", r) / "state.json" for r in (1, 2))
    assert not round_one.exists(), "the kill came after round 1 ended; the test needs it mid-round"
    federation.kill(federation.nodes[victim])
    killed_at = time.time()
    federation.start_node(victim)

    # 2. the SuperLink and the ServerApp it started die after round 2 is saved; the restarted link
    # reads the registrations from its database, and the resubmitted run resumes after round 2
    federation.wait(run_id, timeout=600, until=round_two.exists)
    federation.kill(federation.link)
    assert not leftovers({federation.link.pid})
    written = {r: (run.round_dir("fedrouter", r) / "state.json").stat().st_mtime_ns for r in (1, 2)}
    # 3. meanwhile the server forgets every test row and test embedding: the resubmitted run trains
    # its last round and then has each node score its own test set (evaluate=true, the same run)
    held = [*run.stage_dir("partition").rglob("test*.parquet"), *run.stage_dir("embed").rglob("test*.parquet")]
    assert held
    for path in held:
        path.unlink()
    federation.start_link()  # same address; the SuperNodes reconnect on their own
    status = federation.wait(federation.submit(evaluate=True), timeout=900)
    assert status == "finished:completed", f"run ended {status}:\n{federation.logs()}"
    seconds = time.monotonic() - started
    federation.stop()  # the fixture checks nothing is left

    # round 1 closed at its short timeout, not the default hour (with room for the server's work)
    assert round_one.stat().st_mtime - killed_at < FAULT_ROUND_TIMEOUT + 60
    assert {r: (run.round_dir("fedrouter", r) / "state.json").stat().st_mtime_ns for r in (1, 2)} == written
    summary = run.require("simulate", "fedrouter")["summary"]
    assert summary["rounds_completed"] == ROUNDS and summary["failed_jobs"] >= 1
    metrics = pq.read_table(run.simulate_dir("fedrouter") / "metrics.parquet").to_pylist()
    assert {m["round"] for m in metrics} == set(range(1, ROUNDS + 1))
    status_of = {(m["round"], m["client"]): m["status"] for m in metrics}
    assert status_of[(1, victim)] in ("missing", "failed")
    assert status_of[(1, 0)] == status_of[(1, 1)] == "ok"  # the others' work in round 1 was kept
    assert any(status_of.get((r, victim)) == "ok" for r in range(2, ROUNDS + 1)), metrics  # the victim came back
    adapters = sorted((run.round_dir("fedrouter", ROUNDS) / "adapters").iterdir())
    assert adapters and all((a / "adapter_model.safetensors").exists() for a in adapters)
    # each SuperNode read only its own machine's folder; the run dir's shared nodes/ folder was never made
    assert not run.stage_dir("nodes").exists()

    config = load_config(run.config_path)
    scores = json.loads((run.evaluate_dir("fedrouter", "local+nodes") / "scores.json").read_text())
    assert scores["on"] == "nodes" and scores["missing_clients"] == {}
    assert scores["samples"] == CLIENTS * config.data.test_per_client
    assert set(scores["per_client"]) == {client_name(i) for i in range(CLIENTS)}
    assert scores["routing_accuracy"] > 0.5  # 3 smoke clients of 24 rows: most prompts find their task
    assert not list(run.root.rglob("predictions.parquet"))  # predictions stay on the nodes
    for i in range(CLIENTS):
        kept = pq.read_table(federation.node_dir(i) / "evaluations" / "fedrouter" / "local+nodes" / "predictions.parquet")
        assert kept.num_rows == config.data.test_per_client
    print(f"deployment federation with its evaluation on the nodes: {seconds:.1f}s")
