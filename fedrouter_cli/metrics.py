"""ROUGE F1 (rouge-score) per sample, and the means the paper reports."""

from __future__ import annotations

import functools

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL")


@functools.lru_cache(maxsize=2)
def _scorer(stemming: bool):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=stemming)


def rouge(prediction: str, reference: str, stemming: bool = True) -> dict[str, float]:
    """F1 of ROUGE-1/2/L; stemming=False scores as the `evaluate` library does by default (the
    FedRouter authors' scores)."""
    scores = _scorer(stemming).score(reference, prediction)
    return {key: float(scores[key].fmeasure) for key in ROUGE_KEYS}
