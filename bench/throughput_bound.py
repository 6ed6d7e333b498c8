"""Embedding, training and generation throughput against this machine's matrix-product bound.

On one run, on the paper's raw tasks (../shared/data/raw; the built-in generator without it):
1. the bound: GFLOP/s of a bare fp32 matrix product at the shapes the models use (a prompt
   batch's projections, a decode step's, SmolLM2's 49,152-word output layer, MiniLM's layers);
2. embedding (`embed_texts`, MiniLM), training (`train_steps`, the cpu preset's job on one
   client's rows of all four tasks) and generation (`generate_answers`, 24 test prompts per task,
   the cpu preset's batch and lengths) as tokens/s and useful GFLOP/s, and as a fraction of the
   best bound. Useful work counts real tokens only (no padding, no row that already ended):
   a forward pass is 2 FLOP per weight per token; training adds 2 more for the activations'
   gradients (the frozen weights get none, LoRA's are negligible), and applies the output layer
   only to response tokens; generation applies it once per prompt and per answer token.

`--variant before` runs training without length grouping and generation without token budgets
(the behaviour before issue 33); `after` with both. Each writes its own JSON.

    python bench/throughput_bound.py --variant before
    python bench/throughput_bound.py --variant after
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

RAW = Path(__file__).resolve().parents[2] / "shared" / "data" / "raw"
TASKS = ("qqp", "webnlg", "samsum", "gigaword")


def rows(split: str, per_task: int) -> list[tuple[str, str, str]]:
    """(task, instruction, response) rows of the raw tasks, or of the built-in generator without them."""
    out = []
    if RAW.is_dir():
        for task in TASKS:
            with open(RAW / task / f"{split}.jsonl") as handle:
                for line, _ in zip(handle, range(per_task)):
                    row = json.loads(line)
                    out.append((task, row["instruction"], row["response"]))
        return out
    from fedrouter_cli.data.synthetic import SYNTHETIC_TASKS, generate_rows

    for task in SYNTHETIC_TASKS:
        out += [(task, r["instruction"], r["response"]) for r in generate_rows(task, per_task, seed=1)]
    return out


def matmul_gflops(m: int, k: int, n: int, seconds: float = 1.5) -> float:
    import torch

    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(3):
        a @ b
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        done += 1
    return 2 * m * k * n * done / (time.perf_counter() - started) / 1e9


def weight_counts(model) -> tuple[int, int]:
    """(weights of the layers every token goes through, weights of the output layer)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    body = sum(p.numel() for n, p in base.model.layers.named_parameters() if "lora_" not in n)
    return body, base.lm_head.weight.numel()


def measure_embedding(texts: list[str]) -> dict:
    from fedrouter_cli.embed import embed_texts
    from fedrouter_cli.model.loading import load_encoder, resolve_embedder

    model, tokenizer = load_encoder(resolve_embedder("minilm", ""))
    weights = sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)
    tokens = sum(min(len(ids), 256) for ids in tokenizer(texts)["input_ids"])
    embed_texts(model, tokenizer, texts[:32])  # warm-up
    started = time.perf_counter()
    embed_texts(model, tokenizer, texts, batch_size=32, max_length=256)
    seconds = time.perf_counter() - started
    return {"texts": len(texts), "tokens": tokens, "seconds": round(seconds, 3),
            "tokens_per_s": round(tokens / seconds, 1), "gflops": round(2 * weights * tokens / seconds / 1e9, 2)}


def measure_training(model, tokenizer, train_rows: list[tuple[str, str]], grouped: bool, steps: int) -> dict:
    from fedrouter_cli.model.train import draw_batches, encode, train_steps

    body, head = weight_counts(model)
    encoded = [encode(tokenizer, q, a, 128) for q, a in train_rows]
    import random

    batches = draw_batches([len(ids) for ids, _ in encoded], steps, 4, random.Random(11), grouped)
    real = sum(len(encoded[i][0]) for b in batches for i in b)
    labelled = sum(sum(x != -100 for x in encoded[i][1]) for b in batches for i in b)
    train_steps(model, tokenizer, train_rows, 1, 4, 1e-4, 128, seed=11)  # warm-up
    outcome = train_steps(model, tokenizer, train_rows, steps, 4, 1e-4, 128, seed=11, group_by_length=grouped)
    flop = 4 * body * real + 4 * head * labelled
    return {"steps": steps, "batch_size": 4, "seconds": round(outcome.seconds, 3),
            "padding_share": round(outcome.padding, 4), "real_tokens": real,
            "tokens_per_s": round(real / outcome.seconds, 1), "gflops": round(flop / outcome.seconds / 1e9, 2)}


