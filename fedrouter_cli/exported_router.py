"""Route prompts to a FedRouter export's adapters exactly as `fedrouter generate` does.

Every export ships this file as `router/route.py`, beside `router.json` (the embedder's
description) and `centroids.parquet`. It needs numpy, torch, transformers, pyarrow and, for an
embedder with character n-grams, scikit-learn; nothing from fedrouter.

    python router/route.py "Summarize: ..." ["another prompt" ...] [--embedder PATH]

prints one JSON line per prompt: {"prompt", "adapter", "distances"}. --embedder points at a local
copy of the embedder when router.json's `embedding.path` is not on this machine (its hub id is
`embedding.model`). From Python: `route(["..."], Path("router"))`.

The embedding of a prompt: its raw text (no template) through the embedder, the mean of the last
hidden layer over the non-padding tokens (truncated to `max_length` tokens), L2-normalised; with
`char_ngrams`, followed by the L2-normalised hashed counts of the text's character n-grams and the
whole divided by sqrt(2). The adapter is the one of the nearest centroid (Euclidean distance).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def embed(prompts: list[str], embedder: dict, path: str | None = None):
    """The prompts' vectors in the router's space, float32 [n, dim]."""
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    source = path or embedder["path"]
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    model = AutoModel.from_pretrained(source).eval()
    vectors = []
    with torch.inference_mode():
        for prompt in prompts:  # one at a time, as the tool embeds a prompt it answers: no padding
            batch = tokenizer([prompt], truncation=True, max_length=embedder["max_length"], return_tensors="pt")
            hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(torch.float32)
            pooled = (hidden.float() * mask).sum(1) / mask.sum(1).clamp(min=1)
            if embedder["normalize"] or embedder.get("char_ngrams"):
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            vectors.append(pooled.numpy().astype(np.float32))
    out = np.concatenate(vectors)
    grams = embedder.get("char_ngrams")
    if grams:
        from sklearn.feature_extraction.text import HashingVectorizer

        counts = HashingVectorizer(analyzer=grams["analyzer"], ngram_range=tuple(grams["ngram_range"]),
                                   n_features=grams["n_features"], alternate_sign=False, norm="l2",
                                   lowercase=grams["lowercase"]).transform(prompts).toarray().astype(np.float32)
        out = np.hstack([out, counts]) / np.float32(math.sqrt(2.0))
    return out


def route(prompts: list[str], router_dir: Path, embedder_path: str | None = None) -> list[dict]:
    """Each prompt's adapter and its distance to every centroid."""
    import numpy as np
    import pyarrow.parquet as pq

    settings = json.loads((router_dir / "router.json").read_text())
    table = pq.read_table(router_dir / "centroids.parquet")
    names = table.column("adapter").to_pylist()
    centroids = np.asarray(table.column("centroid").to_pylist(), dtype=np.float32)
    vectors = embed(prompts, settings["embedding"], embedder_path)
    if vectors.shape[1] != centroids.shape[1]:
        raise SystemExit(f"the embedder gives {vectors.shape[1]} dimensions, the centroids have "
                         f"{centroids.shape[1]}: pass the export's own embedder (router.json)")
    routed = []
    for prompt, vector in zip(prompts, vectors):
        distances = np.sqrt(((centroids.astype(np.float64) - vector.astype(np.float64)) ** 2).sum(axis=1))
        routed.append({"prompt": prompt, "adapter": names[int(distances.argmin())],
                       "distances": {n: round(float(d), 4) for n, d in zip(names, distances)}})
    return routed


def main() -> None:
    parser = argparse.ArgumentParser(description="Route prompts to a FedRouter export's adapters.")
    parser.add_argument("prompts", nargs="+", help="the prompts' raw text")
    parser.add_argument("--embedder", help="a local copy of the embedder (default: router.json's path)")
    args = parser.parse_args()
    for answer in route(args.prompts, Path(__file__).resolve().parent, args.embedder):
        print(json.dumps(answer))


if __name__ == "__main__":
    main()
