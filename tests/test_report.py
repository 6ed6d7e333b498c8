"""`fedrouter report`'s statistics on hand-made predictions: label accuracy and its floor on a
yes/no task, and paired differences with and without that task."""

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

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
    return {"alg": alg, "mode": "global", "test_tasks": "scenario", "run_index": 0, "predictions": str(path),
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

    paired = paired_rows(groups)
    gap = next(g for g in paired if (g["method"], g["against"]) == ("fedrouter/global", "fedit/global"))
    assert gap["samples"] == 6
    assert gap["mean"] == pytest.approx((1 + 0 + 0 - 1 + 0.3 + 0.5) / 6, abs=1e-4)
    assert gap["without_labels"]["left_out"] == ["qqp"]
    assert gap["without_labels"]["mean"] == pytest.approx(0.4, abs=1e-4)

    text = markdown(list(table.values()), paired)
    assert "Always answering 'yes' on qqp scores label accuracy 0.7500" in text
    assert "run 1: yes 100%" in text and "without qqp" in text
    # without the label task both differences are positive (0.3, 0.5): the interval excludes 0
    assert re.search(r"\| \+0\.4000 \[\+0\.\d{4}, \+0\.\d{4}\] \*\*yes\*\* \|", text)