def measure_generation(model, tokenizer, test: list[tuple[str, str, str]], budgets: dict[str, int] | None) -> dict:
    from fedrouter_cli.config import DEFAULT_MODEL, TrainConfig
    from fedrouter_cli.data.prompts import format_prompt
    from fedrouter_cli.model.generate import generate_answers
    from fedrouter_cli.model.lora import (
        initial_adapter,
        lora_config,
        set_adapter_weights,
    )

    body, head = weight_counts(model)
    tasks = sorted({t for t, _, _ in test})
    for task in tasks:  # one adapter per task (lora_B = 0: the base model's answers, through LoRA's path)
        model.add_adapter(task, lora_config(TrainConfig()))
        set_adapter_weights(model, initial_adapter(DEFAULT_MODEL, TrainConfig(), 0), adapter_name=task)
    prompts = [q for _, q, _ in test]
    names = [t for t, _, _ in test]
    limits = [min(64, budgets[t]) if budgets else 64 for t in names]
    prompt_tokens = sum(min(len(ids), 128) for ids in tokenizer([format_prompt(p) for p in prompts])["input_ids"])
    generate_answers(model, tokenizer, prompts[:4], names[:4], [4] * 4, batch_size=32, max_length=128)  # warm-up
    started = time.perf_counter()
    answers = generate_answers(model, tokenizer, prompts, names, limits, batch_size=32, max_length=128)
    seconds = time.perf_counter() - started
    for task in tasks:
        model.delete_adapter(task)
    # each answer token ran through the body and the head; EOS, where written, too
    answer_tokens = sum(len(a.tokens) + a.finished for a in answers)
    flop = 2 * body * (prompt_tokens + answer_tokens) + 2 * head * answer_tokens
    return {"samples": len(prompts), "seconds": round(seconds, 3), "samples_per_s": round(len(prompts) / seconds, 3),
            "prompt_tokens": prompt_tokens, "answer_tokens": answer_tokens,
            "limits": {t: limits[names.index(t)] for t in tasks},
            "tokens_per_s": round((prompt_tokens + answer_tokens) / seconds, 1),
            "gflops": round(flop / seconds / 1e9, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=("before", "after"), required=True)
    parser.add_argument("--per-task", type=int, default=24)
    parser.add_argument("--train-steps", type=int, default=16)
    args = parser.parse_args()
    after = args.variant == "after"

    from fedrouter_cli.config import DEFAULT_MODEL, TrainConfig
    from fedrouter_cli.model.lora import peft_model
    from fedrouter_cli.model.train import encode, response_token_budget

    bound = {"prompt batch 3200x576 @ 576x1536": matmul_gflops(3200, 576, 1536),
             "prompt batch 3200x576 @ 576x576": matmul_gflops(3200, 576, 576),
             "decode step 32x576 @ 576x1536": matmul_gflops(32, 576, 1536),
             "output layer 32x576 @ 576x49152": matmul_gflops(32, 576, 49152),
             "MiniLM 2400x384 @ 384x1536": matmul_gflops(2400, 384, 1536)}
    best = max(bound.values())
    train_rows = rows("train", 40)
    test = rows("test", args.per_task)
    figures = {"embedding": measure_embedding([q for _, q, _ in train_rows] * 3)}
    model, tokenizer = peft_model(DEFAULT_MODEL, TrainConfig())
    figures["training"] = measure_training(model, tokenizer, [(q, a) for _, q, a in train_rows], after,
                                           args.train_steps)
    budgets = None
    if after:  # each task's budget from its own training responses, as a node computes it
        budgets = {task: response_token_budget([sum(x != -100 for x in encode(tokenizer, q, a, 128)[1])
                                                for t, q, a in rows("train", 200) if t == task])
                   for task in {t for t, _, _ in test}}
    model.eval()
    figures["generation"] = measure_generation(model, tokenizer, test, budgets)
    for part in figures.values():
        part["fraction_of_bound"] = round(part["gflops"] / best, 3)
    write_result(f"throughput_bound_{args.variant}", {
        "command": "python bench/throughput_bound.py " + " ".join(sys.argv[1:]),
        "data": "raw" if RAW.is_dir() else "synthetic",
        "variant": args.variant, "matmul_gflops": {k: round(v, 1) for k, v in bound.items()},
        "bound_gflops": round(best, 1), **figures})


if __name__ == "__main__":
    main()
