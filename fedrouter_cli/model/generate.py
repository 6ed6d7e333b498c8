"""Greedy generation with many adapters: mixed-adapter batches, batches per adapter, or one by one.

PEFT applies a different adapter to each row of a batch (`adapter_names=`), so samples routed
to different adapters share batches; '__base__' rows run the base model alone.
"""

from __future__ import annotations

import torch

from fedrouter_cli.data.prompts import format_prompt
from fedrouter_cli.model.device import to_model_device
from fedrouter_cli.progress import Progress, no_progress

BASE = "__base__"


@torch.inference_mode()
def _generate_batch(model, tokenizer, prompts: list[str], adapters: list[str] | None, max_new_tokens: int,
                    max_length: int) -> list[str]:
    tokenizer.padding_side = "left"
    batch = tokenizer([format_prompt(p) for p in prompts], return_tensors="pt", padding=True,
                      truncation=True, max_length=max_length)
    batch = to_model_device(batch, model)  # prompts go where the weights are (a GPU, or 4-bit on a GPU)
    kwargs = {"adapter_names": adapters} if adapters is not None else {}
    output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                            pad_token_id=tokenizer.pad_token_id, **kwargs)
    return tokenizer.batch_decode(output[:, batch["input_ids"].shape[1]:].cpu(), skip_special_tokens=True)


def generate(model, tokenizer, prompts: list[str], adapters: list[str], *, strategy: str = "mixed",
             max_new_tokens: int = 32, batch_size: int = 16, max_length: int = 1024,
             progress: Progress = no_progress) -> list[str]:
    """Answer each prompt with its adapter. strategy: mixed | grouped | per-sample."""
    order = sorted(range(len(prompts)), key=lambda i: (adapters[i] if strategy == "grouped" else "", -len(prompts[i])))
    if strategy == "per-sample":
        batches = [[i] for i in range(len(prompts))]
    elif strategy == "grouped":
        batches = []
        for name in sorted(set(adapters)):
            members = [i for i in order if adapters[i] == name]
            batches += [members[s:s + batch_size] for s in range(0, len(members), batch_size)]
    else:
        batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    answers: list[str] = [""] * len(prompts)
    done = 0
    for batch in batches:
        names = [adapters[i] for i in batch]
        if strategy == "mixed":
            texts = _generate_batch(model, tokenizer, [prompts[i] for i in batch], names, max_new_tokens, max_length)
        else:  # one adapter for the whole batch, switched with set_adapter
            texts = _with_adapter(model, tokenizer, [prompts[i] for i in batch], names[0], max_new_tokens, max_length)
        for i, text in zip(batch, texts):
            answers[i] = text.strip()
        done += len(batch)
        progress("generate", done, len(prompts))
    return answers


def _with_adapter(model, tokenizer, prompts, name, max_new_tokens, max_length):
    if name == BASE:
        with model.disable_adapter():
            return _generate_batch(model, tokenizer, prompts, None, max_new_tokens, max_length)
    model.set_adapter(name)
    return _generate_batch(model, tokenizer, prompts, None, max_new_tokens, max_length)
