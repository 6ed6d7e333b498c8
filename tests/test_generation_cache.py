"""Predictions by content (generation_cache), token budgets per adapter and length-grouped batches."""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import REPO, SHARED_RAW, needs_raw
from typer.testing import CliRunner

from fedrouter_cli.cli.app import app
from fedrouter_cli.generation_cache import (
    Answer,
    GenerationCache,
    adapter_digest,
    answer_for,
)
from fedrouter_cli.model.train import draw_batches, response_token_budget


def evaluate(run: Path, *args: str) -> dict:
    result = CliRunner().invoke(app, ["evaluate", "--run-dir", str(run), *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def predictions(scores: dict) -> list[dict]:
    return pq.read_table(scores["predictions_path"]).to_pylist()


# -- the cache's rules ------------------------------------------------------------------------
def test_key_changes_with_every_input_it_names() -> None:
    base = dict(model="m|4bit=False|float32", adapter="abc", prompt="### Instruction:\nhi", max_length=128)
    key = GenerationCache.key(**base)
    for name, other in [("model", "m|4bit=False|bfloat16"), ("adapter", "abd"), ("prompt", "### Instruction:\nho"),
                        ("max_length", 64)]:
        assert GenerationCache.key(**{**base, name: other}) != key, name
    assert GenerationCache.key(**base) == key


def test_adapter_digest_sees_one_changed_weight_and_the_lora_scale() -> None:
    weights = {"a.lora_A.weight": np.ones((2, 4), np.float32), "a.lora_B.weight": np.zeros((4, 2), np.float32)}
    digest = adapter_digest(weights, (2, 4))
    changed = {k: v.copy() for k, v in weights.items()}
    changed["a.lora_B.weight"][3, 1] = np.float32(1e-7)
    assert adapter_digest(changed, (2, 4)) != digest
    assert adapter_digest(weights, (2, 8)) != digest  # same weights, another scale: other answers
    assert adapter_digest({k: v.copy() for k, v in reversed(weights.items())}, (2, 4)) == digest


def test_an_entry_serves_shorter_limits_and_finished_answers(tmp_path: Path) -> None:
    cache = GenerationCache(tmp_path / "g.sqlite")
    cut = Answer((5, 6, 7, 8), False, "five six seven eight")
    done = Answer((9, 10), True, "nine ten")
    cache.put({"cut": cut, "done": done})
    got = cache.get(["cut", "done", "absent"])
    assert got == {"cut": cut, "done": done}
    assert got["cut"].serves(4) and got["cut"].serves(2) and not got["cut"].serves(5)
    assert got["done"].serves(2) and got["done"].serves(500)
    assert answer_for(got["cut"], 2, lambda ids: f"decoded {ids}") == "decoded [5, 6]"
    assert answer_for(got["cut"], 4, lambda ids: "never") == "five six seven eight"
    # a shorter cut answer never replaces a longer one; a finished one does
    cache.put({"cut": Answer((5, 6), False, "five six")})
    assert cache.get(["cut"])["cut"] == cut
    cache.put({"cut": Answer((5, 6, 7, 8, 1), True, "all")})
    assert cache.get(["cut"])["cut"].finished


# -- token budgets and batches ------------------------------------------------------------------
def test_token_budget_is_the_99th_percentile_plus_margin() -> None:
    assert response_token_budget([2] * 150) == 7                 # yes/no + EOS: ceil(2.5) + 4
    assert response_token_budget(list(range(1, 101))) == 128     # p99 = 99: ceil(123.75) + 4
    assert response_token_budget([]) == 0


def _old_draw(lengths: list[int], steps: int, batch_size: int, seed: int) -> list[list[int]]:
    """train_steps' batch drawing before length grouping (the finished bench cells used it)."""
    rng, order, batches = random.Random(seed), [], []
    for _ in range(steps):
        batch = []
        while len(batch) < batch_size:
            if not order:
                order = rng.sample(range(len(lengths)), len(lengths))
            batch.append(order.pop())
        batches.append(batch)
    return batches


def test_ungrouped_batches_are_drawn_as_before_and_grouped_ones_pad_less() -> None:
    lengths = [random.Random(i).randint(20, 120) for i in range(37)]
    plain = draw_batches(lengths, 10, 4, random.Random(3), group_by_length=False)
    assert plain == _old_draw(lengths, 10, 4, 3)
    grouped = draw_batches(lengths, 10, 4, random.Random(3), group_by_length=True)
    assert grouped == draw_batches(lengths, 10, 4, random.Random(3), group_by_length=True)  # seeded
    assert sorted(sum(grouped, [])) == sorted(sum(plain, []))  # the same rows, other batches

    def padding(batches):
        return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)

    assert padding(grouped) < padding(plain) / 2


def test_batches_put_like_limits_together() -> None:
    from fedrouter_cli.model.generate import batches_of

    limits = [64, 7, 64, 7, 24, 7, 64]
    adapters = ["b", "a", "a", "a", "a", "a", "b"]
    batches = batches_of([10, 50, 30, 20, 40, 60, 70], adapters, limits, "mixed", 3)
    assert batches == [[5, 1, 3], [4], [2, 6, 0]]  # never two limits in a batch; longest prompt first
    assert batches_of([10, 50, 30, 20, 40, 60, 70], adapters, limits, "grouped", 3) == [[5, 1, 3], [4], [2], [6, 0]]


# -- through the real evaluate stage (tiny model) ------------------------------------------------
@pytest.fixture
def evaluated_twice(smoke_simulated: tuple[Path, dict], tmp_path: Path) -> tuple[Path, dict, dict]:
    run = tmp_path / "run"
    shutil.copytree(smoke_simulated[0], run)
    return run, evaluate(run, "--mode", "local"), evaluate(run, "--mode", "global")


def test_second_mode_with_the_same_routes_generates_nothing(evaluated_twice) -> None:
    run, local, global_ = evaluated_twice
    assert local["generated"] == local["samples"] == 16
    first, second = predictions(local), predictions(global_)
    assert [r["adapter"] for r in first] == [r["adapter"] for r in second]  # the smoke tasks route alike
    assert global_["generated"] == 0 and global_["generation_seconds"] == 0.0
    assert [r["prediction"] for r in first] == [r["prediction"] for r in second]
    assert global_["rouge1"] == local["rouge1"] and global_["per_task"] == local["per_task"]
    forced = evaluate(run, "--mode", "global", "--force")
    assert forced["generated"] == 16  # --force regenerates


def test_a_changed_setting_or_limit_is_a_miss_and_a_shorter_limit_a_prefix(evaluated_twice) -> None:
    run, _, _ = evaluated_twice
    # the smoke preset's --max-new-tokens is 6 and the tiny model never ends early: 8 asks for more
    longer = evaluate(run, "--mode", "local", "--max-new-tokens", "8")
    assert longer["generated"] == 16
    shorter = evaluate(run, "--mode", "local", "--max-new-tokens", "3")
    assert shorter["generated"] == 0  # prefixes of the cached answers
    fresh = evaluate(run, "--mode", "local", "--max-new-tokens", "3", "--force")
    assert fresh["generated"] == 16
    assert [r["prediction"] for r in predictions(shorter)] == [r["prediction"] for r in predictions(fresh)]
    other_length = evaluate(run, "--mode", "local", "--max-new-tokens", "3", "--eval-batch-size", "2")
    assert other_length["generated"] == 0  # the batch size is how, not what: not in the key


def test_a_changed_adapter_weight_or_prompt_is_a_miss(evaluated_twice) -> None:
    from fedrouter_cli.evaluation import generate_all, route
    from fedrouter_cli.presets import resolve_config
    from fedrouter_cli.rundir import RunDir
    from fedrouter_cli.stages.evaluate import _client_test, _round_inputs

    run_path, local, _ = evaluated_twice
    run = RunDir(run_path)
    config = resolve_config(run.config_path, None, {})
    tests = [_client_test(run, config, c) for c in range(4)]
    inputs = _round_inputs(run, "fedrouter", 2, tests)
    routings = [route(config, "fedrouter", t, inputs) for t in tests]
    cache = GenerationCache(run.generation_cache)
    answers, _, generated = generate_all(config, tests, routings, cache=cache)
    assert generated == 0
    assert sum(answers, []) == [r["prediction"] for r in predictions(local)]
    name = routings[0].names[0]
    build = routings[0].build[name]

    def nudged():
        weights = build()
        key = next(k for k in sorted(weights) if "lora_B" in k)
        weights[key] = weights[key] + np.float32(1e-3)
        return weights

    for routing in routings:
        if name in routing.build:
            routing.build[name] = nudged
    _, _, generated = generate_all(config, tests, routings, cache=cache)
    assert generated == sum(r.names.count(name) for r in routings) > 0
    rows = tests[1].rows
    tests[1] = replace(tests[1], rows=rows.set_column(
        rows.column_names.index("instruction"), "instruction", [[t + " (edited)" if i == 0 else t
                            for i, t in enumerate(tests[1].rows.column("instruction").to_pylist())]]))
    _, _, generated = generate_all(config, tests, routings, cache=cache)
    assert generated == 1


def test_the_run_keeps_each_adapters_budget_from_its_training_responses(smoke_simulated) -> None:
    """The paraphrase task answers yes/no: its adapter's budget is 7 tokens, the others' longer."""
    run, _ = smoke_simulated
    state = json.loads((run / "simulate" / "fedrouter" / "rounds" / "r0002" / "state.json").read_text())
    budgets = state["token_budgets"]
    assert set(budgets) == set(state["adapters"])
    routes = state["extra"]["routes"]
    tasks = {}
    for client, adapters in routes.items():
        centroids = pq.read_table(run / "nodes" / f"c{int(client):02d}" / "centroids.parquet")
        for adapter, task in zip(adapters, centroids.column("majority_task").to_pylist()):
            tasks[f"g{adapter:02d}"] = task
    paraphrase = [name for name, task in tasks.items() if task == "paraphrase"]
    assert [budgets[name] for name in paraphrase] == [7]
    assert min(budgets[n] for n in budgets if n not in paraphrase) > 7


# -- the bench's finished cells stay valid ------------------------------------------------------
@needs_raw()
def test_the_committed_bench_cells_keep_their_fingerprints(monkeypatch) -> None:
    """bench/results/raw_cpu/bench.json was measured before token budgets and length grouping; the
    bench's defaults (both off) must still carry every main cell over, not rerun it."""
    from fedrouter_cli.experiments.matrix import (
        BenchPlan,
        carried_over,
        plan_cells,
        read_ledger,
    )
    from fedrouter_cli.presets import resolve_config

    monkeypatch.chdir(REPO)  # the bench was run with --source ../shared/data/raw from the repository
    assert SHARED_RAW.is_dir()
    overrides = {"data": {"source": "../shared/data/raw", "test_per_client": 100},
                 "train": {"group_by_length": False}, "eval": {"token_budget": False}}
    config = resolve_config(Path("/nonexistent/config.toml"), "cpu", overrides)
    ledger = read_ledger(REPO / "bench" / "results" / "raw_cpu" / "bench.json")
    cells = [c for c in plan_cells(BenchPlan(seeds=(0, 1, 2), curve_scenario=None), config) if c.group == "main"]
    assert len(cells) == 81
    missing = {c.name for c in cells if carried_over(config, c, ledger) is None}
    # issue 34 changed these rules (FedRouter's schedule, FedCluster's grouping, FedDPA's weighting):
    # their cells are rerun (those rerun so far are carried over under the new rules); every other
    # cell stays valid
    changed = {c.name for c in cells if c.method in ("fedrouter", "fedcluster", "feddpa")}
    assert len(changed) == 27 and missing <= changed
    on = resolve_config(Path("/nonexistent/config.toml"), "cpu", {**overrides, "eval": {"token_budget": True}})
    assert carried_over(on, cells[0], ledger) is None  # and the setting does reach the fingerprint
    # the staggered schedule's ablation cells are the old main FedRouter cells: carried over, not rerun
    staggered = [c for c in plan_cells(BenchPlan(seeds=(0, 1, 2), curve_scenario=None), config)
                 if c.group == "schedule"]
    assert sorted(c.name for c in staggered) == sorted(f"{s}-staggered-s{seed}/fedrouter"
                                                       for s in ("dual", "all") for seed in (0, 1, 2))
    for cell in staggered:
        record = carried_over(config, cell, ledger)
        assert record is not None and record["cell"] == cell.name and record["group"] == "schedule"
        # adopted from the old main cell's record, or already stored under its own name with its samples
        stored = REPO / "bench" / "results" / "raw_cpu" / "samples" / f"{cell.name}.json"
        assert record.get("samples_cell", cell.name) in (f"{cell.scenario}-s{cell.seed}/fedrouter", cell.name)
        assert "samples_cell" in record or stored.is_file()
