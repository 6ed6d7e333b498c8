"""Sentence embeddings: the mean of a model's last hidden layer over the non-padding tokens,
optionally beside hashed character n-grams of the text."""

from __future__ import annotations

import numpy as np
import torch

from fedrouter_cli.model.device import to_model_device
from fedrouter_cli.progress import Progress, no_progress

# Hashed character n-grams: no vocabulary to fit, so every node computes them alone and all land in
# one space; 1,024 buckets of 2- to 4-grams separate the paper's task formats as well as 4,096 did.
CHAR_FEATURES = 1024
# scikit-learn HashingVectorizer settings (alternate_sign off, L2 norm); an export's router.json
# carries them, so its route.py computes the same features
CHAR_NGRAMS = {"analyzer": "char_wb", "ngram_range": [2, 4], "n_features": CHAR_FEATURES, "lowercase": False}


def char_ngrams(texts: list[str]) -> np.ndarray:
    """L2-normalised counts of the texts' character 2- to 4-grams (within words), hashed: [n, 1024]."""
    from sklearn.feature_extraction.text import HashingVectorizer

    vectorizer = HashingVectorizer(analyzer=CHAR_NGRAMS["analyzer"], ngram_range=tuple(CHAR_NGRAMS["ngram_range"]),
                                   n_features=CHAR_NGRAMS["n_features"], alternate_sign=False, norm="l2",
                                   lowercase=CHAR_NGRAMS["lowercase"])
    return vectorizer.transform(texts).toarray().astype(np.float32)


def embed_texts(model, tokenizer, texts: list[str], batch_size: int = 32, max_length: int = 256,
                normalize: bool = True, progress: Progress = no_progress, char_features: bool = False) -> np.ndarray:
    """Embed `texts`; with `char_features`, each normalised vector is followed by the text's hashed
    character n-grams, the two halves weighted equally and the whole of unit length."""
    vectors = _encode(model, tokenizer, texts, batch_size, max_length, normalize or char_features, progress)
    if not char_features:
        return vectors
    return np.hstack([vectors, char_ngrams(texts)]) / np.float32(np.sqrt(2.0))


@torch.inference_mode()
def _encode(model, tokenizer, texts: list[str], batch_size: int, max_length: int, normalize: bool,
            progress: Progress) -> np.ndarray:
    """Embed `texts` in batches; returns float32 [len(texts), hidden].

    Texts are processed longest first so each batch pads to similar lengths (the padding would
    otherwise be most of the work), and the result is put back in input order.
    """
    if not texts:
        return np.zeros((0, model.config.hidden_size), dtype=np.float32)
    lengths = [len(t) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    out = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
    tokenizer.padding_side = "right"
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt")
        batch = to_model_device(batch, model)
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        hidden = hidden.float()  # pool in fp32 when the model runs in bf16 (a no-op in fp32)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        if normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        out[idx] = pooled.float().cpu().numpy()
        progress("embed", min(start + batch_size, len(order)), len(order))
    return out
