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
    assert "fedrouter_cli/stages/server_app.py" in names and "fedrouter_cli/federation/client_app.py" in names
    assert not [n for n in names if n.startswith(("bench/", "tests/"))]  # the FAB holds the package only


def test_a_simulated_node_finds_its_folder_through_the_run_config(tmp_path: Path) -> None:
    """`flwr run` on a local simulation: the node config holds a partition id, the run config the
    run dir; a deployed SuperNode names its folder itself; anything else is one plain error."""
    assert node_folder({"partition-id": 3}, None, {"run-dir": str(tmp_path)}) == tmp_path / "nodes" / "c03"
    assert node_folder({"partition-id": 1}, tmp_path / "x") == tmp_path / "x" / "c01"
    assert node_folder({"data-dir": "/data/c05", "partition-id": 0}, None, {"run-dir": "/r"}) == Path("/data/c05")
    with pytest.raises(RuntimeError, match="data-dir"):
        node_folder({"partition-id": 0}, None, {"run-dir": ""})


@pytest.mark.slow
def test_flwr_run_on_a_local_simulation_trains_what_fedrouter_simulate_trains(smoke_data: Path,
                                                                              smoke_simulated, tmp_path: Path) -> None:
    """`flwr run .` from the repository, as a Flower user runs any app: Flower starts its own local
    SuperLink (simulation, Ray backend) and the app trains the prepared smoke run dir; the final
    adapters are those `fedrouter simulate` trained with the same settings (the smoke_simulated
    run), under the same fingerprint, so `fedrouter evaluate` takes the run as its own."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    import numpy as np
    import psutil
    from safetensors.numpy import load_file

    run = tmp_path / "run"
    shutil.copytree(smoke_data, run)
    home = tmp_path / "flwr-home"
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "FLWR_HOME": str(home), "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "FLWR_TELEMETRY_ENABLED": "0",
           "FLWR_DISABLE_UPDATE_CHECK": "1", "HF_HUB_OFFLINE": "1",
           # ports of its own: the deployment test's SuperLink may be up meanwhile
           "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": "39291", "FLWR_LOCAL_CONTROL_API_PORT": "39293"}
    try:
        done = subprocess.run([str(Path(bin_dir) / "flwr"), "run", str(REPO), "local",
                               "--run-config", f'run-dir="{run}"',
                               "--federation-config", "num-supernodes=4 client-resources-num-cpus=1", "--stream"],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    finally:  # the local SuperLink Flower started outlives `flwr run`: stop everything it spawned
        for process in psutil.process_iter(["cmdline"]):
            if any(str(home) in part for part in process.info["cmdline"] or []):
                process.kill()
    manifest = run / "simulate" / "fedrouter" / "manifest.json"
    assert manifest.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    theirs, ours = json.loads(manifest.read_text()), json.loads(
        (smoke_simulated[0] / "simulate" / "fedrouter" / "manifest.json").read_text())
    assert theirs["fingerprint"] == ours["fingerprint"] and theirs["summary"]["rounds_completed"] == 2
    final = "rounds/r0002/adapters"
    trained = sorted((run / "simulate" / "fedrouter" / final).iterdir())
    reference = smoke_simulated[0] / "simulate" / "fedrouter" / final
    assert [p.name for p in trained] == sorted(p.name for p in reference.iterdir())
    for adapter in trained:
        a = load_file(str(adapter / "adapter_model.safetensors"))
        b = load_file(str(reference / adapter.name / "adapter_model.safetensors"))
        assert all(np.allclose(a[k], b[k], rtol=1e-4, atol=1e-6) for k in b), adapter.name  # thread counts may differ
