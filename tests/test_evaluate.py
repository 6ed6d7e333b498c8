"""evaluate, generate and export on the smoke FedRouter run; bad input to evaluate."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fedrouter_cli.config import build_config, resolve_config
from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.model.generate import BASE, generate
from fedrouter_cli.rundir import RunDir
from fedrouter_cli.router import nearest
from fedrouter_cli.stages.evaluate import pick_round, run_evaluate

FEDROUTER = [sys.executable, "-m", "fedrouter_cli"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*FEDROUTER, *args], capture_output=True, text=True)


def test_router_picks_nearest_and_checks_dimensions() -> None:
    centroids = np.array([[0.0, 0.0], [10.0, 10.0]], dtype=np.float32)
    assert nearest(np.array([[1.0, 1.0], [9.0, 8.0]], dtype=np.float32), centroids).tolist() == [0, 1]
    with pytest.raises(FedrouterError, match="dimension 3 but the centroids 2"):
        nearest(np.zeros((1, 3), dtype=np.float32), centroids)


@pytest.fixture(scope="module")
def evaluated(smoke_simulated: tuple[Path, dict], tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("evaluated") / "run"
    shutil.copytree(smoke_simulated[0], run_dir)
    return run_dir


@pytest.mark.parametrize("mode", ["local", "global"])
def test_evaluate_scores_and_routes(evaluated: Path, mode: str) -> None:
    result = cli("evaluate", "--run-dir", str(evaluated), "--mode", mode, "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    for key in ("rouge1", "rouge2", "rougeL", "routing_accuracy", "samples", "seconds", "per_task", "per_client"):
        assert key in out
    assert out["routing_accuracy"] == 1.0  # synthetic tasks are cleanly separable
    assert set(out["per_client"]) == {"c00", "c01", "c02", "c03"}
    table = pq.read_table(out["predictions_path"])
    assert {"client", "id", "task", "adapter", "prediction", "reference", "rouge1", "rouge2", "rougeL"} <= set(table.column_names)
    assert len(table) == out["samples"] and all(a.startswith("g") for a in table.column("adapter").to_pylist())


def test_base_model_row_and_generate_and_export(evaluated: Path, tmp_path: Path) -> None:
    base = json.loads(cli("evaluate", "--run-dir", str(evaluated), "--alg", "base", "--json").stdout)
    assert base["alg"] == "base" and base["routing_accuracy"] is None and base["samples"] > 0
    answer = cli("generate", "--run-dir", str(evaluated), "--json",
                 "Task: headline generation.\nWrite a headline for this article.\nArticle: Rain fell on Monday.")
    assert answer.returncode == 0, answer.stderr[-2000:]
    payload = json.loads(answer.stdout)
    assert payload["adapter"] in payload["distances"] and isinstance(payload["answer"], str)
    exported = cli("export", "--run-dir", str(evaluated), "--out", str(tmp_path / "export"), "--json")
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert (tmp_path / "export" / "README.md").exists()
    assert len(pq.read_table(tmp_path / "export" / "router" / "centroids.parquet")) == len(json.loads(exported.stdout)["adapters"])
    again = cli("export", "--run-dir", str(evaluated), "--out", str(tmp_path / "export"))
    assert again.returncode == 2 and "not empty" in again.stderr
    report = cli("report", "--run-dir", str(evaluated), "--run-dir", str(evaluated), "--json")
    assert report.returncode == 0, report.stderr[-2000:]
    table = {(e["method"], e["mode"]): e for e in json.loads(report.stdout)["table"]}
    assert table[("base", "-")]["rouge1"] == base["rouge1"] and table[("base", "-")]["seeds"] == 2
    assert table[("base", "-")]["rouge1_std"] == 0.0
    assert (evaluated / "report" / "rouge1.png").read_bytes()[:4] == b"\x89PNG"
    assert "| base |" in (evaluated / "report" / "report.md").read_text()


def test_generation_strategies_agree(evaluated: Path) -> None:
    """Mixed-adapter batches give the same answers as one adapter per batch and one sample at a time."""
    from fedrouter_cli.model.lora import load_adapter, lora_config, peft_model, set_adapter_weights

    run = RunDir(evaluated)
    config = resolve_config(run.config_path, None, {})
    model, tokenizer = peft_model(config.model.model, config.train)
    adapters_dir = next(evaluated.glob("simulate/fedrouter/rounds/r0002/adapters"))
    names = sorted(p.name for p in adapters_dir.iterdir())[:2]
    for name in names:
        model.add_adapter(name, lora_config(config.train))
        weights = load_adapter(adapters_dir / name)
        set_adapter_weights(model, {k: v + 0.05 * (k.count("lora_B")) for k, v in weights.items()}, adapter_name=name)
    model.eval()
    prompts = pq.read_table(run.partition_file("c00", "test")).column("instruction").to_pylist()[:4]
    routed = [names[0], names[-1], BASE, names[0]]
    try:
        outputs = {s: generate(model, tokenizer, prompts, routed, strategy=s, max_new_tokens=6, batch_size=4)
                   for s in ("mixed", "grouped", "per-sample")}
    finally:
        for name in names:
            model.delete_adapter(name)
    assert outputs["mixed"] == outputs["grouped"] == outputs["per-sample"]


def test_pick_round_counts_only_rounds_whose_state_is_saved(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    with pytest.raises(FedrouterError, match="no rounds of fedit"):
        pick_round(run, "fedit", 0)
    for number in (2, 10, 1):
        run.round_dir("fedit", number).mkdir(parents=True)
        (run.round_dir("fedit", number) / "state.json").write_text("{}")
    run.round_dir("fedit", 11).mkdir()  # a round being written: its state is not in place yet
    assert pick_round(run, "fedit", 0) == 10
    assert pick_round(run, "fedit", 2) == 2
    with pytest.raises(FedrouterError, match="completed rounds are 1..10"):
        pick_round(run, "fedit", 11)


def test_evaluate_bad_input(smoke_copy: Path, evaluated: Path) -> None:
    no_sim = cli("evaluate", "--run-dir", str(smoke_copy))
    assert no_sim.returncode == 2 and "run `fedrouter simulate --alg fedrouter` first" in no_sim.stderr
    assert "Traceback" not in no_sim.stderr
    unknown = cli("evaluate", "--run-dir", str(evaluated), "--alg", "fedmagic")
    assert unknown.returncode == 2 and "Unknown algorithm 'fedmagic'" in unknown.stderr
    bad_round = cli("evaluate", "--run-dir", str(evaluated), "--round", "9")
    assert bad_round.returncode == 2 and "Round 9 of fedrouter does not exist" in bad_round.stderr
    # test embeddings of another dimension than the centroids
    run = RunDir(evaluated)
    path = run.embedding_file("c00", "test")
    table = pq.read_table(path)
    flat = pa.array(np.zeros(len(table) * 7, dtype=np.float32))
    pq.write_table(pa.table({"id": table.column("id"), "embedding": pa.FixedSizeListArray.from_arrays(flat, 7)}), path)
    before = {p: p.read_bytes() for p in evaluated.rglob("*.json")}
    mismatch = cli("evaluate", "--run-dir", str(evaluated), "--force")
    assert mismatch.returncode == 2 and "dimension 7 but the centroids 384" in mismatch.stderr
    assert {p: p.read_bytes() for p in evaluated.rglob("*.json")} == before
    pq.write_table(table, path)
