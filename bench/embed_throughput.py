"""embed_texts (sorting, pooling, normalising, copying out) against a bare forward pass.

Both see the same texts, batch size and max length, and the bare pass gets the same
length-sorted batches, so the ratio is the cost of everything around the model.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

from fedrouter_cli.data.synthetic import SYNTHETIC_TASKS, generate_rows  # noqa: E402
from fedrouter_cli.embed import embed_texts  # noqa: E402
from fedrouter_cli.model.loading import load_encoder, resolve_embedder  # noqa: E402


@torch.inference_mode()
def bare_forward(model, tokenizer, texts: list[str], batch_size: int, max_length: int) -> int:
    tokens = 0
    ordered = sorted(texts, key=len, reverse=True)
    for start in range(0, len(ordered), batch_size):
        batch = tokenizer(ordered[start:start + batch_size], padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt")
        model(**batch)
        tokens += int(batch["attention_mask"].sum())
    return tokens


def measure(embedder: str, texts: list[str], batch_size: int = 32, max_length: int = 256, repeats: int = 3) -> dict:
    model, tokenizer = load_encoder(resolve_embedder(embedder, "smollm2-135m-instruct"))
    bare_forward(model, tokenizer, texts[:batch_size], batch_size, max_length)  # warm-up
    bare, ours, tokens = [], [], 0
    for _ in range(repeats):  # interleaved, best of n, so drift in machine load hits both alike
        started = time.perf_counter()
        tokens = bare_forward(model, tokenizer, texts, batch_size, max_length)
        bare.append(time.perf_counter() - started)
        started = time.perf_counter()
        embed_texts(model, tokenizer, texts, batch_size, max_length, normalize=True)
        ours.append(time.perf_counter() - started)
    return {"embedder": embedder, "texts": len(texts), "tokens": tokens, "batch_size": batch_size,
            "bare_samples_per_s": round(len(texts) / min(bare), 2), "embed_samples_per_s": round(len(texts) / min(ours), 2),
            "bare_tokens_per_s": round(tokens / min(bare), 1), "embed_tokens_per_s": round(tokens / min(ours), 1),
            "ratio": round(min(bare) / min(ours), 3)}


def main() -> None:
    texts = [r["instruction"] for task in SYNTHETIC_TASKS for r in generate_rows(task, "train", 64, seed=5)]
    figures = {"minilm": measure("minilm", texts), "base": measure("base", texts[:128], repeats=2)}
    write_result("embed_throughput", figures)


if __name__ == "__main__":
    main()
