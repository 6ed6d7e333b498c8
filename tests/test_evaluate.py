"""evaluate, generate, export and report on the smoke FedRouter run (tiny model, in process
through Typer's CliRunner); bad input to evaluate."""

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from fedrouter_cli.cli.app import app
from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.federation.run_output import pick_round
from fedrouter_cli.metrics import ROUGE_KEYS, rouge
from fedrouter_cli.model.generate import BASE, generate
from fedrouter_cli.presets import resolve_config
from fedrouter_cli.router import nearest
from fedrouter_cli.rundir import RunDir


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def ok_json(*args: str) -> dict:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_router_picks_nearest_and_checks_dimensions() -> None:
    centroids = np.array([[0.0, 0.0], [10.0, 10.0]], dtype=np.float32)
    assert nearest(np.array([[1.0, 1.0], [9.0, 8.0]], dtype=np.float32), centroids).tolist() == [0, 1]
    with pytest.raises(FedrouterError, match="dimension 3 but the centroids 2"):
        nearest(np.zeros((1, 3), dtype=np.float32), centroids)


@pytest.mark.parametrize("mode", ["local", "global"])
def test_evaluate_scores_and_routes(simulated_copy: Path, mode: str) -> None:
    out = ok_json("evaluate", "--run-dir", str(simulated_copy), "--mode", mode)
    for key in ("routing_accuracy", "samples", "seconds", "per_task", "per_client"):
        assert key in out
    assert out["routing_accuracy"] == 1.0  # synthetic tasks are cleanly separable
    assert set(out["per_client"]) == {"c00", "c01", "c02", "c03"}
    table = pq.read_table(out["predictions_path"]).to_pylist()
    assert len(table) == out["samples"] == 4 * 4
    assert all(row["adapter"].startswith("g") and row["reference"] for row in table)
    for row in table:  # every stored score is rouge-score's on the stored texts
        assert {k: row[k] for k in ROUGE_KEYS} == pytest.approx(rouge(row["prediction"], row["reference"]))
    assert out["rouge1"] == pytest.approx(np.mean([np.mean([r["rouge1"] for r in table if r["client"] == c])
                                                   for c in out["per_client"]]), abs=1e-4)


