"""Shared fixtures: a quiet offline environment, a tiny model for plumbing tests, the shared real
data, prepared smoke runs, and Flower's simulation engine without Ray where Ray is not the point."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SHARED_FLAN = SHARED_DATA / "flan"
SHARED_RAW = SHARED_DATA / "raw"
FLAN_TASKS = ("glue_qqp", "web_nlg_en", "gigaword", "trec")
# the installed console script, as users run it (a few tests go through it as a real process)
FEDROUTER_SCRIPT = [str(Path(sys.executable).with_name("fedrouter"))]

# pytest-xdist's worker name ("gw0", "gw1"), empty in a serial run
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_TMPDIR", f"/tmp/ray_fedrouter_tests{WORKER}")
os.environ.setdefault("FLWR_HOME", f"/tmp/flwr_home_fedrouter_tests{WORKER}")
if WORKER:
    # Workers share the cores: each (and every process it starts) gets its share of torch threads,
    # set before torch is first imported; more threads than cores makes torch's workers spin.
    _share = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    os.environ["OMP_NUM_THREADS"] = str(_share)


def needs_flan() -> pytest.MarkDecorator:
    return pytest.mark.skipif(not SHARED_FLAN.is_dir(), reason="../shared/data/flan is not present")


def needs_raw() -> pytest.MarkDecorator:
    return pytest.mark.skipif(not SHARED_RAW.is_dir(), reason="../shared/data/raw is not present")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """Folder of a tiny random Llama with SmolLM2's tokenizer, for tests of the plumbing."""
    from tiny_model import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-model")))


@pytest.fixture
def inprocess(monkeypatch):
    """Flower's simulation engine runs ClientApps in this process (see inprocess_engine.py)."""
    import torch
    from inprocess_engine import install

    threads = torch.get_num_threads()  # the ClientApp sets the torch threads it was told to use
    yield install(monkeypatch)
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory, tiny_model: str) -> Path:
    """A run dir with the data stages done on the smoke preset (synthetic data, MiniLM), whose
    base model is the tiny one."""
    from fedrouter_cli.config_file import save_config
    from fedrouter_cli.presets import resolve_config
    from fedrouter_cli.rundir import RunDir
    from fedrouter_cli.stages.pipeline import prepare

    run = RunDir(tmp_path_factory.mktemp("smoke") / "run")
    config = resolve_config(run.config_path, "smoke", {"model": {"model": tiny_model}})
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
    """The smoke run dir after `fedrouter simulate --preset smoke --workers 1` (2 rounds of
    FedRouter, one worker of two torch threads) on Flower's simulation engine with the in-process
    backend. Ray runs for real in the tests that need it: the killed and resumed simulate
    (test_simulate.py) and `flwr run` on a local simulation federation (test_flower_app.py)."""
    import json

    import torch
    from inprocess_engine import install
    from typer.testing import CliRunner

    from fedrouter_cli.cli.app import app

    target = tmp_path_factory.mktemp("simulated") / "run"
    shutil.copytree(smoke_data, target)
    threads = torch.get_num_threads()  # the ClientApp sets the torch threads it was told to use
    with pytest.MonkeyPatch.context() as env:
        install(env)
        result = CliRunner().invoke(app, ["simulate", "--run-dir", str(target), "--preset", "smoke",
                                          "--workers", "1", "--json"])
    torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output[-3000:]
    return target, json.loads(result.stdout)


@pytest.fixture(scope="session")
def simulated_copy(smoke_simulated: tuple[Path, dict], tmp_path_factory) -> Path:
    """One shared copy of the simulated run for tests that add evaluations (never rounds) to it."""
    target = tmp_path_factory.mktemp("evaluated") / "run"
    shutil.copytree(smoke_simulated[0], target)
    return target


@pytest.fixture(scope="session")
def smoke(smoke_data, tmp_path_factory):
    """A copy of the prepared smoke run dir; each method's simulate + evaluate on first use, shared
    by the tests that ask (each method writes its own simulate/<alg>/). Flower's simulation engine
    runs the ClientApps in this process (the rules, not Ray, are tested with it)."""
    import time

    import torch
    from inprocess_engine import install

    from fedrouter_cli.presets import resolve_config
    from fedrouter_cli.rundir import RunDir
    from fedrouter_cli.stages.evaluate import run_evaluate
    from fedrouter_cli.stages.pipeline import prepare
    from fedrouter_cli.stages.simulate import run_simulate

    run = RunDir(tmp_path_factory.mktemp("baselines") / "run")
    shutil.copytree(smoke_data, run.root)

    def config(alg: str):
        return resolve_config(run.config_path, "smoke", {"train": {"alg": alg}})

    prepare(config("fedit"), run, "cluster-local")  # reuses the copied stages
    done: dict[str, dict] = {}

    def outcome(alg: str) -> dict:
        if alg not in done:
            threads = torch.get_num_threads()  # the ClientApp sets the torch threads it was told to use
            with pytest.MonkeyPatch.context() as env:
                install(env)
                started = time.perf_counter()
                sim = run_simulate(config(alg), run).summary
                middle = time.perf_counter()
                evaluated = run_evaluate(config(alg), run).summary
            torch.set_num_threads(threads)
            done[alg] = {"simulate": sim, "evaluate": evaluated, "config": config(alg), "run": run}
            print(f"\n{alg}: simulate {middle - started:.1f}s, evaluate {time.perf_counter() - middle:.1f}s")
        return done[alg]

    return outcome


