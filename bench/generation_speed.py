"""Generation on the paper's raw tasks against a bare batched forward pass of the same shapes.

Test prompts of the four raw tasks, mixed and batched as `evaluate` batches them (longest prompt
first, 32 a batch, the cpu preset's 64 new tokens and max length 128), greedy with the default
model. Reports samples/s of `fedrouter_cli.model.generate`, the padding share of the prompt
batches, and a bound: one bare forward over each prompt batch (prefill) plus, per generated
token, one bare single-token forward of the rows still writing (no generation bookkeeping, and
finished rows dropped, which `generate` does not do).

A row-dropping greedy loop of our own was tried against `model.generate` on these prompts
(outputs identical, 1.48 against 1.68 samples/s) and not kept.

    python bench/generation_speed.py [--per-task 24]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-task", type=int, default=24)
    args = parser.parse_args()

    import torch

    from fedrouter_cli.config import DEFAULT_MODEL, TrainConfig
    from fedrouter_cli.model import generate as gen
    from fedrouter_cli.model.lora import peft_model
    from fedrouter_cli.presets import PRESETS

    cpu = PRESETS["cpu"]
    max_new, batch_size, max_length = cpu["eval"]["max_new_tokens"], cpu["eval"]["batch_size"], cpu["train"]["max_length"]
    prompts = []
    for task in TASKS:
        with open(RAW / task / "test.jsonl") as handle:
            prompts += [json.loads(line)["instruction"] for line, _ in zip(handle, range(args.per_task))]
    model, tokenizer = peft_model(DEFAULT_MODEL, TrainConfig())
    model.eval()
    names = ["default"] * len(prompts)

    started = time.perf_counter()
    answers = gen.generate(model, tokenizer, prompts, names, max_new_tokens=max_new, batch_size=batch_size,
                           max_length=max_length)
    generate_s = time.perf_counter() - started

    # the bound: bare forwards of the same shapes, rows leaving as the loop's rows did
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    lengths = [len(tokenizer(a, add_special_tokens=False)["input_ids"]) + 1 for a in answers]
    bound, real, padded = 0.0, 0, 0
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = gen.encode_prompts(tokenizer, [prompts[i] for i in idx], max_length)
            real += int(batch["attention_mask"].sum())
            padded += batch["attention_mask"].numel()
            began = time.perf_counter()
            out = model(**batch, use_cache=True)
            past, width = out.past_key_values, batch["input_ids"].shape[1]
            steps = [min(lengths[i], max_new) for i in idx]
            for step in range(1, max(steps)):
                alive = [j for j, s in enumerate(steps) if s > step]
                if len(alive) < len(past.layers[0].keys):
                    past.batch_select_indices(torch.tensor(alive))
                    steps = [steps[j] for j in alive]
                    alive = list(range(len(steps)))
                token = torch.zeros((len(alive), 1), dtype=torch.long)
                mask = torch.ones((len(alive), width + step), dtype=torch.long)
                model(input_ids=token, attention_mask=mask, past_key_values=past, use_cache=True)
            bound += time.perf_counter() - began
    n = len(prompts)
    write_result("generation_speed", {
        "command": "python bench/generation_speed.py " + " ".join(sys.argv[1:]), "samples": n,
        "max_new_tokens": max_new, "batch_size": batch_size, "max_length": max_length,
        "generate_samples_per_s": round(n / generate_s, 3),
        "bare_forward_bound_samples_per_s": round(n / bound, 3),
        "generate_vs_bound": round(bound / generate_s, 3),
        "prompt_padding_share": round(1 - real / padded, 4),
        "mean_answer_tokens": round(sum(min(x, max_new) for x in lengths) / n, 1),
    })


if __name__ == "__main__":
    main()
