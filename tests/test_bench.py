"""`fedrouter bench`: the plan of cells, the tables, and a smoke bench through the real stages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fedrouter_cli.config import Config, build_config
from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.experiments.matrix import (
    METHODS,
    BenchPlan,
    carried_over,
    cell_config,
    cell_fingerprints,
    plan_cells,
    read_ledger,
)
from fedrouter_cli.experiments.results import markdown, tables

FLAN_LIKE = build_config(Config(), {"data": {"tasks": ("paraphrase", "triples_to_text", "dialogue_summary", "headline")}})


def test_plan_covers_the_paper_matrix() -> None:
    config = build_config(Config(), {"train": {"rounds": 5}})
    cells = plan_cells(BenchPlan(seeds=(0, 1)), config)
    main = [c for c in cells if c.group == "main"]
    assert len(main) == 2 * 3 * (len(METHODS) + 1)  # seeds x scenarios x (methods + base model)
    assert all(c.k_rule == "tasks" for c in main)  # the paper's K rule in the main table
    ablations = cells[len(main):]  # the ablations come after the main table of every seed
    assert [c.group for c in cells[:len(main)]] == ["main"] * len(main)
    # the staggered round-robin (a proposal of this tool's) at every seed, as a main row; the rest on seed 0
    schedule = [c for c in ablations if c.group == "schedule"]
    assert sorted((c.scenario, c.seed) for c in schedule) == [("all", 0), ("all", 1), ("dual", 0), ("dual", 1)]
    assert all(c.schedule == "staggered" and c.method == "fedrouter" for c in schedule)
    assert all(c.schedule == "authors" for c in main)  # the authors' schedule in the main table
    assert cell_config(config, schedule[0]).train.schedule == "staggered"
    assert all(c.seed == 0 for c in ablations if c.group != "schedule")
    assert {(c.group, c.clients) for c in cells if c.group == "clients"} == {("clients", 4), ("clients", 16)}
    other_rule = [c for c in cells if c.group == "k-rule"]
    assert sorted(c.scenario for c in other_rule) == ["all", "dual", "single"]
    assert all(c.k_rule == "auto" and c.method == "fedrouter" for c in other_rule)
    first = [c.method for c in main if c.scenario == "single" and c.seed == 0]
    assert first[:2] == ["fedrouter", "fedrouter-star"] and first[-1] == "base"
    single_router = next(c for c in main if c.scenario == "single" and c.method == "fedrouter")
    assert ("global", "all", 0) in single_router.evaluations  # generalization routes over global clusters
    single_local = next(c for c in main if c.scenario == "single" and c.method == "local")
    assert ("local", "all", 0) in single_local.evaluations
    dual_fedit = next(c for c in main if c.scenario == "dual" and c.method == "fedit")
    assert [e[2] for e in dual_fedit.evaluations] == [0, 1, 2, 3, 4]  # last round, then rounds 1..4 for the curve
    dual_fedit_1 = next(c for c in main if c.scenario == "dual" and c.method == "fedit" and c.seed == 1)
    assert [e[2] for e in dual_fedit_1.evaluations] == [0]  # the curve is an ablation: first seed only
    assert len({c.name for c in cells}) == len(cells)  # every cell has its own run dir


def test_cell_config_sets_method_and_k_rule() -> None:
    cells = plan_cells(BenchPlan(scenarios=("dual",), methods=("fedrouter-star", "fedsa", "fedcluster"),
                                 k_rule_scenarios=("dual",), ablation_clients=()), FLAN_LIKE)
    star = cell_config(FLAN_LIKE, next(c for c in cells if c.method == "fedrouter-star"))
    assert (star.train.alg, star.train.variant, star.data.scenario) == ("fedrouter", "star", "dual")
    assert (star.cluster.n_clusters, star.train.global_clusters) == ("tasks", "tasks")
    auto = cell_config(FLAN_LIKE, next(c for c in cells if c.group == "k-rule"))
    assert (auto.cluster.n_clusters, auto.train.global_clusters, auto.train.variant) == ("auto", "auto", "standard")
    fedcluster = cell_config(FLAN_LIKE, next(c for c in cells if c.method == "fedcluster"))
    assert fedcluster.train.global_clusters == Config().train.global_clusters  # its client groups keep their rule
    base = cell_config(FLAN_LIKE, next(c for c in cells if c.method == "base"))
    assert base.train.alg == Config().train.alg
    swapped = plan_cells(BenchPlan(scenarios=("dual",), methods=("fedrouter",), k_rule="auto",
                                   k_rule_scenarios=("dual",), ablation_clients=()), FLAN_LIKE)
    assert [(c.group, c.k_rule, c.schedule) for c in swapped if c.method == "fedrouter"] == [
        ("main", "auto", "authors"), ("schedule", "auto", "staggered"), ("k-rule", "tasks", "authors")]
    assert not [c for c in cells if c.group == "schedule"]  # no main FedRouter row to compare with


@pytest.mark.parametrize(("bad", "message"), [
    ({"methods": ("fedavg",)}, "Unknown method 'fedavg'"), ({"scenarios": ("triple",)}, "Unknown scenario 'triple'"),
    ({"seeds": ()}, "at least one method, scenario and seed"), ({"ablation_clients": (0,)}, "--ablation-clients positive"),
    ({"curve_methods": ("nope",)}, "Unknown method 'nope'"), ({"k_rule": "silhouette"}, "--k-rule must be one of"),
    ({"k_rule_scenarios": ("quad",)}, "Unknown scenario 'quad'")])
def test_bad_plans_are_refused(bad: dict, message: str) -> None:
    with pytest.raises(FedrouterError, match=message):
        BenchPlan(**bad)


def _record(method: str, scenario: str, seed: int, rouge1: float, group: str = "main", **extra) -> dict:
    evaluation = {"rouge1": rouge1, "rouge2": rouge1 / 2, "rougeL": rouge1, "routing_accuracy": 1.0,
                  "test_tasks": "scenario", "round": 5, "seconds": 10.0}
    return {"cell": f"{scenario}-s{seed}/{method}", "group": group, "scenario": scenario, "method": method,
            "seed": seed, "clients": 8, "k_rule": "tasks", "evaluations": [evaluation],
            "simulate": {"seconds": 100.0, "bytes_up": 1_000_000, "bytes_down": 1_000_000, "global_clusters": 4},
            **extra}


def test_tables_average_over_seeds_and_pair_the_ablations() -> None:
    seed0, seed1 = _record("fedit", "dual", 0, 0.30), _record("fedit", "dual", 1, 0.40)
    seed0["evaluations"][0]["per_task"] = {"trec": 0.2, "gigaword": 0.1}
    seed1["evaluations"][0]["per_task"] = {"trec": 0.4}
    records = [seed0, seed1,
               _record("fedrouter", "all", 0, 0.50, cluster_local={"purity": 1.0, "k": [4] * 8}),
               _record("fedrouter", "all", 0, 0.45, group="k-rule", k_rule="auto",
                       cluster_local={"purity": 0.9, "k": [5] * 8}) | {"cell": "all-kauto-s0/fedrouter"},
               {"cell": "dual-s0/local", "group": "main", "scenario": "dual", "method": "local", "seed": 0,
                "clients": 8, "k_rule": "tasks", "error": "RuntimeError: boom"}]
    result = tables(records)
    fedit = result["scenarios"]["dual"]["fedit"]
    assert fedit["rouge1"] == {"mean": 0.35, "std": 0.05, "n": 2}
    assert fedit["seconds"]["mean"] == 110.0 and fedit["megabytes"]["mean"] == 2.0
    assert fedit["per_task"]["trec"] == {"mean": 0.3, "std": 0.1, "n": 2}
    assert fedit["per_task"]["gigaword"] == {"mean": 0.1, "std": 0.0, "n": 1}
    assert "| fedit | 0.100 | 0.300 ± 0.100 |" in markdown(result, [])
    assert_tables_well_formed(markdown(result, []))
    assert "local" not in result["scenarios"]["dual"]  # a failed cell is listed as failed, not scored
    assert result["k_rule"]["all / auto"]["rouge1"]["mean"] == 0.45
    assert result["k_rule"]["all / tasks"]["rouge1"]["mean"] == 0.50
    assert result["k_rule"]["all / auto"]["local_k"] == [5] * 8 and result["k_rule"]["all / tasks"]["local_purity"] == 1.0
    assert "interval" not in fedit  # no per-sample scores, no intervals


def test_clients_ablation_compares_the_same_seeds() -> None:
    records = [_record("fedrouter", "single", 0, 0.40), _record("fedrouter", "single", 1, 0.50),
               _record("fedrouter", "single", 0, 0.45, group="clients", clients=4) | {"cell": "single-c4-s0/fedrouter"}]
    rows = tables(records)["clients"]
    assert list(rows) == ["4", "8"]
    assert rows["8"]["rouge1"] == {"mean": 0.40, "std": 0.0, "n": 1}  # seed 1 has no 4-client cell to compare with
    assert rows["4"]["rouge1"]["mean"] == 0.45
    assert tables(records[:2])["clients"] == {}  # no ablation, no table


def test_schedule_ablation_compares_the_same_seeds() -> None:
    """The staggered schedule's row is read on the seeds the authors' rows have so far (a rerun in
    progress): seed 0 only here, not a mean with seeds the other column lacks."""
    records = [_record("fedrouter", "dual", 0, 0.44)]
    records += [_record("fedrouter", "dual", s, v, group="schedule") | {"cell": f"dual-staggered-s{s}/fedrouter"}
                for s, v in ((0, 0.43), (1, 0.50), (2, 0.52))]
    row = tables(records)["schedule"]["dual"]
    assert row["staggered"]["rouge1"] == {"mean": 0.43, "std": 0.0, "n": 1}
    assert row["authors"]["rouge1"]["mean"] == 0.44


def test_paper_orderings_are_checked_against_our_means() -> None:
    from fedrouter_cli.experiments.results import orderings

    records = [_record("fedrouter", "dual", 0, 0.40), _record("fedit", "dual", 0, 0.42),
               _record("fedrouter-star", "dual", 0, 0.41)]
    general = {"rouge1": 0.30, "rouge2": 0.1, "rougeL": 0.3, "routing_accuracy": None, "test_tasks": "all",
               "round": 5, "seconds": 1.0}
    for method, score in (("fedit", 0.30), ("feddpa", 0.20), ("local", 0.25)):
        record = _record(method, "single", 0, 0.5)
        record["evaluations"].append(general | {"rouge1": score})
        records.append(record)
    result = tables(records)
    checked = {(c["table"], c["better"], c["worse"]): c for c in orderings(result)}
    assert checked[("dual", "fedrouter", "fedit")]["verdict"] == "does not hold (means only)"
    assert checked[("dual", "fedrouter", "fedit")]["holds"] is False
    assert checked[("dual", "fedrouter", "fedit")]["margin"] == -0.02
    assert checked[("dual", "fedrouter-star", "fedrouter")]["holds"] is True
    assert checked[("generalization", "fedit", "feddpa")]["holds"] is True
    assert checked[("generalization", "feddpa", "local")]["holds"] is False
    assert checked[("single", "fedrouter", "fedit")]["holds"] is None  # fedrouter single not run
    assert checked[("dual", "fedrouter", "fedit")]["paper"] == (0.558, 0.550)
    text = markdown(result, [])
    assert "| dual | fedrouter > fedit | 0.400 vs 0.420 {0.558 vs 0.550} | – | – | does not hold (means only) | – |" in text
    assert "| single | fedrouter > fedit | not run yet" in text


def test_label_tasks_show_the_majority_floor_and_each_methods_top_answer() -> None:
    def scored(answers: list[str]) -> dict[str, list]:
        labels = ["no", "no", "yes", "no"]  # client c00: no, no; c01: yes, no
        return {"client": ["c00", "c00", "c01", "c01"], "id": ["a", "b", "c", "d"], "task": ["qqp"] * 4,
                "rouge1": [float(a == l) for a, l in zip(answers, labels)],
                "exact": [float(a == l) for a, l in zip(answers, labels)], "reference_words": [1] * 4,
                "label": labels, "answer": answers}

    constant, reader = scored(["no"] * 4), scored(["no", "yes", "yes", "no"])
    older = {k: v for k, v in reader.items() if k != "answer"}  # samples stored before answers were kept
    records = [_record("fedit", "dual", 0, 0.75), _record("fedit", "dual", 1, 0.25),
               _record("fedrouter", "dual", 0, 0.75), _record("local", "dual", 0, 0.5), _record("local", "dual", 1, 0.75)]
    for record in records:
        record["evaluations"][0]["mode"] = "local"
    samples = {"dual-s0/fedit": {"local": constant}, "dual-s1/fedit": {"local": scored(["yes"] * 4)},
               "dual-s0/fedrouter": {"local": reader}, "dual-s0/local": {"local": older},
               "dual-s1/local": {"local": constant}}
    result = tables(records, samples)
    rows = result["scenarios"]["dual"]
    # 'no' is the majority label; always answering it scores the mean of client means (1.0 + 0.5) / 2.
    # Each seed's model answers one label to everything, another one per seed: no pooling hides it.
    assert rows["fedit"]["label_answers"]["qqp"] == {
        "majority": "no", "majority_accuracy": 0.75,
        "top_answers": [{"seed": 0, "answer": "no", "share": 1.0}, {"seed": 1, "answer": "yes", "share": 1.0}]}
    assert rows["fedrouter"]["label_answers"]["qqp"]["top_answers"] == [{"seed": 0, "answer": "no", "share": 0.5}]
    # seed 0's samples predate answers: only seed 1's answers are shown
    assert rows["local"]["label_answers"]["qqp"]["top_answers"] == [{"seed": 1, "answer": "no", "share": 1.0}]
    text = markdown(result, [])
    assert_tables_well_formed(text)
    assert "| s0 no 100%, s1 yes 100% |" in text and "| s0 no 50% |" in text and "| s1 no 100% |" in text
    assert "Always answering 'no' on qqp scores label accuracy 0.750" in text


def assert_tables_well_formed(text: str) -> None:
    """Every Markdown table has as many cells in each row as in its header."""
    table: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            widths = {row.count("|") for row in table}
            assert len(widths) == 1, table[:3]
        table = []


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


def test_smoke_bench_end_to_end_and_resume(tmp_path: Path, tiny_model: str, inprocess) -> None:
    """The smoke preset through every part of the bench: simulations (Flower's engine, in-process
    backend, tiny model), evaluations on both test sets and per round, both ablations, tables and
    plots; a second run is all cache hits; another machine continues from the results alone."""
    from typer.testing import CliRunner

    from fedrouter_cli.cli.app import app

    def bench(*args: str):
        result = CliRunner().invoke(app, ["bench", *args])
        assert result.exit_code == 0, result.output
        return result

    command = ["-r", str(tmp_path / "bench"), "--preset", "smoke", "--model", tiny_model,
               "--methods", "fedrouter,fedit", "--scenarios", "single", "--ablation-clients", "2",
               "--k-rule-scenarios", "single", "--curve-scenario", "single", "--json"]
    payload = json.loads(bench(*command).stdout)
    assert payload["cells"] == 5 and payload["failed_cells"] == [] and payload["cached_cells"] == 0
    tables_ = payload["tables"]
    assert set(tables_["scenarios"]["single"]) == {"base", "fedit", "fedrouter"}
    assert tables_["generalization"]["fedrouter"]["routing_accuracy"]["mean"] == 1.0  # synthetic tasks separate cleanly
    assert set(tables_["clients"]) == {"2", "4"}
    assert set(tables_["k_rule"]) == {"single / tasks", "single / auto"}
    router = tables_["scenarios"]["single"]["fedrouter"]
    assert router["interval"]["low"] <= router["rouge1"]["mean"] <= router["interval"]["high"]
    assert {g["against"] for g in tables_["paired"]["single"] if g["method"] == "fedrouter"} == {"base", "fedit"}
    samples = json.loads((tmp_path / "bench" / "results" / "samples" / "single-s0" / "fedrouter.json").read_text())
    assert set(samples["evaluations"]) == {"local", "global+all-tasks", "local@r1"}
    assert len(samples["evaluations"]["local"]["rouge1"]) == 4 * 4  # 4 clients x 4 test samples
    names = {Path(p).name for p in payload["plots"]}
    assert {"rouge1_single.png", "generalization.png", "rouge1_per_round.png", "silhouette_local.png",
            "silhouette_global.png", "embedding_map.png"} <= names
    assert all(Path(p).read_bytes()[:4] == b"\x89PNG" for p in payload["plots"])
    markdown_text = Path(payload["markdown"]).read_text()
    assert "## Generalization" in markdown_text and "| fedrouter |" in markdown_text
    assert_tables_well_formed(markdown_text)
    data = json.loads(Path(payload["json"]).read_text())
    curve = next(c for c in data["cells"] if c["cell"] == "single-s0/fedrouter")
    assert sorted(e["round"] for e in curve["evaluations"] if e["test_tasks"] == "scenario") == [1, 2]
    fedit = next(c for c in data["cells"] if c["cell"] == "single-s0/fedit")["simulate"]
    assert tables_["scenarios"]["single"]["fedit"]["megabytes"]["mean"] == pytest.approx(
        (fedit["bytes_up"] + fedit["bytes_down"]) / 1e6, abs=0.01)
    trained = len(inprocess.calls)
    # every trained cell asked each of its clients once per round: fedrouter, fedit, the K-rule
    # ablation (4 clients each) and the 2-client ablation, 2 rounds each
    assert len([sent for sent, _ in inprocess.calls if sent.metadata.message_type == "train"]) == 2 * (4 + 4 + 4 + 2)

    assert json.loads(bench(*command).stdout)["cached_cells"] == 5
    assert len(inprocess.calls) == trained  # no node was asked anything again

    # another machine (a fresh run dir) continues from the results alone: nothing is trained again
    fresh = [command[0], str(tmp_path / "fresh"), *command[2:], "--results-dir", str(tmp_path / "bench" / "results")]
    carried = bench(*fresh)
    assert json.loads(carried.stdout)["cached_cells"] == 5 and carried.stderr.count("carried over") == 5
    assert not list((tmp_path / "fresh" / "cells").glob("*/*/simulate/*/rounds"))
    assert json.loads(carried.stdout)["tables"] == payload["tables"]
    assert len(inprocess.calls) == trained

    # a bench still running can be tabulated from its finished cells; a cell not done is left out
    shutil.rmtree(tmp_path / "bench" / "cells" / "single-s0" / "fedit" / "evaluate")
    partial = bench(*command, "--report-only", "--results-dir", str(tmp_path / "partial"))
    assert json.loads(partial.stdout)["cells"] == 4
    assert "not finished yet" in partial.stderr
    assert not (tmp_path / "bench" / "cells" / "single-s0" / "fedit" / "evaluate").exists()  # nothing was run


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
