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
PROBE = "__probe__"  # a temporary adapter for last_token_states


def encode_prompts(tokenizer, prompts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    """Formatted prompts as a left-padded batch, each cut to its last `max_length` tokens.

    Cut from the left, as training does: the end of a prompt holds the response marker the model
    answers after, its start only the template's preamble (and the first turns of a long dialogue).
    """
    sides = tokenizer.padding_side, tokenizer.truncation_side
    tokenizer.padding_side, tokenizer.truncation_side = "left", "left"
    try:
        return tokenizer([format_prompt(p) for p in prompts], return_tensors="pt", padding=True,
                         truncation=True, max_length=max_length)
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = sides


@torch.inference_mode()
def _generate_batch(model, tokenizer, prompts: list[str], adapters: list[str] | None, max_new_tokens: int,
                    max_length: int) -> list[str]:
    batch = to_model_device(encode_prompts(tokenizer, prompts, max_length), model)  # prompts go where the weights are
    kwargs = {"adapter_names": adapters} if adapters is not None else {}
    output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **kwargs)
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


@torch.inference_mode()
def last_token_states(model, tokenizer, prompts: list[str], adapter, train, max_length: int,
                      batch_size: int = 16):
    """Last-layer hidden state at the last token of each formatted prompt (cut from the left like
    generation), of the base model with `adapter` (PEFT keys, any rank): a float32 array [n, hidden]."""
    import numpy as np

    from fedrouter_cli.model.lora import lora_config, set_adapter_weights, with_rank

    previous = model.active_adapter
    model.add_adapter(PROBE, lora_config(with_rank(train, adapter)))
    try:
        set_adapter_weights(model, adapter, adapter_name=PROBE)
        model.set_adapter(PROBE)
        model.eval()
        states = []
        for start in range(0, len(prompts), batch_size):
            batch = encode_prompts(tokenizer, prompts[start:start + batch_size], max_length)
            hidden = model(**batch, output_hidden_states=True, use_cache=False).hidden_states[-1]
            states.append(hidden[:, -1].float().cpu().numpy())  # left padding: the last column is the last token
        return np.concatenate(states) if states else np.zeros((0, 0), dtype=np.float32)
    finally:
        model.set_adapter(previous)
        model.delete_adapter(PROBE)
