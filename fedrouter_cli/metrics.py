"""ROUGE F1 (rouge-score) per sample, and the means the paper reports."""

from __future__ import annotations

import functools

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL")


@functools.lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=True)


def rouge(prediction: str, reference: str) -> dict[str, float]:
    scores = _scorer().score(reference, prediction)
    return {key: float(scores[key].fmeasure) for key in ROUGE_KEYS}
