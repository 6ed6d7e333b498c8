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
    if _plain_greedy(model):
        ids = _greedy(model, batch, adapters, max_new_tokens, tokenizer.eos_token_id)
        return tokenizer.batch_decode(ids, skip_special_tokens=True)
    kwargs = {"adapter_names": adapters} if adapters is not None else {}
    output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **kwargs)
    return tokenizer.batch_decode(output[:, batch["input_ids"].shape[1]:].cpu(), skip_special_tokens=True)


# generation settings that make greedy decoding more than the argmax of the logits, at their neutral value
# (suppress_tokens is applied by the loop itself)
_NEUTRAL = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "bad_words_ids": None,
            "begin_suppress_tokens": None, "forced_bos_token_id": None, "forced_eos_token_id": None,
            "min_new_tokens": 0, "min_length": 0, "sequence_bias": None}


def _plain_greedy(model) -> bool:
    """True when the model's generation config adds nothing to greedy argmax decoding, so the
    row-dropping loop below gives what `model.generate` would (otherwise generate runs)."""
    config = getattr(model, "generation_config", None)
    return config is not None and all(getattr(config, name, None) in (None, neutral) for name, neutral in _NEUTRAL.items())


def _greedy(model, batch: dict[str, torch.Tensor], adapters: list[str] | None, max_new_tokens: int,
            eos_id: int) -> list[list[int]]:
    """Greedy decoding with a KV cache that drops each row as soon as it has produced EOS.

    `model.generate` keeps finished rows in the batch until the last one ends, so a batch that
    mixes two-token labels (QQP's yes/no) with sixty-token descriptions decodes every row sixty
    times; here the later steps run only the rows still writing. The same forward passes as
    `generate` (left padding, positions counted over the real tokens), so the tokens are the same.
    """
    mask = batch["attention_mask"]
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    step_ids, step_positions = batch["input_ids"], positions
    last = positions[:, -1]
    rows = list(range(len(mask)))
    names = list(adapters) if adapters is not None else None
    produced: list[list[int]] = [[] for _ in rows]
    past = None
    suppressed = getattr(model.generation_config, "suppress_tokens", None) or []
    for step in range(max_new_tokens):
        extra = {"adapter_names": names} if names is not None else {}
        out = model(input_ids=step_ids, attention_mask=mask, position_ids=step_positions, past_key_values=past,
                    use_cache=True, **extra)
        past = out.past_key_values
        logits = out.logits[:, -1]
        if suppressed:
            logits[:, suppressed] = float("-inf")
        tokens = logits.argmax(-1)
        for row, token in zip(rows, tokens.tolist()):
            produced[row].append(token)
        alive = tokens != eos_id
        if step == max_new_tokens - 1 or not bool(alive.any()):
            break
        if not bool(alive.all()):
            keep = alive.nonzero().squeeze(1)
            past.batch_select_indices(keep)
            kept = keep.tolist()
            rows, tokens, mask, last = [rows[i] for i in kept], tokens[keep], mask[keep], last[keep]
            names = [names[i] for i in kept] if names is not None else None
        mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
        last = last + 1
        step_ids, step_positions = tokens[:, None], last[:, None]
    return produced


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
