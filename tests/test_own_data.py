"""Each node brings its own data: `deploy prepare-node --data` on a site's own file (its format, its
column names, no task labels), a server that holds no rows (`--source nodes`), and the same rows
simulated as one file with a client column. The deployment itself runs in test_deployment.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from own_data import NODES, write_node_file, write_simulation_file
from typer.testing import CliRunner

from fedrouter_cli.cli.app import app
from fedrouter_cli.rundir import NodeDir, RunDir, client_name
from fedrouter_cli.stages.cluster_local import read_centroids


def _ok(*args: str) -> dict:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _refused(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return " ".join(result.output.split())


def test_nodes_from_their_own_files_cluster_as_a_simulation_of_the_same_rows(tmp_path: Path) -> None:
    for node in range(len(NODES)):
        path, columns = write_node_file(tmp_path / f"site{node}", node)
        made = _ok("deploy", "prepare-node", "--client", str(node), "--node-dir", str(tmp_path / "nodes" / client_name(node)),
                   "--data", str(path), *columns, "--preset", "smoke", "--n-clusters", "auto")
        assert made["purity"] is None  # no task column: no figure by task
        assert (made["rows"], made["test_rows"]) == (22, 4)  # 28 rows: 6 held out, of which the smoke preset tests 4
    run = RunDir(tmp_path / "sim")
    simulated = _ok("cluster-local", "--run-dir", str(run.root), "--preset", "smoke", "--n-clusters", "auto",
                    "--source", str(write_simulation_file(tmp_path / "all.jsonl")), "--client-column", "site",
                    "--clients", str(len(NODES)))
    assert simulated["purity"] is None
    for node in range(len(NODES)):
        name, folder = client_name(node), NodeDir(tmp_path / "nodes" / client_name(node))
        for split in ("train", "test"):
            assert pq.read_table(folder.rows_file(split)).select(["id", "instruction", "response"]).equals(
                pq.read_table(run.partition_file(name, split)).select(["id", "instruction", "response"]))
        at_node, sizes, _ = read_centroids(folder.centroids_file)
        in_simulation, sim_sizes, _ = read_centroids(run.centroids_file(name))
        assert sizes == sim_sizes and len(sizes) >= 2  # two tasks per site: more than one local cluster
        assert np.allclose(at_node, in_simulation, atol=1e-5)
        assert pq.read_table(folder.assignments_file).column("cluster").to_pylist() == \
            pq.read_table(run.assignments_file(name)).column("cluster").to_pylist()


def test_a_server_without_data_records_settings_and_refuses_what_needs_rows(tmp_path: Path) -> None:
    server = tmp_path / "server"
    done = _ok("cluster-local", "--run-dir", str(server), "--source", "nodes", "--clients", "3", "--preset", "smoke")
    assert done["on_nodes"] is True
    assert RunDir(server).clients() == ["c00", "c01", "c02"]
    assert not [p for p in server.rglob("*.parquet")]  # no rows, no embeddings, no centroids
    before = sorted(p.relative_to(server) for p in server.rglob("*"))
    for command in (["simulate"], ["evaluate"], ["select-k", "--level", "local"]):
        message = _refused(*command, "--run-dir", str(server))
        assert "lives on its nodes" in message and "fedrouter deploy submit" in message, message
    assert sorted(p.relative_to(server) for p in server.rglob("*")) == before
    from fedrouter_cli.config_file import build_config, load_config
    from fedrouter_cli.errors import FedrouterError
    from fedrouter_cli.stages.evaluate import run_evaluate

    everyone = build_config(load_config(RunDir(server).config_path), {"data": {"test_tasks": "all"}})
    with pytest.raises(FedrouterError, match="hold only their own"):  # what a deployment's ServerApp would run
        run_evaluate(everyone, RunDir(server), "base", on="nodes", grid=object())


def test_a_node_file_too_small_or_split_by_client_is_refused(tmp_path: Path) -> None:
    path, columns = write_node_file(tmp_path / "site", 0)
    node = str(tmp_path / "nodes" / "c00")
    message = _refused("deploy", "prepare-node", "--client", "0", "--node-dir", node, "--data", str(path), *columns,
                       "--preset", "smoke", "--test-fraction", "0.95")
    assert "fewer than one batch" in message and str(path) in message
    message = _refused("deploy", "prepare-node", "--client", "0", "--node-dir", node, "--data", str(path), *columns,
                       "--client-column", "note")
    assert "leave --client-column out" in message
    message = _refused("deploy", "prepare-node", "--client", "0", "--node-dir", node, "--data", str(path),
                       "--instruction-column", "question")
    assert "no column 'question'" in message and "records.jsonl" in message
    assert not (tmp_path / "nodes").exists()
