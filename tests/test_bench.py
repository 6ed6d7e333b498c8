"""`fedrouter bench`: the plan of cells, the tables, and a smoke bench through the real stages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fedrouter_cli.config import Config
from fedrouter_cli.config_file import build_config
from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.experiments.matrix import (
    METHODS,
    BenchPlan,
    cell_config,
    plan_cells,
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
                "label": labels, "answer": answers, "label_rule": "named"}

    constant, reader = scored(["no"] * 4), scored(["no", "yes", "", "no"])
    # samples stored before answers were kept, and before answers were read by the label they name
    older = {k: v for k, v in reader.items() if k not in ("answer", "label_rule")}
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
        "top_answers": [{"seed": 0, "answer": "no", "share": 1.0}, {"seed": 1, "answer": "yes", "share": 1.0}],
        "scored_by": "named", "names_no_label": 0.0, "names_several": 0.0}
    assert rows["fedrouter"]["label_answers"]["qqp"]["top_answers"] == [{"seed": 0, "answer": "no", "share": 0.5}]
    # one answer of client c01's two names no label: (0 + 1/2) / 2 over clients
    assert rows["fedrouter"]["label_answers"]["qqp"]["names_no_label"] == 0.25
    assert rows["local"]["label_answers"]["qqp"]["scored_by"] == "mixed"
    assert "names_no_label" not in rows["local"]["label_answers"]["qqp"]
    # seed 0's samples predate answers: only seed 1's answers are shown
    assert rows["local"]["label_answers"]["qqp"]["top_answers"] == [{"seed": 1, "answer": "no", "share": 1.0}]
    text = markdown(result, [])
    assert_tables_well_formed(text)
    assert "| s0 no 100%, s1 yes 100%; names no label 0%, several 0% |" in text
    assert "| s0 no 50%; names no label 25%, several 0% |" in text
    assert "| s1 no 100% (answers read by two rules) |" in text
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


@pytest.mark.slow
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


def test_any_two_baselines_pair_on_the_generalization_test_samples() -> None:
    """bench/pairs.py's source: the single cells' evaluations on every task, paired by seed,
    client and sample id, for two methods neither of which is FedRouter."""
    from fedrouter_cli.experiments.paired import pair
    from fedrouter_cli.experiments.results import main_table_members, scored_tables

    def on_every_task(method: str, seed: int, scores: list[float]) -> tuple[dict, dict]:
        record = _record(method, "single", seed, 0.5)
        record["evaluations"].append(record["evaluations"][0] | {"test_tasks": "all", "mode": "local"})
        record["evaluations"][0]["mode"] = "local"
        samples = {"client": ["c00", "c00", "c01", "c01"], "id": ["a", "b", "c", "d"],
                   "task": ["gigaword", "gigaword", "samsum", "samsum"], "rouge1": scores, "reference_words": [9] * 4}
        return record, {"local+all-tasks": samples, "local": samples | {"rouge1": [0.0] * 4}}

    found = [on_every_task("fedit", 0, [0.5, 0.6, 0.7, 0.8]), on_every_task("local", 0, [0.1, 0.2, 0.3, 0.4]),
             on_every_task("fedit", 1, [0.4, 0.4, 0.4, 0.4]), on_every_task("local", 1, [0.2, 0.2, 0.2, 0.2])]
    scored = scored_tables(main_table_members([r for r, _ in found]), {r["cell"]: s for r, s in found})
    assert list(scored) == ["single", "generalization"]
    gap = pair(scored["generalization"], "fedit", "local")
    assert gap["per_seed"] == {"0": 0.4, "1": 0.2} and gap["samples"] == 8
    assert gap["mean"] == pytest.approx(0.3)
    assert pair(scored["single"], "fedit", "local")["mean"] == 0.0  # the scenario's own test samples


def test_rouge_stemming_script_rescores_kept_predictions_both_ways(tmp_path: Path) -> None:
    """bench/rouge_stemming.py: the stemmed rescoring must equal the stored score, the plain one
    (the `evaluate` library's default) loses the matches only a stemmer makes, and the figure is
    the tables' mean over clients."""
    import importlib.util

    import pyarrow as pa

    from fedrouter_cli.files import write_table
    from fedrouter_cli.metrics import rouge

    spec = importlib.util.spec_from_file_location("rouge_stemming", Path(__file__).parents[1] / "bench" / "rouge_stemming.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    def kept(cell: str, method: str, rows: list[tuple[str, str, str]]) -> Path:
        path = tmp_path / "cells" / cell / method / "evaluate" / method / "local" / "predictions.parquet"
        path.parent.mkdir(parents=True)
        write_table(path, pa.table({"client": [r[0] for r in rows], "prediction": [r[1] for r in rows],
                                    "reference": [r[2] for r in rows],
                                    "rouge1": [rouge(r[1], r[2])["rouge1"] for r in rows]}))
        return path

    kept("dual-s0", "fedrouter", [("c00", "cats running", "cats running"), ("c01", "cats ran", "cats ran"),
                                  ("c01", "dog", "dog")])
    kept("dual-s0", "fedit", [("c00", "cat runs", "cats running"), ("c01", "cats ran", "cats ran"),
                              ("c01", "cat", "dog")])
    result = script.measure(tmp_path)
    fedit = result["evaluations"]["dual-s0/fedit:local"]["rouge1"]
    # c00: 'cat runs' against 'cats running' matches both words once stemmed, none plain;
    # c01: one exact pair and one miss, mean 0.5; the figure is the mean of the two clients' means
    assert fedit["stemmed"] == 0.75 and fedit["plain"] == 0.25 and fedit["plain_minus_stemmed"] == -0.5
    assert result["evaluations"]["dual-s0/fedrouter:local"]["rouge1"] == {"stemmed": 1.0, "plain": 1.0,
                                                                         "plain_minus_stemmed": 0.0}
    assert result["gaps"] == [{"cell": "dual-s0", "test_set": "scenario", "pair": "fedit - fedrouter",
                               "stemmed": -0.25, "plain": -0.75}]
    assert result["pairs_whose_sign_flips"] == []
    # a stored score from other settings is refused, not silently rescored
    other = kept("dual-s1", "fedit", [("c00", "cat runs", "cats running")])
    table = pa.table({"client": ["c00"], "prediction": ["cat runs"], "reference": ["cats running"], "rouge1": [0.0]})
    write_table(other, table)
    with pytest.raises(SystemExit, match="differs from the stored ROUGE-1"):
        script.measure(tmp_path)
