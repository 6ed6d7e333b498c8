"""The repository is a Flower App: pyproject.toml declares the ServerApp and ClientApp that
`fedrouter deploy` runs, with the same run config, and Flower's own checks accept it (the FAB
`flwr run .` would upload builds and holds the package's code)."""

from __future__ import annotations

import io
import tomllib
import zipfile
from pathlib import Path

import pytest

from fedrouter_cli.deploy import CLIENT_APP, RUN_CONFIG_DEFAULTS, SERVER_APP, write_app
from fedrouter_cli.federation.node import node_folder

REPO = Path(__file__).resolve().parents[1]


def test_the_repository_declares_the_deployed_app_with_its_run_config(tmp_path: Path) -> None:
    from flwr.cli.build import build_fab_from_disk
    from flwr.common.config import validate_config

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())
    app = declared["tool"]["flwr"]["app"]
    assert app["components"] == {"serverapp": SERVER_APP, "clientapp": CLIENT_APP}
    assert app["config"] == RUN_CONFIG_DEFAULTS  # one source: the app folder `deploy` writes has the same
    generated = tomllib.loads((write_app(tmp_path / "app") / "pyproject.toml").read_text())["tool"]["flwr"]["app"]
    assert (generated["components"], generated["config"]) == (app["components"], app["config"])
    valid, errors, _ = validate_config(declared, check_module=True, project_dir=REPO)
    assert valid, errors
    names = zipfile.ZipFile(io.BytesIO(build_fab_from_disk(REPO))).namelist()
    assert "fedrouter_cli/stages/deploy_server.py" in names and "fedrouter_cli/federation/client_app.py" in names
    assert not [n for n in names if n.startswith(("bench/", "tests/"))]  # the FAB holds the package only


def test_a_simulated_node_finds_its_folder_through_the_run_config(tmp_path: Path) -> None:
    """`flwr run` on a local simulation: the node config holds a partition id, the run config the
    run dir; a deployed SuperNode names its folder itself; anything else is one plain error."""
    assert node_folder({"partition-id": 3}, None, {"run-dir": str(tmp_path)}) == tmp_path / "nodes" / "c03"
    assert node_folder({"partition-id": 1}, tmp_path / "x") == tmp_path / "x" / "c01"
    assert node_folder({"data-dir": "/data/c05", "partition-id": 0}, None, {"run-dir": "/r"}) == Path("/data/c05")
    with pytest.raises(RuntimeError, match="data-dir"):
        node_folder({"partition-id": 0}, None, {"run-dir": ""})
