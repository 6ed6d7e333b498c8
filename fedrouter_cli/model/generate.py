"""Greedy generation with many adapters: mixed-adapter batches, batches per adapter, or one by one.

PEFT applies a different adapter to each row of a batch (`adapter_names=`), so samples routed
to different adapters share batches; '__base__' rows run the base model alone.
"""

from __future__ import annotations

import torch

from fedrouter_cli.data.prompts import format_prompt
from fedrouter_cli.generation_cache import Answer
from fedrouter_cli.model.device import to_model_device
from fedrouter_cli.progress import Progress, no_progress

BASE = "__base__"
PROBE = "__probe__"  # a temporary adapter for last_token_states


def encode_prompts(tokenizer, prompts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    """Formatted prompts (data.prompts.format_prompt) as a left-padded batch, each cut to its last
    `max_length` tokens.

    Cut from the left, as training does: the end of a prompt holds the response marker the model
    answers after, its start only the template's preamble (and the first turns of a long dialogue).
    """
    sides = tokenizer.padding_side, tokenizer.truncation_side
    tokenizer.padding_side, tokenizer.truncation_side = "left", "left"
    try:
        return tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=not _has_bos(tokenizer, prompts),
                         truncation=True, max_length=max_length)
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = sides


def _has_bos(tokenizer, prompts: list[str]) -> bool:
    """Prompts that already begin with the BOS token (a chat template that writes it) get no second one."""
    bos = getattr(tokenizer, "bos_token", None)
    return bool(bos) and bool(prompts) and all(p.startswith(bos) for p in prompts)


@torch.inference_mode()
def _generate_batch(model, tokenizer, prompts: list[str], adapters: list[str] | None, limits: list[int],
                    max_length: int) -> list[Answer]:
    """Greedy answers of one batch, each cut to its own limit (the batch runs to the largest)."""
    batch = to_model_device(encode_prompts(tokenizer, prompts, max_length), model)  # prompts go where the weights are
    kwargs = {"adapter_names": adapters} if adapters is not None else {}
    output = model.generate(**batch, max_new_tokens=max(limits), do_sample=False, use_cache=True,
                            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **kwargs)
    answers = []
    for ids, limit in zip(output[:, batch["input_ids"].shape[1]:].cpu().tolist(), limits):
        ids = ids[:limit]
        finished = tokenizer.eos_token_id in ids
        tokens = ids[:ids.index(tokenizer.eos_token_id)] if finished else ids
        answers.append(Answer(tuple(tokens), finished, decode(tokenizer, tokens)))
    return answers


def decode(tokenizer, tokens: list[int]) -> str:
    return tokenizer.decode(tokens, skip_special_tokens=True).strip()


def batches_of(prompt_tokens: list[int], adapters: list[str], limits: list[int], strategy: str,
                batch_size: int) -> list[list[int]]:
    """Indices of the prompts, batched. A batch never mixes token limits: it runs until its last
    row ends or reaches the limit, so two-token labels beside a summary would run to the summary's
    length (and on a CPU a decode step of 64 rows costs about what one of 32 does, so a small batch
    of short answers is cheap). Within a limit, rows of one adapter go together (such a batch runs
    without PEFT's per-row adapter dispatch), longest prompt first, so little of it is padding.
    strategy: mixed (a batch may still hold several adapters), grouped (one adapter a batch) or
    per-sample."""
    if strategy == "per-sample":
        return [[i] for i in range(len(adapters))]
    groups: dict[tuple, list[int]] = {}
    for i in sorted(range(len(adapters)), key=lambda i: (limits[i], adapters[i], -prompt_tokens[i], i)):
        groups.setdefault((limits[i], adapters[i] if strategy == "grouped" else ""), []).append(i)
    return [members[s:s + batch_size] for members in groups.values() for s in range(0, len(members), batch_size)]


def generate_answers(model, tokenizer, prompts: list[str], adapters: list[str], limits: list[int], *,
                     strategy: str = "mixed", batch_size: int = 16, max_length: int = 1024,
                     progress: Progress = no_progress, prompt_format: str = "alpaca") -> list[Answer]:
    """Answer each prompt (an instruction) with its adapter, in at most its limit of new tokens."""
    prompts = [format_prompt(p, prompt_format, tokenizer) for p in prompts]
    lengths = [min(len(ids), max_length)
               for ids in tokenizer(prompts, add_special_tokens=not _has_bos(tokenizer, prompts))["input_ids"]]
    answers: list[Answer | None] = [None] * len(prompts)
    done = 0
    for batch in batches_of(lengths, adapters, limits, strategy, batch_size):
        names, texts, wanted = [adapters[i] for i in batch], [prompts[i] for i in batch], [limits[i] for i in batch]
        if len(set(names)) > 1:
            out = _generate_batch(model, tokenizer, texts, names, wanted, max_length)
        else:  # one adapter for the whole batch, switched with set_adapter (faster than per-row dispatch)
            out = _with_adapter(model, tokenizer, texts, names[0], wanted, max_length)
        for i, answer in zip(batch, out):
            answers[i] = answer
        done += len(batch)
        progress("generate", done, len(prompts))
    return answers  # type: ignore[return-value]


def generate(model, tokenizer, prompts: list[str], adapters: list[str], *, strategy: str = "mixed",
             max_new_tokens: int = 32, batch_size: int = 16, max_length: int = 1024,
             progress: Progress = no_progress, prompt_format: str = "alpaca") -> list[str]:
    """Answer each prompt with its adapter in at most `max_new_tokens`: the texts only."""
    answers = generate_answers(model, tokenizer, prompts, adapters, [max_new_tokens] * len(prompts),
                               strategy=strategy, batch_size=batch_size, max_length=max_length, progress=progress,
                               prompt_format=prompt_format)
    return [a.text for a in answers]


def _with_adapter(model, tokenizer, prompts, name, limits, max_length):
    if name == BASE:
        with model.disable_adapter():
            return _generate_batch(model, tokenizer, prompts, None, limits, max_length)
    previous = model.active_adapter
    model.set_adapter(name)
    try:
        return _generate_batch(model, tokenizer, prompts, None, limits, max_length)
    finally:
        model.set_adapter(previous)


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
            texts = [format_prompt(p, train.prompt_format, tokenizer) for p in prompts[start:start + batch_size]]
            batch = encode_prompts(tokenizer, texts, max_length)
            hidden = model(**batch, output_hidden_states=True, use_cache=False).hidden_states[-1]
            states.append(hidden[:, -1].float().cpu().numpy())  # left padding: the last column is the last token
        return np.concatenate(states) if states else np.zeros((0, 0), dtype=np.float32)
    finally:
        model.set_adapter(previous)
        model.delete_adapter(PROBE)
