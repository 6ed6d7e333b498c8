"""`fedrouter report` on hand-made runs and predictions: label accuracy and its floor on a yes/no
task, paired differences with and without that task, which runs are pooled as seeds, and the
plot's error bars."""

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.stages.report import load_groups, markdown, paired_rows, summarize


def _evaluation(tmp_path: Path, alg: str, answers: list[str], summaries: list[float]) -> dict:
    """One run's evaluation of `alg` on one client: four yes/no questions (labels yes, yes, yes,
    no) answered with `answers`, and two summaries scored `summaries`."""
    labels = ["yes", "yes", "yes", "no"]
    path = tmp_path / alg / "predictions.parquet"
    path.parent.mkdir()
    pq.write_table(pa.table({
        "client": [0] * 6, "id": [f"q{i}" for i in range(4)] + ["s0", "s1"],
        "task": ["qqp"] * 4 + ["summary"] * 2,
        "prediction": [*answers, "a", "b"], "reference": [*labels, "a long summary", "another long summary"],
        "rouge1": [float(a == b) for a, b in zip(answers, labels)] + summaries}), path)
    return {"alg": alg, "mode": "global", "test_tasks": "scenario", "run": str(tmp_path), "run_index": 0,
            "predictions": str(path),
            "rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0, "routing_accuracy": None, "bytes": 0,
            "simulate_seconds": None}


def test_report_scores_labels_against_the_majority_floor_and_pairs_without_them(tmp_path: Path) -> None:
    rows = [_evaluation(tmp_path, "fedrouter", ["yes", "yes", "Yes.", "yes"], [0.5, 0.7]),
            _evaluation(tmp_path, "fedit", ["no", "yes", "maybe", "no"], [0.2, 0.2])]
    groups = load_groups(rows)
    table = {e["method"]: e for e in summarize(groups)}
    assert table["fedrouter"]["label_accuracy"]["qqp"]["mean"] == 0.75
    assert table["fedit"]["label_accuracy"]["qqp"]["mean"] == 0.5
    answers = table["fedrouter"]["label_answers"]["qqp"]
    assert (answers["majority"], answers["majority_accuracy"]) == ("yes", 0.75)
    assert answers["top_answers"] == [{"seed": 0, "answer": "yes", "share": 1.0}]
    assert "summary" not in table["fedrouter"]["label_accuracy"]  # multi-word references are not labels
    assert table["fedit"]["label_answers"]["qqp"]["names_no_label"] == 0.25  # 'maybe' names neither label

    paired = paired_rows(groups)
    gap = next(g for g in paired if (g["method"], g["against"]) == ("fedrouter/global", "fedit/global"))
    assert gap["samples"] == 6
    assert gap["mean"] == pytest.approx((1 + 0 + 0 - 1 + 0.3 + 0.5) / 6, abs=1e-4)
    assert gap["without_labels"]["left_out"] == ["qqp"]
    assert gap["without_labels"]["mean"] == pytest.approx(0.4, abs=1e-4)

    text = markdown(list(table.values()), paired)
    assert "Always answering 'yes' on qqp scores label accuracy 0.7500" in text
    assert "run 1: yes 100%" in text and "without qqp" in text
    assert "| 25% / 0% |" in text
    # without the label task both differences are positive (0.3, 0.5): the interval excludes 0
    assert re.search(r"\| \+0\.4000 \[\+0\.\d{4}, \+0\.\d{4}\] \*\*yes\*\* \|", text)


