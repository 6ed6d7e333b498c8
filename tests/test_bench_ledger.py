"""`fedrouter bench`'s ledger: which cells are carried over from earlier results, resuming and
stopping between cells, crashed cells, and bench.json kept whole by a partial bench."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_bench import _record

from fedrouter_cli.config import Config
from fedrouter_cli.config_file import build_config
from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.experiments.matrix import (
    BenchPlan,
    carried_over,
    cell_fingerprints,
    plan_cells,
    read_ledger,
)

SMOKE = build_config(Config(), {"data": {"clients": 2, "train_per_client": 8, "test_per_client": 2},
                                 "train": {"rounds": 2}})


def test_ledger_carries_over_only_the_same_experiment() -> None:
    plan = BenchPlan(methods=("fedit", "fedrouter"), scenarios=("single",), ablation_clients=(), k_rule_scenarios=())
    cell = next(c for c in plan_cells(plan, SMOKE) if c.method == "fedrouter")
    prints = cell_fingerprints(SMOKE, cell)
    assert set(prints) == {"simulate", "local", "global+all-tasks"}
    record = _record("fedrouter", "single", 0, 0.5) | {"fingerprints": prints}
    assert carried_over(SMOKE, cell, {cell.name: record})["carried_over"] is True
    other_lr = build_config(SMOKE, {"train": {"lr": 1e-4}})
    other_eval = build_config(SMOKE, {"eval": {"batch_size": 3}})
    other_data = build_config(SMOKE, {"data": {"train_per_client": 9}})
    for config in (other_lr, other_eval, other_data):
        assert carried_over(config, cell, {cell.name: record}) is None
    assert carried_over(SMOKE, cell, {cell.name: record | {"error": "boom"}}) is None
    assert carried_over(SMOKE, cell, {}) is None


def test_bench_runs_only_cells_the_ledger_lacks_and_checkpoints_every_cell(tmp_path: Path, monkeypatch) -> None:
    import fedrouter_cli.experiments.matrix as bench
    import fedrouter_cli.stages.pipeline

    plan = BenchPlan(methods=("fedit", "fedrouter"), scenarios=("single",), ablation_clients=(), k_rule_scenarios=())
    cells = plan_cells(plan, SMOKE)
    assert [c.method for c in cells] == ["fedrouter", "fedit", "base"]
    ran: list[str] = []

    def fake_run_cell(config, root, cell, progress):
        ran.append(cell.name)
        return {**cell.describe(), "evaluations": [], "cached": False}

    monkeypatch.setattr(bench, "run_cell", fake_run_cell)
    monkeypatch.setattr(fedrouter_cli.stages.pipeline, "prepare", lambda *args, **kwargs: [])
    done = {c.name: {**c.describe(), "evaluations": [], "fingerprints": cell_fingerprints(SMOKE, c)}
            for c in (cells[0], cells[2])}  # fedrouter and base finished elsewhere
    snapshots: list[list[str]] = []
    records = bench.run_bench(SMOKE, tmp_path, plan, ledger=done,
                              checkpoint=lambda known: snapshots.append([r["cell"] for r in known]))
    assert ran == [cells[1].name]
    assert [r.get("carried_over", False) for r in records] == [True, False, True]
    assert records[1]["fingerprints"] == cell_fingerprints(SMOKE, cells[1])
    # the checkpoint after fedit already holds the carried base record it has not reached yet
    assert snapshots == [[c.name for c in cells]]


def test_a_stop_file_stops_the_bench_between_cells_and_is_consumed(tmp_path: Path, monkeypatch) -> None:
    import fedrouter_cli.experiments.matrix as bench
    from fedrouter_cli.errors import BenchStopped

    plan = BenchPlan(methods=("fedit", "fedrouter"), scenarios=("single",), ablation_clients=(), k_rule_scenarios=(),
                     generalization=False)
    stop_file = tmp_path / "STOP"
    ran: list[str] = []

    def run_cell_then_ask_to_stop(config, root, cell, progress):
        ran.append(cell.method)
        stop_file.touch()  # the user asks while this cell runs
        return {**cell.describe(), "evaluations": [], "cached": False}

    monkeypatch.setattr(bench, "run_cell", run_cell_then_ask_to_stop)
    saved: list[list[str]] = []
    with pytest.raises(BenchStopped) as stopped:
        bench.run_bench(SMOKE, tmp_path, plan, stop_file=stop_file,
                        checkpoint=lambda known: saved.append([r["method"] for r in known]))
    assert ran == ["fedrouter"] and saved == [["fedrouter"]]  # the running cell finished and was saved
    assert stopped.value.cell == plan_cells(plan, SMOKE)[1].name and not stop_file.exists()
    monkeypatch.setattr(bench, "run_cell", lambda config, root, cell, progress: {
        **cell.describe(), "evaluations": [], "cached": False})
    assert len(bench.run_bench(SMOKE, tmp_path, plan, stop_file=stop_file)) == 3  # consumed: the next run goes on


def test_a_crashed_cell_is_rerun_and_a_hopeless_one_recorded(tmp_path: Path, monkeypatch) -> None:
    import fedrouter_cli.experiments.matrix as bench

    plan = BenchPlan(methods=("fedit", "fedrouter"), scenarios=("single",), ablation_clients=(), k_rule_scenarios=(),
                     generalization=False)
    calls: list[str] = []

    def flaky_run_cell(config, root, cell, progress):
        calls.append(cell.method)
        if cell.method == "fedrouter" or (cell.method == "fedit" and calls.count("fedit") == 1):
            raise RuntimeError(f"{cell.method} crashed")
        if cell.method == "base" and calls.count("base") == 1:
            raise FedrouterError("bad settings are not retried")
        return {**cell.describe(), "evaluations": [], "cached": False}

    monkeypatch.setattr(bench, "run_cell", flaky_run_cell)
    with pytest.raises(FedrouterError, match="bad settings are not retried"):
        bench.run_bench(SMOKE, tmp_path, plan)
    assert calls == ["fedrouter", "fedrouter", "fedit", "fedit", "base"]  # bad settings: raised at once, no retry
    calls.clear()
    monkeypatch.setattr(bench, "run_cell", lambda *a: flaky_run_cell(*a) if a[2].method != "base"
                        else {**a[2].describe(), "evaluations": [], "cached": False})
    records = {r["method"]: r for r in bench.run_bench(SMOKE, tmp_path, plan, retries=2)}
    assert calls == ["fedrouter", "fedrouter", "fedrouter", "fedit", "fedit"]
    assert records["fedit"]["retried_after"] == ["RuntimeError: fedit crashed"] and "error" not in records["fedit"]
    assert "fingerprints" in records["fedit"]
    assert records["fedrouter"]["error"] == "RuntimeError: fedrouter crashed"
    assert records["fedrouter"]["attempts"] == 3 and "fingerprints" not in records["fedrouter"]


def test_bench_json_keeps_records_a_partial_bench_does_not_replace(tmp_path: Path) -> None:
    from fedrouter_cli.experiments.matrix import kept_records
    from fedrouter_cli.experiments.results import write_results

    def finished(method: str, scenario: str, rouge1: float, prints: str) -> dict:
        return _record(method, scenario, 0, rouge1) | {"fingerprints": {"simulate": prints}, "bench_seconds": 60.0}

    ledger = {r["cell"]: r for r in (finished("fedit", "all", 0.3, "a"), finished("fedit", "dual", 0.2, "b"))}
    rerun = [finished("fedit", "dual", 0.25, "c")]  # a bench of dual only, with other settings
    write_results(tmp_path, rerun, {}, kept_records(ledger, rerun))
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert [r["cell"] for r in saved["cells"]] == ["dual-s0/fedit"]
    assert [r["cell"] for r in saved["kept_cells"]] == ["all-s0/fedit"]  # not in this plan, kept
    assert list(saved["tables"]["scenarios"]) == ["dual"]  # but not tabulated
    assert saved["machine"] == {"cells": 1, "seconds": 60.0, "carried_over": 0}
    again = read_ledger(tmp_path / "bench.json")
    assert again["all-s0/fedit"]["fingerprints"] == {"simulate": "a"}
    assert again["dual-s0/fedit"]["fingerprints"] == {"simulate": "c"}  # the newer run replaced the older


def test_ledger_file_errors_are_plain(tmp_path: Path) -> None:
    assert read_ledger(tmp_path / "none.json") == {}
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(FedrouterError, match="not a bench.json"):
        read_ledger(tmp_path / "bad.json")
    (tmp_path / "old.json").write_text(json.dumps({"cells": [_record("fedit", "dual", 0, 0.3)]}))
    assert read_ledger(tmp_path / "old.json") == {}  # records without fingerprints are never carried over


def test_bench_rejects_bad_options_without_touching_the_dir(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fedrouter_cli.cli.app import app

    for args in (["--methods", "fedavg"], ["--seeds", "zero"], ["--scenarios", "quad"]):
        result = CliRunner().invoke(app, ["bench", "-r", str(tmp_path / "b"), "--preset", "smoke", *args])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        assert not (tmp_path / "b" / "cells").exists()


def test_a_record_carried_over_under_a_new_name_keeps_its_samples(tmp_path: Path) -> None:
    """The staggered ablation's record takes the old main cell's stored samples before a fresh main
    cell of that name overwrites them (write_results stores such records first)."""
    import json

    from fedrouter_cli.experiments.paired import (
        load_samples,
        samples_path,
        store_samples,
    )

    old = {"cell": "dual-s0/fedrouter", "fingerprints": {"local": "old"}, "samples": {"local": {"rouge1": [0.1]}}}
    store_samples(tmp_path, old)
    carried = {"cell": "dual-staggered-s0/fedrouter", "fingerprints": {"local": "old"},
               "samples_cell": "dual-s0/fedrouter"}
    fresh = {"cell": "dual-s0/fedrouter", "fingerprints": {"local": "new"}, "samples": {"local": {"rouge1": [0.9]}}}
    for record in sorted([fresh, carried], key=lambda r: "samples_cell" not in r):
        store_samples(tmp_path, record)
    assert "samples_cell" not in carried
    assert load_samples(tmp_path, carried) == {"local": {"rouge1": [0.1]}}
    assert load_samples(tmp_path, fresh) == {"local": {"rouge1": [0.9]}}
    stale = {"cell": "all-staggered-s0/fedrouter", "fingerprints": {"local": "other"}, "samples_cell": "dual-s0/fedrouter"}
    store_samples(tmp_path, stale)  # samples of other settings are never adopted
    assert not samples_path(tmp_path, stale["cell"]).exists()
    assert json.loads(samples_path(tmp_path, "dual-s0/fedrouter").read_text())["fingerprints"] == {"local": "new"}