def test_base_model_row_and_generate_and_export(simulated_copy: Path, tmp_path: Path) -> None:
    base = ok_json("evaluate", "--run-dir", str(simulated_copy), "--alg", "base")
    assert base["alg"] == "base" and base["routing_accuracy"] is None and base["samples"] == 16
    settings = [simulated_copy / "config.toml", simulated_copy / "typed.toml"]
    saved = [path.read_bytes() for path in settings]
    payload = ok_json("generate", "--run-dir", str(simulated_copy), "--max-new-tokens", "3", "--round", "1",
                      "Task: headline generation.\nWrite a headline for this article.\nArticle: Rain fell on Monday.")
    assert payload["adapter"] in payload["distances"]
    assert payload["distances"][payload["adapter"]] == min(payload["distances"].values())
    assert payload["answer"].strip()  # the tiny model's words are random, but there are some
    exported = ok_json("export", "--run-dir", str(simulated_copy), "--out", str(tmp_path / "export"))
    assert (tmp_path / "export" / "README.md").exists()
    assert len(pq.read_table(tmp_path / "export" / "router" / "centroids.parquet")) == len(exported["adapters"])
    again = cli("export", "--run-dir", str(simulated_copy), "--out", str(tmp_path / "export"), "--round", "1")
    assert again.exit_code == 2 and "not empty" in again.stderr
    replaced = ok_json("export", "--run-dir", str(simulated_copy), "--out", str(tmp_path / "export"), "--round", "1",
                       "--force")  # an earlier export is replaced whole ...
    assert replaced["round"] == 1 and (tmp_path / "export" / "README.md").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")  # ... any other folder's contents never
    refused = cli("export", "--run-dir", str(simulated_copy), "--out", str(tmp_path / "mine"), "--force")
    assert refused.exit_code == 2 and "holds no earlier export" in refused.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    # an exported adapter names a base model that PEFT's auto class loads by itself (here the tiny
    # model's folder; for the offline default, its hub id)
    from peft import AutoPeftModelForCausalLM

    first = tmp_path / "export" / "adapters" / exported["adapters"][0]
    named = json.loads((first / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert Path(named).is_absolute() and (Path(named) / "config.json").exists()
    assert AutoPeftModelForCausalLM.from_pretrained(str(first)).peft_config
    ok_json("evaluate", "--run-dir", str(simulated_copy), "--mode", "local")  # a cache hit after the test above
    report = ok_json("report", "--run-dir", str(simulated_copy))
    # one-off commands (generate, export, report; evaluate's --mode and --round) change nothing a
    # later command reads
    ok_json("evaluate", "--run-dir", str(simulated_copy), "--mode", "global", "--round", "1")
    assert [path.read_bytes() for path in settings] == saved
    table = {(e["method"], e["mode"]): e for e in report["table"]}
    assert table[("base", "-")]["rouge1"] == base["rouge1"] and table[("base", "-")]["seeds"] == 1
    interval = table[("base", "-")]["rouge1_interval"]
    assert interval["low"] <= base["rouge1"] <= interval["high"]  # (the tiny random model may score 0 everywhere)
    # FedRouter against the base model, paired on the same test samples
    gaps = {(g["method"], g["against"]): g for g in report["paired"]}
    gap = gaps[("fedrouter/local", "base/-")]
    assert gap["samples"] == 16 and gap["low"] <= gap["mean"] <= gap["high"]
    assert gap["mean"] == pytest.approx(table[("fedrouter", "local")]["rouge1"] - base["rouge1"], abs=1e-3)
    assert "95% interval" in (simulated_copy / "report" / "report.md").read_text()
    assert (simulated_copy / "report" / "rouge1.png").read_bytes()[:4] == b"\x89PNG"
    assert "| base |" in (simulated_copy / "report" / "report.md").read_text()
    # the synthetic paraphrase task answers yes/no: scored by label too, against its majority floor
    assert set(table[("base", "-")]["label_accuracy"]) == {"paraphrase"}
    assert "Always answering" in (simulated_copy / "report" / "report.md").read_text()


def test_generation_strategies_agree(simulated_copy: Path) -> None:
    """Mixed-adapter batches give the same answers as one adapter per batch and one sample at a time."""
    from fedrouter_cli.model.lora import (
        load_adapter,
        lora_config,
        peft_model,
        set_adapter_weights,
    )

    run = RunDir(simulated_copy)
    config = resolve_config(run.config_path, None, {})
    model, tokenizer = peft_model(config.model.model, config.train)
    adapters_dir = run.round_dir("fedrouter", 2) / "adapters"
    names = sorted(p.name for p in adapters_dir.iterdir())[:2]
    for name in names:
        model.add_adapter(name, lora_config(config.train))
        weights = load_adapter(adapters_dir / name)
        # large B so the adapters, and so the answers, clearly differ from the base model's
        set_adapter_weights(model, {k: v + 0.5 * (k.count("lora_B")) for k, v in weights.items()}, adapter_name=name)
    model.eval()
    prompts = pq.read_table(run.partition_file("c00", "test")).column("instruction").to_pylist()[:4]
    routed = [names[0], names[-1], BASE, names[0]]
    try:
        outputs = {s: generate(model, tokenizer, prompts, routed, strategy=s, max_new_tokens=6, batch_size=4)
                   for s in ("mixed", "grouped", "per-sample")}
        with model.disable_adapter():
            base_only = generate(model, tokenizer, prompts, [BASE] * 4, strategy="per-sample", max_new_tokens=6)
    finally:
        for name in names:
            model.delete_adapter(name)
    assert outputs["mixed"] == outputs["grouped"] == outputs["per-sample"]
    assert outputs["mixed"][2] == base_only[2]  # the base row ran without an adapter
    assert outputs["mixed"][0] != base_only[0]  # and the adapter rows with theirs


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


def test_evaluate_bad_input(smoke_copy: Path, smoke_simulated: tuple[Path, dict], tmp_path: Path) -> None:
    no_sim = cli("evaluate", "--run-dir", str(smoke_copy))
    assert no_sim.exit_code == 2 and "run `fedrouter simulate --alg fedrouter` first" in no_sim.stderr
    assert "Traceback" not in no_sim.output
    evaluated = tmp_path / "evaluated"  # a private copy: this test spoils files in it
    shutil.copytree(smoke_simulated[0], evaluated)
    unknown = cli("evaluate", "--run-dir", str(evaluated), "--alg", "fedmagic")
    assert unknown.exit_code == 2 and "Unknown algorithm 'fedmagic'" in unknown.stderr
    bad_round = cli("evaluate", "--run-dir", str(evaluated), "--round", "9")
    assert bad_round.exit_code == 2 and "Round 9 of fedrouter does not exist" in bad_round.stderr
    # test embeddings of another dimension than the centroids
    path = RunDir(evaluated).embedding_file("c00", "test")
    table = pq.read_table(path)
    flat = pa.array(np.zeros(len(table) * 7, dtype=np.float32))
    pq.write_table(pa.table({"id": table.column("id"), "embedding": pa.FixedSizeListArray.from_arrays(flat, 7)}), path)
    before = {p: p.read_bytes() for p in evaluated.rglob("*.json")}
    mismatch = cli("evaluate", "--run-dir", str(evaluated), "--force")
    assert mismatch.exit_code == 2 and "dimension 7 but the centroids 1408" in mismatch.stderr
    assert {p: p.read_bytes() for p in evaluated.rglob("*.json")} == before


def test_adapters_name_a_base_model_other_tools_can_load(tmp_path: Path) -> None:
    from fedrouter_cli.model.loading import model_reference

    assert model_reference("smollm2-135m-instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert model_reference("meta-llama/Llama-3.2-1B") == "meta-llama/Llama-3.2-1B"
    (tmp_path / "m").mkdir()
    assert model_reference(str(tmp_path / "m")) == str((tmp_path / "m").resolve())


def test_the_exported_router_script_routes_as_generate_does(simulated_copy: Path, tmp_path: Path) -> None:
    """router/route.py, run with nothing from fedrouter, picks the adapter `fedrouter generate` picks."""
    import ast
    import runpy

    run = RunDir(simulated_copy)
    prompts = [pq.read_table(run.partition_file(client, "test")).column("instruction")[0].as_py()
               for client in run.clients()]
    ok_json("export", "--run-dir", str(simulated_copy), "--out", str(tmp_path / "export"), "--round", "1")
    script = tmp_path / "export" / "router" / "route.py"
    nodes = list(ast.walk(ast.parse(script.read_text())))
    imported = {alias.name.split(".")[0] for node in nodes
                if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in nodes if isinstance(node, ast.ImportFrom) and node.module}
    assert "fedrouter_cli" not in imported
    routed = runpy.run_path(str(script))["route"](prompts, script.parent)
    for prompt, by_script in zip(prompts, routed):
        by_tool = ok_json("generate", "--run-dir", str(simulated_copy), "--max-new-tokens", "1", "--round", "1", prompt)
        assert by_script["adapter"] == by_tool["adapter"]
        assert by_script["distances"] == pytest.approx(by_tool["distances"], abs=2e-4)
    assert len({r["adapter"] for r in routed}) > 1  # the smoke tasks reach different adapters
