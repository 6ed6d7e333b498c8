"""Generation throughput with many adapters: mixed batches, per-adapter batches, per-sample switching.

The same 48 prompts routed round-robin to 4 adapters (non-zero, so every adapter does real work),
greedy, 32 new tokens, batch 16.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

from fedrouter_cli.config import TrainConfig  # noqa: E402
from fedrouter_cli.data.synthetic import SYNTHETIC_TASKS, generate_rows  # noqa: E402
from fedrouter_cli.model.generate import generate  # noqa: E402
from fedrouter_cli.model.lora import (  # noqa: E402
    initial_adapter,
    lora_config,
    peft_model,
    set_adapter_weights,
)

MODEL = "smollm2-135m-instruct"


def main(samples: int = 48, adapters: int = 4, max_new_tokens: int = 32, batch_size: int = 16) -> None:
    train = TrainConfig()
    model, tokenizer = peft_model(MODEL, train)
    rng = np.random.default_rng(0)
    names = [f"bench{i}" for i in range(adapters)]
    for i, name in enumerate(names):
        weights = initial_adapter(MODEL, train, seed=i)
        weights = {k: v if "lora_A" in k else rng.normal(0, 0.02, v.shape).astype(np.float32) for k, v in weights.items()}
        model.add_adapter(name, lora_config(train))
        set_adapter_weights(model, weights, adapter_name=name)
    model.eval()
    rows = [r for task in SYNTHETIC_TASKS for r in generate_rows(task, "test", samples // len(SYNTHETIC_TASKS), seed=3)]
    prompts = [r["instruction"] for r in rows]
    routed = [names[i % adapters] for i in range(len(prompts))]
    generate(model, tokenizer, prompts[:4], routed[:4], max_new_tokens=4)  # warm-up
    figures, outputs = {}, {}
    for strategy in ("mixed", "grouped", "per-sample"):
        started = time.perf_counter()
        outputs[strategy] = generate(model, tokenizer, prompts, routed, strategy=strategy,
                                     max_new_tokens=max_new_tokens, batch_size=batch_size)
        figures[f"{strategy}_samples_per_s"] = round(len(prompts) / (time.perf_counter() - started), 3)
    figures["mixed_vs_per_sample"] = round(figures["mixed_samples_per_s"] / figures["per-sample_samples_per_s"], 2)
    figures["grouped_vs_per_sample"] = round(figures["grouped_samples_per_s"] / figures["per-sample_samples_per_s"], 2)
    figures["identical_outputs"] = outputs["mixed"] == outputs["grouped"] == outputs["per-sample"]
    write_result("eval_throughput", {"samples": len(prompts), "adapters": adapters, "max_new_tokens": max_new_tokens,
                                     "batch_size": batch_size, **figures})


if __name__ == "__main__":
    main()