def _run(root: Path, seed: int, *, scenario: str = "dual", rounds: int = 3, variant: str = "standard",
         shift: float = 0.0) -> Path:
    """A run dir as the stages leave it, with one FedRouter evaluation of 2 clients x 10 samples
    (scores 0.3-0.7 plus `shift`) and the manifests that record its settings."""
    from fedrouter_cli.files import write_json
    from fedrouter_cli.rundir import RunDir

    run = RunDir(root)
    run.root.mkdir(parents=True)
    write_json(run.manifest_path("partition"), {"config": {"scenario": scenario, "clients": 2, "seed": seed}})
    write_json(run.manifest_path("embed"), {"config": {"embedder": "minilm", "max_length": 256}})
    write_json(run.manifest_path("cluster-local"), {"config": {"k_min": 2, "seed": seed}})
    write_json(run.manifest_path("simulate", "fedrouter"), {
        "config": {"alg": "fedrouter", "variant": variant, "rounds": rounds, "seed": seed, "round_timeout": 60.0},
        "seconds": 10.0, "summary": {"bytes_up": 1_000_000, "bytes_down": 3_000_000}})
    write_json(run.manifest_path("evaluate", "fedrouter", "local"),
               {"config": {"mode": "local", "round": 0, "batch_size": 8, "max_new_tokens": 32}})
    scores = [round(0.3 + 0.04 * (i % 10) + shift, 4) for i in range(20)]
    pq.write_table(pa.table({
        "client": [i // 10 for i in range(20)], "id": [f"s{i}" for i in range(20)], "task": ["summary"] * 20,
        "prediction": ["a b"] * 20, "reference": ["a b c"] * 20, "rouge1": scores}),
        run.predictions_file("fedrouter", "local"))
    write_json(run.scores_file("fedrouter", "local"), {
        "alg": "fedrouter", "mode": "local", "test_tasks": "scenario", "round": rounds,
        "rouge1": sum(scores) / 20, "rouge2": 0.1, "rougeL": 0.2, "routing_accuracy": 1.0})
    return run.root


def test_report_pools_runs_only_when_they_differ_in_the_seed_alone(tmp_path: Path) -> None:
    """Two seeds of one setting are one row (mean ± std over them); a run that differs in scenario,
    rounds or variant is a row of its own named by what differs; the report of several runs
    goes to a folder named for the set, leaving each run's own report/ alone."""
    from fedrouter_cli.rundir import RunDir
    from fedrouter_cli.stages.report import run_report

    seeds = [_run(tmp_path / "a", 0), _run(tmp_path / "b", 1, shift=0.1)]
    pooled = run_report([RunDir(p) for p in seeds])
    (row,) = pooled["table"]
    assert (row["name"], row["seeds"]) == ("fedrouter", 2)
    assert row["rouge1_std"] == pytest.approx(0.05, abs=1e-4)
    assert Path(pooled["json_path"]).parent == tmp_path / "report-a+b"
    assert not (tmp_path / "a" / "report").exists()

    others = [seeds[0], _run(tmp_path / "c", 0, scenario="all", rounds=5), _run(tmp_path / "d", 0, variant="star")]
    (tmp_path / "a" / "report").mkdir()
    (tmp_path / "a" / "report" / "report.md").write_text("A's own report")
    apart = run_report([RunDir(p) for p in others], out=tmp_path / "mine")
    names = sorted(e["name"] for e in apart["table"])
    assert names == ["fedrouter (scenario=all, rounds=5)", "fedrouter (scenario=dual, rounds=3)",
                     "fedrouter-star (scenario=dual, rounds=3)"]
    assert all(e["seeds"] == 1 for e in apart["table"])
    assert (tmp_path / "a" / "report" / "report.md").read_text() == "A's own report"
    assert (tmp_path / "mine" / "report.md").exists()
    # a challenger is paired only with rows of its own runs (the same test samples): none here
    assert apart["paired"] == []
    with pytest.raises(FedrouterError, match="given twice"):
        run_report([RunDir(seeds[0]), RunDir(seeds[0])])
    with pytest.raises(FedrouterError, match="same settings and seed"):  # a copy of a run is not a second seed
        import shutil
        shutil.copytree(seeds[0], tmp_path / "copy")
        run_report([RunDir(seeds[0]), RunDir(tmp_path / "copy")])


def test_a_run_older_than_a_setting_pools_with_one_that_has_it_at_that_default(tmp_path: Path) -> None:
    """A stage's manifest written before a setting existed lacks it: the run ran with the value the
    setting was added at (fingerprints.ADDED_LATER), so it still pools with a newer seed that
    records that value. A missing setting with no such value keeps the rows apart, and their
    names still differ."""
    from fedrouter_cli.files import read_json, write_json
    from fedrouter_cli.rundir import RunDir
    from fedrouter_cli.stages.report import run_report

    def recorded(root: Path, stage: str, *sub: str, **settings) -> None:
        path = RunDir(root).manifest_path(stage, *sub)
        manifest = read_json(path)
        write_json(path, manifest | {"config": manifest["config"] | settings})

    old, new = _run(tmp_path / "old", 0), _run(tmp_path / "new", 1, shift=0.1)
    recorded(new, "partition", test_fraction=0.2, quantity_skew=0.0)
    recorded(new, "simulate", "fedrouter", clients_per_round=0, init_from="")
    (row,) = run_report([RunDir(old), RunDir(new)])["table"]
    assert (row["name"], row["seeds"]) == ("fedrouter", 2)

    recorded(new, "partition", quantity_skew=0.5)  # not the old behaviour: another setting
    recorded(new, "simulate", "fedrouter", warmup=2)  # no value to read the old run's lack as
    names = sorted(e["name"] for e in run_report([RunDir(old), RunDir(new)])["table"])
    assert names == ["fedrouter (quantity_skew=0.0, warmup=–)", "fedrouter (quantity_skew=0.5, warmup=2)"]


def test_the_plots_error_bars_are_the_tables_interval(tmp_path: Path) -> None:
    """The bar chart draws each row's 95% interval exactly (asymmetric, one seed included), not a
    std over seeds, which is ~0 for one seed; report.md prints the same interval."""
    from fedrouter_cli.rundir import RunDir
    from fedrouter_cli.stages.report import run_report

    result = run_report([RunDir(_run(tmp_path / "a", 0))])
    (row,) = result["table"]
    interval = row["rouge1_interval"]
    assert interval["high"] - interval["low"] > 0.02 and row["rouge1_std"] == 0.0
    (drawn,) = result["plot_error_bars"]
    assert drawn == pytest.approx((interval["low"], interval["high"]))
    assert f"[{interval['low']:.4f}, {interval['high']:.4f}]" in Path(result["markdown_path"]).read_text()
    assert Path(result["plot_path"]).read_bytes()[:4] == b"\x89PNG"
    assert "MB sent counts both directions" in Path(result["markdown_path"]).read_text()
