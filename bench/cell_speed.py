"""What a bench cell spends its time on, before and after this tool's three speed-ups, on FLAN rows.

1. Training step (cpu preset: batch 4, max length 128): the model's own loss, which applies the
   49k-word LM head at every position, against `response_loss`, which applies it only where a
   label exists. Losses must agree.
2. Clients in parallel: steps/s of one process with 2 threads against two processes with 1 thread
   each, running at the same time (what `simulate --workers` auto does on 2 cores).
3. Generation batch size (greedy, 32 new tokens, 4 adapters mixed per batch): samples/s at
   16, 32 and 64 prompts a batch; outputs must be identical.

Needs ../shared/data/flan. Run alone on a quiet machine: `.venv/bin/python bench/cell_speed.py`.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

FLAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "flan"
TASKS = ("glue_qqp", "web_nlg_en", "gigaword", "trec")
MODEL = "smollm2-135m-instruct"


def flan_rows(split: str, per_task: int) -> list[dict]:
    rows = []
    for task in TASKS:
        with open(FLAN / task / f"{split}.jsonl") as handle:
            rows += [json.loads(line) for line, _ in zip(handle, range(per_task))]
    return rows


def step_times(steps: int = 8, threads: int = 0) -> dict:
    """Seconds per training step (forward + backward) with either loss, same batches."""
    import torch

    from fedrouter_cli.config import TrainConfig
    from fedrouter_cli.model.lora import peft_model
    from fedrouter_cli.model.train import collate, encode, response_loss

    if threads:
        torch.set_num_threads(threads)
    model, tokenizer = peft_model(MODEL, TrainConfig())
    encoded = [encode(tokenizer, r["instruction"], r["response"], 128) for r in flan_rows("train", 40)]
    rng = random.Random(0)
    batches = [collate(rng.sample(encoded, 4), tokenizer.pad_token_id) for _ in range(steps)]
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name)
    model.train()
    losses = {"full_head": lambda b: model(**b).loss, "response_head": lambda b: response_loss(model, b)}
    figures: dict = {"tokens_per_row": round(float(np.mean([len(ids) for ids, _ in encoded])), 1),
                     "labelled_share": round(float(np.mean([sum(x != -100 for x in labels) / len(labels)
                                                            for _, labels in encoded])), 3)}
    losses["full_head"](batches[0]).backward()  # warm-up
    for name, compute in list(losses.items()) * 2:  # interleaved twice; the second pass is kept
        started, values = time.perf_counter(), []
        for batch in batches:
            loss = compute(batch)
            loss.backward()
            model.zero_grad(set_to_none=True)
            values.append(float(loss.detach()))
        figures[f"{name}_s_per_step"] = round((time.perf_counter() - started) / steps, 3)
        figures[f"{name}_losses"] = [round(v, 5) for v in values]
    return figures


def parallel_step_rate(steps: int) -> dict:
    """Steps/s of two single-threaded processes at once, against one process with 2 threads."""
    def run(threads: int, copies: int) -> float:
        code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import cell_speed, json; " \
               f"print(json.dumps(cell_speed.step_times({steps}, {threads})))"
        processes = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
                     for _ in range(copies)]
        per_step = [json.loads(p.communicate()[0].strip().splitlines()[-1])["response_head_s_per_step"]
                    for p in processes]
        return sum(1 / s for s in per_step)
    one, two = run(2, 1), run(1, 2)
    return {"one_client_2_threads_steps_per_s": round(one, 3), "two_clients_1_thread_steps_per_s": round(two, 3),
            "parallel_speedup": round(two / one, 2)}


def generation_rates(per_task: int = 24) -> dict:
    from fedrouter_cli.config import TrainConfig
    from fedrouter_cli.model.generate import generate
    from fedrouter_cli.model.lora import (
        initial_adapter,
        lora_config,
        peft_model,
        set_adapter_weights,
    )

    train = TrainConfig()
    model, tokenizer = peft_model(MODEL, train)
    rng = np.random.default_rng(0)
    names = [f"a{i}" for i in range(4)]
    for i, name in enumerate(names):  # nonzero B, so every adapter changes the outputs
        weights = {k: v if "lora_A" in k else rng.normal(0, 0.02, v.shape).astype(np.float32)
                   for k, v in initial_adapter(MODEL, train, i).items()}
        model.add_adapter(name, lora_config(train))
        set_adapter_weights(model, weights, adapter_name=name)
    model.eval()
    prompts = [r["instruction"] for r in flan_rows("test", per_task)]
    routed = [names[i % len(names)] for i in range(len(prompts))]
    generate(model, tokenizer, prompts[:4], routed[:4], max_new_tokens=4)  # warm-up
    figures, outputs = {"samples": len(prompts)}, {}
    for batch_size in (16, 32, 64):
        started = time.perf_counter()
        outputs[batch_size] = generate(model, tokenizer, prompts, routed, max_new_tokens=32,
                                       batch_size=batch_size, max_length=128)
        figures[f"batch{batch_size}_samples_per_s"] = round(len(prompts) / (time.perf_counter() - started), 3)
    figures["identical_outputs"] = outputs[16] == outputs[32] == outputs[64]
    return figures


def main() -> None:
    step = step_times()
    step["losses_agree"] = bool(np.allclose(step["full_head_losses"], step["response_head_losses"], rtol=1e-4))
    step["response_head_speedup"] = round(step["full_head_s_per_step"] / step["response_head_s_per_step"], 2)
    write_result("cell_speed", {"train_step": step, "parallel_clients": parallel_step_rate(steps=8),
                                "generation": generation_rates()})


if __name__ == "__main__":
    main()
