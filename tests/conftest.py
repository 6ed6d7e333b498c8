"""Shared fixtures: a quiet offline environment, the shared real data, prepared smoke runs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_FLAN = REPO.parent / "shared" / "data" / "flan"
FLAN_TASKS = ("glue_qqp", "web_nlg_en", "gigaword", "trec")

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_TMPDIR", "/tmp/ray_fedrouter_tests")
os.environ.setdefault("FLWR_HOME", "/tmp/flwr_home_fedrouter_tests")


def needs_flan() -> pytest.MarkDecorator:
    return pytest.mark.skipif(not SHARED_FLAN.is_dir(), reason="../shared/data/flan is not present")


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory) -> Path:
    """A run dir with the data stages done on the smoke preset (synthetic data, MiniLM)."""
    from fedrouter_cli.config import resolve_config, save_config
    from fedrouter_cli.pipeline import prepare
    from fedrouter_cli.rundir import RunDir

    run = RunDir(tmp_path_factory.mktemp("smoke") / "run")
    config = resolve_config(run.config_path, "smoke", {})
    prepare(config, run, "cluster-local")
    save_config(run.config_path, config)
    return run.root


@pytest.fixture
def smoke_copy(smoke_data: Path, tmp_path: Path) -> Path:
    """A private copy of the prepared smoke run dir."""
    target = tmp_path / "run"
    shutil.copytree(smoke_data, target)
    return target


@pytest.fixture(scope="session")
def smoke_simulated(smoke_data: Path, tmp_path_factory) -> tuple[Path, dict]:
    """The smoke run dir after `fedrouter simulate --preset smoke` (2 rounds of FedRouter)."""
    import json
    import subprocess
    import sys

    target = tmp_path_factory.mktemp("simulated") / "run"
    shutil.copytree(smoke_data, target)
    result = subprocess.run([sys.executable, "-m", "fedrouter_cli", "simulate", "--run-dir", str(target),
                             "--preset", "smoke", "--json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return target, json.loads(result.stdout)
