"""Error bars for method comparisons: bootstrap intervals over test samples, paired differences.

A method's figure is the mean over seeds of the mean over clients of each client's mean score,
so resampling is stratified: test samples are redrawn with replacement within each (seed,
client) stratum, and the statistic is the mean of the stratum means, as the tables compute it.
Paired comparisons take the per-sample difference between two methods on the same test samples
(same seed, client and sample id) and bootstrap its mean the same way: the interval then reflects
how much the gap depends on which test samples were drawn, not how hard the samples are.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95


# What an answer to a label task names when it is not exactly one of the task's labels.
NO_LABEL = ""
SEVERAL_LABELS = "(several)"
# Scores computed by the rule below carry this in their per-sample files (older ones took the
# answer's first word as its label, and their answers cannot be re-read without the predictions).
LABEL_RULE = "named"


def label_words(text: str) -> list[str]:
    """Lower-cased words, punctuation dropped, underscores and inner hyphens kept ('not_entailment')."""
    return re.findall(r"[a-z0-9_]+(?:['-][a-z0-9_]+)*", text.lower())


def reference_label(reference: str) -> str:
    """A one-word reference as the label answers are compared with: ' Yes.' -> 'yes'."""
    words = label_words(reference)
    return words[0] if words else reference.strip().lower()


def named_label(prediction: str, labels: frozenset[str] | set[str]) -> str:
    """The one label of the task's label set that the answer names as a word ('The sentiment of
    this review is negative.' -> 'negative'); NO_LABEL when it names none, SEVERAL_LABELS when it
    names more than one ('yes or no')."""
    named = {word for word in label_words(prediction) if word in labels}
    if len(named) > 1:
        return SEVERAL_LABELS
    return named.pop() if named else NO_LABEL


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_json(self, digits: int = 4) -> dict[str, float | bool]:
        return {"mean": round(self.mean, digits), "low": round(self.low, digits), "high": round(self.high, digits),
                "excludes_zero": self.excludes_zero}


def stratified_mean(values: np.ndarray, strata: Sequence) -> float:
    """Mean of the per-stratum means."""
    values = np.asarray(values, dtype=np.float64)
    groups = _groups(strata)
    return float(np.mean([values[g].mean() for g in groups]))


def bootstrap(values: Sequence[float], strata: Sequence, resamples: int = RESAMPLES, level: float = LEVEL,
              seed: int = 0) -> Interval:
    """Percentile bootstrap interval of the mean of stratum means, resampling within strata."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("bootstrap needs at least one value")
    rng = np.random.default_rng(seed)
    groups = _groups(strata)
    draws = np.zeros(resamples)
    for members in groups:
        picks = rng.integers(0, len(members), size=(resamples, len(members)))
        draws += values[members][picks].mean(axis=1)
    draws /= len(groups)
    tail = (1 - level) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return Interval(stratified_mean(values, strata), float(low), float(high))


def paired(a: dict[tuple, float], b: dict[tuple, float], resamples: int = RESAMPLES, level: float = LEVEL,
           seed: int = 0) -> tuple[Interval, int]:
    """Bootstrap interval of mean(a - b) over the samples both score, keyed (seed, client, id);
    strata are (seed, client). Returns the interval and the number of paired samples."""
    common = sorted(set(a) & set(b))
    if not common:
        raise ValueError("the two methods share no scored test sample")
    differences = [a[k] - b[k] for k in common]
    return bootstrap(differences, [k[:2] for k in common], resamples, level, seed), len(common)


def hierarchical_bootstrap(values: Sequence[float], strata: Sequence[tuple], resamples: int = RESAMPLES,
                           level: float = LEVEL, seed: int = 0) -> Interval:
    """Percentile interval of the mean over seeds of the mean of client means, resampling the seeds
    (a stratum's first part) with replacement and then the samples within each drawn seed's
    strata: the interval shows how much a figure moves from seed to seed as well as with the test
    samples drawn. With one seed it is the stratified bootstrap."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("bootstrap needs at least one value")
    rng = np.random.default_rng(seed)
    groups = _groups(strata)
    seeds = sorted({tuple(s)[0] for s in strata})
    by_seed = {run: [g for g in groups if tuple(strata[g[0]])[0] == run] for run in seeds}
    # each seed's statistic under each resample of its samples: [seeds, resamples]
    seed_draws = np.zeros((len(seeds), resamples))
    for i, run in enumerate(seeds):
        for members in by_seed[run]:
            picks = rng.integers(0, len(members), size=(resamples, len(members)))
            seed_draws[i] += values[members][picks].mean(axis=1)
        seed_draws[i] /= len(by_seed[run])
    chosen = rng.integers(0, len(seeds), size=(resamples, len(seeds)))
    draws = seed_draws[chosen, np.arange(resamples)[:, None]].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return Interval(stratified_mean(values, strata), float(low), float(high))


def paired_row(a: dict[tuple, float], b: dict[tuple, float]) -> dict[str, Any] | None:
    """`paired` as a table row (samples paired, difference, interval over test samples, whether it
    excludes 0), with the difference of each seed and the interval that also resamples seeds
    (`over_seeds`, hierarchical_bootstrap): verdicts read that one. None when the two share no
    scored sample. `fedrouter report` and `fedrouter bench` both use it."""
    try:
        gap, n = paired(a, b)
    except ValueError:
        return None
    common = sorted(set(a) & set(b))
    differences = np.asarray([a[k] - b[k] for k in common])
    strata = [k[:2] for k in common]
    per_seed = {}
    for run in sorted({k[0] for k in common}):
        members = [i for i, k in enumerate(common) if k[0] == run]
        per_seed[str(run)] = round(stratified_mean(differences[members], [strata[i] for i in members]), 4)
    over_seeds = hierarchical_bootstrap(differences, strata)
    return {"samples": n, **gap.to_json(), "per_seed": per_seed, "over_seeds": over_seeds.to_json()}


def verdict(gap: dict[str, Any] | None) -> str | None:
    """'holds' / 'does not hold' when the interval that resamples seeds as well as test samples
    excludes 0 (above / below), else 'cannot tell'; None without a paired difference."""
    if gap is None:
        return None
    interval = gap.get("over_seeds", gap)
    if not interval["excludes_zero"]:
        return "cannot tell"
    return "holds" if interval["mean"] > 0 else "does not hold"


def _groups(strata: Sequence) -> list[np.ndarray]:
    index: dict = {}
    for i, s in enumerate(strata):
        index.setdefault(s if not isinstance(s, list) else tuple(s), []).append(i)
    return [np.asarray(members) for members in index.values()]
