"""Local training on the paper's raw tasks against a bare forward and backward of the same batches.

One client's job as the cpu preset trains it (SmolLM2-135M-Instruct, LoRA r 8 on q,v, batch 4,
max length 128, AdamW), on the rows a job sees in each scenario's shape: one task (FedRouter's
round-robin job, any scenario) and all four tasks mixed (FedIT's job in the all scenario). Reports:
- seconds per step of `fedrouter_cli.model.train.train_steps`, against a bare step on the very
  same padded batches (the model's own loss over every position, backward, AdamW): our step
  scores only the response tokens, so it may be faster than the bare one;
- the padding share of those batches (pad tokens / all tokens in the batch tensors), and what
  length-grouped batching (as transformers' `group_by_length`: batches drawn from length-sorted
  runs of 50 x batch rows) would leave, counted on the same draws without training.

    python bench/train_speed.py [--steps 12]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

RAW = Path(__file__).resolve().parents[2] / "shared" / "data" / "raw"
TASKS = ("qqp", "webnlg", "samsum", "gigaword")


def load_rows(tasks: tuple[str, ...], per_task: int) -> list[tuple[str, str]]:
    rows = []
    for task in tasks:
        with open(RAW / task / "train.jsonl") as handle:
            for line, _ in zip(handle, range(per_task)):
                row = json.loads(line)
                rows.append((row["instruction"], row["response"]))
    return rows


def draws(count: int, steps: int, batch_size: int, seed: int) -> list[list[int]]:
    """The row indices train_steps draws: a seeded shuffle per pass, popped from the end."""
    rng, order, batches = random.Random(seed), [], []
    for _ in range(steps):
        batch = []
        while len(batch) < batch_size:
            if not order:
                order = rng.sample(range(count), count)
            batch.append(order.pop())
        batches.append(batch)
    return batches


def padding_share(lengths: list[int], batches: list[list[int]]) -> float:
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return round(1 - sum(lengths[i] for b in batches for i in b) / padded, 3)


def grouped(lengths: list[int], batches: list[list[int]], batch_size: int, mega: int = 50) -> list[list[int]]:
    """The same rows in the same order, regrouped: each run of `mega` batches sorted by length."""
    flat = [i for b in batches for i in b]
    out = []
    for start in range(0, len(flat), mega * batch_size):
        run = sorted(flat[start:start + mega * batch_size], key=lambda i: -lengths[i])
        out += [run[k:k + batch_size] for k in range(0, len(run), batch_size)]
    return out


def measure(model, tokenizer, rows, steps: int, batch_size: int, max_length: int, lr: float) -> dict:
    import torch

    from fedrouter_cli.model.train import collate, encode, train_steps

    encoded = [encode(tokenizer, q, a, max_length) for q, a in rows]
    lengths = [len(ids) for ids, _ in encoded]
    batches = draws(len(rows), steps, batch_size, seed=1)
    train_steps(model, tokenizer, rows, 1, batch_size, lr, max_length, seed=0)  # warm-up
    started = time.perf_counter()
    train_steps(model, tokenizer, rows, steps, batch_size, lr, max_length, seed=1)
    ours = (time.perf_counter() - started) / steps

    params = [p for name, p in model.named_parameters() if "lora_" in name]
    for param in params:
        param.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    tensors = [collate([encoded[i] for i in b], tokenizer.pad_token_id) for b in batches]
    model.train()
    started = time.perf_counter()
    for batch in tensors:
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    bare = (time.perf_counter() - started) / steps
    model.eval()
    many = draws(len(rows), 100 * steps, batch_size, seed=1)  # enough draws for the padding shares
    return {"rows": len(rows), "mean_tokens_per_row": round(sum(lengths) / len(lengths), 1),
            "seconds_per_step": round(ours, 3), "bare_seconds_per_step": round(bare, 3),
            "ours_vs_bare": round(bare / ours, 3),
            "padding_share": padding_share(lengths, many),
            "padding_share_length_grouped": padding_share(lengths, grouped(lengths, many, batch_size))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--per-task", type=int, default=150)
    args = parser.parse_args()

    from fedrouter_cli.config import DEFAULT_MODEL, TrainConfig
    from fedrouter_cli.model.lora import peft_model
    from fedrouter_cli.presets import PRESETS

    cpu = PRESETS["cpu"]["train"]
    train = TrainConfig(batch_size=cpu["batch_size"], max_length=cpu["max_length"], lr=cpu["lr"])
    model, tokenizer = peft_model(DEFAULT_MODEL, train)
    jobs = {f"one task: {task}": (task,) for task in TASKS} | {"four tasks mixed": TASKS}
    figures = {name: measure(model, tokenizer, load_rows(tasks, args.per_task), args.steps, train.batch_size,
                             train.max_length, train.lr) for name, tasks in jobs.items()}
    write_result("train_speed", {"command": "python bench/train_speed.py " + " ".join(sys.argv[1:]),
                                 "steps": args.steps, "batch_size": train.batch_size,
                                 "max_length": train.max_length, "jobs": figures})


if __name__ == "__main__":
    main()
