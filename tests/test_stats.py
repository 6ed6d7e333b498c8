"""Bootstrap intervals and paired differences (fedrouter_cli.stats, stages.bench_stats)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from fedrouter_cli import stats


def test_a_label_answer_is_read_by_the_one_label_it_names() -> None:
    def right(prediction: str, reference: str, labels: set[str]) -> bool:  # as sample_scores scores it
        return stats.named_label(prediction, labels) == stats.reference_label(reference)

    yes_no = {"yes", "no"}
    assert right("Yes, they ask the same thing.", "yes", yes_no)
    assert not right("no", "yes", yes_no)
    assert right("  NO.", "no", yes_no)
    assert not right("", "no", yes_no)
    # the label need not come first (the answer that scored 0.000 against a floor of 0.625)
    assert right("The sentiment of this review is negative.", "negative", {"positive", "negative"})
    assert stats.named_label("It is not clear.", yes_no) == stats.NO_LABEL   # 'not' is not 'no'
    assert stats.named_label("Yes or no?", yes_no) == stats.SEVERAL_LABELS
    assert not right("Yes or no?", "yes", yes_no)                           # naming both is no answer
    assert stats.named_label("not_entailment", {"entailment", "not_entailment"}) == "not_entailment"
    assert stats.reference_label(" Yes.") == "yes"


def test_bootstrap_interval_is_stratified_and_shrinks_with_more_samples() -> None:
    rng = np.random.default_rng(0)
    small = rng.uniform(size=40)
    large = rng.uniform(size=4000)
    a = stats.bootstrap(small, [i % 4 for i in range(40)])
    b = stats.bootstrap(large, [i % 4 for i in range(4000)])
    assert a.low < a.mean < a.high and b.low < b.mean < b.high
    assert (b.high - b.low) < (a.high - a.low) / 5   # ~sqrt(100) = 10x narrower
    assert abs(b.mean - 0.5) < 0.03
    # the statistic is the mean of stratum means: a stratum of 1 sample weighs as much as one of 9
    skewed = stats.bootstrap([1.0] + [0.0] * 9, ["a"] + ["b"] * 9)
    assert skewed.mean == pytest.approx(0.5)
    assert stats.bootstrap([0.3] * 5, [0] * 5) == stats.Interval(0.3, 0.3, 0.3)
    with pytest.raises(ValueError):
        stats.bootstrap([], [])


def test_paired_difference_tells_a_real_gap_from_noise() -> None:
    rng = np.random.default_rng(1)
    hardness = rng.uniform(size=600)  # per-sample difficulty, shared by both methods
    keys = [(seed, f"c{i % 8:02d}", f"id{i}") for seed in (0, 1, 2) for i in range(200)]
    base = {k: float(h) for k, h in zip(keys, hardness)}
    better = {k: v + 0.02 + rng.normal(scale=0.01) for k, v in base.items()}
    noisy = {k: v + rng.normal(scale=0.01) for k, v in base.items()}
    gap, n = stats.paired(better, base)
    assert n == 600 and gap.excludes_zero and gap.low > 0 and gap.mean == pytest.approx(0.02, abs=0.003)
    null, _ = stats.paired(noisy, base)
    assert not null.excludes_zero
    # unpaired noise of the same size as the gap would hide it: pairing is what makes it visible
    assert (null.high - null.low) < 0.01
    only_some = {k: v for k, v in list(better.items())[:50]}
    assert stats.paired(only_some, base)[1] == 50
    with pytest.raises(ValueError):
        stats.paired({("x",): 1.0}, {("y",): 1.0})


def test_a_verdict_holds_only_when_the_gap_survives_resampling_seeds() -> None:
    """Three seeds, 800 paired samples each: a gap of +0.03, +0.02 and -0.01 is far from 0 over test
    samples pooled across seeds, but one seed goes the other way: the interval that resamples seeds
    contains 0, so the verdict is 'cannot tell'; with the third seed at +0.01 it holds."""
    rng = np.random.default_rng(2)

    def rows(shifts):
        keys = [(seed, f"c{i % 8:02d}", f"id{i}") for seed in range(3) for i in range(800)]
        base = {k: float(rng.uniform()) for k in keys}
        other = {k: v + shifts[k[0]] + rng.normal(scale=0.01) for k, v in base.items()}
        return other, base

    mixed = stats.paired_row(*rows({0: 0.03, 1: 0.02, 2: -0.01}))
    assert mixed["excludes_zero"] and mixed["low"] > 0                # pooled over test samples: "significant"
    assert mixed["per_seed"] == pytest.approx({"0": 0.03, "1": 0.02, "2": -0.01}, abs=0.002)
    assert not mixed["over_seeds"]["excludes_zero"] and mixed["over_seeds"]["low"] < 0
    assert stats.verdict(mixed) == "cannot tell"
    steady = stats.paired_row(*rows({0: 0.03, 1: 0.02, 2: 0.01}))
    assert steady["over_seeds"]["low"] > 0 and stats.verdict(steady) == "holds"
    assert stats.verdict(stats.paired_row(*reversed(rows({0: 0.03, 1: 0.02, 2: 0.01})))) == "does not hold"
    assert stats.verdict(None) is None


def test_bench_samples_round_trip_and_pairing(tmp_path: Path) -> None:
    from fedrouter_cli.experiments import paired as bench_stats

    predictions = tmp_path / "predictions.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"client": ["c00", "c00", "c01"], "id": ["q1", "w1", "q2"], "task": ["qqp", "webnlg", "qqp"],
                             "prediction": ["Surely yes.", "a tower", "yes"], "reference": ["yes", "the tall tower", "no"],
                             "rouge1": [1.0, 0.8, 0.0]}), predictions)
    scores = bench_stats.sample_scores(predictions)
    assert scores["exact"] == [1.0, 0.0, 0.0]
    assert scores["label"] == ["yes", "", "no"] and scores["answer"] == ["yes", "", "yes"]
    record = {"cell": "dual-s0/fedit", "seed": 0, "fingerprints": {"simulate": "abc"}, "samples": {"local": scores}}
    bench_stats.store_samples(tmp_path, record)
    assert "samples" not in record
    assert bench_stats.load_samples(tmp_path, record) == {"local": json.loads(json.dumps(scores))}
    assert bench_stats.load_samples(tmp_path, record | {"fingerprints": {"simulate": "other"}}) == {}
    assert bench_stats.label_tasks([scores]) == {"qqp"}
    accuracy = bench_stats.interval([record], [scores], "exact", task="qqp")
    assert accuracy["mean"] == pytest.approx(0.5)  # mean over clients c00 (1/1) and c01 (0/1)
    worse = dict(scores, rouge1=[0.5, 0.4, 0.0])
    rows = {"fedrouter": [(record, scores)], "fedit": [(record, worse)]}
    gap = bench_stats.pair(rows, "fedrouter", "fedit")
    # differences 0.5, 0.4 (client c00) and 0.0 (c01): the mean of client means is 0.225
    assert gap["samples"] == 3 and gap["mean"] == pytest.approx(0.225)
    # without the label task (qqp) only the webnlg sample is left: 0.8 - 0.4
    assert gap["without_labels"]["left_out"] == ["qqp"]
    assert gap["without_labels"]["samples"] == 1 and gap["without_labels"]["mean"] == pytest.approx(0.4)
    assert [(g["method"], g["against"]) for g in bench_stats.comparisons(rows)] == [("fedrouter", "fedit")]
