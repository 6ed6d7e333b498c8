"""The same ClientApp on Flower's deployment engine, in one federation that covers what a real one
meets: a SuperLink (TLS, its state in a database, only enrolled node keys admitted) and 3
SuperNodes as processes on 127.0.0.1, each machine's folder made by `fedrouter deploy prepare-node
--data` from that site's own file (JSONL, CSV, Parquet; its own column names; no task column),
a server that holds no rows at all, a stranger's SuperNode refused, a SuperNode killed mid-round
and restarted (it rejoins), the SuperLink and its ServerApp killed after a saved round and
restarted (the run resumes with the rejoined node), and at the end an evaluation on the nodes.
The tiny model keeps each ClientApp process cheap.

The federation itself runs in the background from the session's start (deployment_scenario.py),
and its test runs last and checks what it recorded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from deployment_scenario import FAULT_ROUND_TIMEOUT, ROUNDS, STRANGER, VICTIM
from federation_harness import CLIENTS

from fedrouter_cli.config_file import build_config, load_config, save_config
from fedrouter_cli.presets import resolve_config
from fedrouter_cli.rundir import RunDir, client_name
from fedrouter_cli.stages.cluster_local import read_centroids


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
    from fedrouter_cli.stages.pipeline import prepare

    run = RunDir(tmp_path_factory.mktemp("deploy") / "run")
    config = resolve_config(run.config_path, "smoke", {"data": {"clients": CLIENTS}, "model": {"model": tiny_model},
                                                       "train": {"rounds": ROUNDS, "round_timeout": FAULT_ROUND_TIMEOUT}})
    prepare(config, run, "cluster-local")
    save_config(run.config_path, config)
    return run.root


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_deployment_federation_survives_node_and_server_crashes(deployment_scenario) -> None:
    assert deployment_scenario is not None, "conftest starts the scenario when this test is selected"
    seen = deployment_scenario.result(timeout=1500)
    assert seen.status == "finished:completed", f"run ended {seen.status}:\n{seen.logs}"
    assert not seen.survivors, "Flower processes outlived the federation"
    run = seen.run
    round_one = run.round_dir("fedrouter", 1) / "state.json"
    # round 1 closed at its short timeout (or when Flower saw the node gone), not the default hour
    assert round_one.stat().st_mtime - seen.killed_at < FAULT_ROUND_TIMEOUT + 60
    assert round_one.stat().st_mtime_ns == seen.round_one_written  # resumed, not redone
    summary = run.require("simulate", "fedrouter")["summary"]
    assert summary["rounds_completed"] == ROUNDS and summary["failed_jobs"] >= 1
    metrics = pq.read_table(run.federation("fedrouter").metrics_file).to_pylist()
    assert {m["round"] for m in metrics} == set(range(1, ROUNDS + 1))
    status_of = {(m["round"], m["client"]): m["status"] for m in metrics}
    assert status_of[(1, VICTIM)] in ("missing", "failed")
    assert status_of[(1, 0)] == status_of[(1, 1)] == "ok"  # the others' work in round 1 was kept
    assert any(status_of.get((r, VICTIM)) == "ok" for r in range(2, ROUNDS + 1)), metrics  # the victim came back
    adapters = sorted(run.federation("fedrouter").adapters_dir(ROUNDS).iterdir())
    assert adapters and all((a / "adapter_model.safetensors").exists() for a in adapters)
    # each SuperNode read only its own machine's folder; the run dir's shared nodes/ folder was never made
    assert not run.nodes_root.exists()

    config = load_config(run.config_path)
    scores = json.loads(run.scores_file("fedrouter", "local+nodes").read_text())
    assert scores["on"] == "nodes" and scores["missing_clients"] == {}
    assert scores["samples"] == CLIENTS * config.data.test_per_client
    assert set(scores["per_client"]) == {client_name(i) for i in range(CLIENTS)}
    # no node has task labels: ROUGE per client, and no figure by task pretends otherwise
    assert scores["task_labels"] == "none" and scores["per_task"] == {} and scores["routing_accuracy"] is None
    assert not list(run.root.rglob("predictions.parquet"))  # predictions stay on the nodes
    # the server never held a row: no partition, embedding or cluster file, only settings and results
    assert not [p for stage in ("partition", "embed", "cluster-local") for p in run.stage_dir(stage).rglob("*.parquet")]

    # the stranger held a key and a folder but was never enrolled: refused at once, the refusal in
    # the SuperLink's log, and no round has a row from it (client 3)
    assert seen.stranger_exit not in (None, 0)
    assert "No SuperNode found with the given public key" in seen.link_log
    assert "Failed to activate SuperNode" in seen.stranger_log
    assert set(range(CLIENTS)) <= {m["client"] for m in metrics} and STRANGER not in {m["client"] for m in metrics}