DEPLOYMENT_TEST = "test_deployment.py::test_deployment_federation_survives_node_and_server_crashes"
# the xdist controller's deployment scenario (see pytest_configure)
CONTROLLER_SCENARIO = pytest.StashKey["DeploymentScenario"]()


def pytest_collection_modifyitems(items: list) -> None:
    """Slow tests first, so that under workers none is left running alone at the end; the
    deployment test last: its federation runs in the background from the session's start (in this
    process when serial, in the xdist controller under workers), and the test only checks what it saw."""
    deployment = [item for item in items if item.nodeid.endswith(DEPLOYMENT_TEST)]
    rest = [item for item in items if item not in deployment]
    slow = [item for item in rest if item.get_closest_marker("slow")]
    items[:] = slow + [item for item in rest if item not in slow] + deployment


def pytest_configure(config) -> None:
    """Under pytest-xdist the controller, which otherwise only waits for its workers, gets a folder
    for the deployment scenario; it starts the scenario once a worker has collected its test."""
    distributed = getattr(config.option, "dist", "no") != "no" and getattr(config.option, "tx", None)
    if WORKER or not distributed or config.option.collectonly:
        return
    import tempfile

    from deployment_scenario import DeploymentScenario

    # one torch thread for each process the federation starts: two workers already share the cores
    folder = Path(tempfile.mkdtemp(prefix="fedrouter-deployment-"))
    config.stash[CONTROLLER_SCENARIO] = DeploymentScenario(folder, OMP_NUM_THREADS="1")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """The controller tells each worker where its scenario writes what it saw."""
    scenario = node.config.stash.get(CONTROLLER_SCENARIO, None)
    if scenario is not None:
        node.workerinput["deployment_scenario"] = str(scenario.root)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids: list[str]) -> None:
    scenario = node.config.stash.get(CONTROLLER_SCENARIO, None)
    if scenario is not None and not scenario.started and any(i.endswith(DEPLOYMENT_TEST) for i in ids):
        scenario.start()


def pytest_unconfigure(config) -> None:
    """No Flower process outlives the session; the controller's folder stays only if its scenario
    failed (the test's message names it)."""
    scenario = config.stash.get(CONTROLLER_SCENARIO, None)
    if scenario is None:
        return
    scenario.stop()
    if not scenario.started or (scenario.join(60) and scenario.error is None):
        shutil.rmtree(scenario.root, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def deployment_in_background(request, tmp_path_factory):
    """A serial session whose selection holds the deployment test starts its federation at once."""
    if WORKER or not any(item.nodeid.endswith(DEPLOYMENT_TEST) for item in request.session.items):
        yield None
        return
    from deployment_scenario import DeploymentScenario

    scenario = DeploymentScenario(tmp_path_factory.mktemp("deployment"), request.getfixturevalue("tiny_model"))
    scenario.start()
    try:
        yield scenario
    finally:
        scenario.stop()  # a session that ends early leaves no Flower process behind


@pytest.fixture(scope="session")
def deployment_scenario(deployment_in_background, request):
    """The running deployment federation: this process's, or the xdist controller's."""
    if deployment_in_background is not None:
        return deployment_in_background
    from deployment_scenario import ScenarioElsewhere

    folder = getattr(request.config, "workerinput", {}).get("deployment_scenario")
    assert folder, "under workers the controller runs the deployment scenario (conftest.pytest_configure)"
    return ScenarioElsewhere(Path(folder))


@pytest.fixture(scope="module")
def tokenizer():
    """The default model's tokenizer alone (no weights): the folder the GGUF was converted to."""
    from transformers import AutoTokenizer

    from fedrouter_cli.config import DEFAULT_MODEL
    from fedrouter_cli.model.loading import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL))


@pytest.fixture(scope="module")
def tiny_lm(tokenizer):
    """A randomly initialised two-layer Llama with the default model's vocabulary, LoRA-wrapped, its
    tokenizer and LoRA settings (one per test module)."""
    import torch
    from peft import get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from fedrouter_cli.config import TrainConfig
    from fedrouter_cli.model.lora import lora_config

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    train = TrainConfig(lora_r=2, lora_alpha=4, lora_dropout=0.0, target_modules=("q_proj", "v_proj"))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return get_peft_model(LlamaForCausalLM(config), lora_config(train)), tokenizer, train
