"""The local training loop: a few LoRA steps on one client's rows, loss on the response tokens only."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

from fedrouter_cli.data.prompts import format_prompt
from fedrouter_cli.model.device import to_model_device


@dataclass
class TrainOutcome:
    loss: float          # mean loss over the steps
    first_loss: float
    last_loss: float
    samples: int         # samples trained on (steps x batch, counting repeats)
    seconds: float
    token_budget: int = 0  # new tokens an answer of this data needs (response_token_budget)
    padding: float = 0.0   # share of the batches' token slots that were padding


def encode(tokenizer, instruction: str, response: str, max_length: int,
           prompt_format: str = "alpaca") -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 on the prompt) for one example, truncated to max_length.

    The prompt is cut from the left of the instruction if needed so the response survives.
    """
    prompt_ids = tokenizer(format_prompt(instruction, prompt_format, tokenizer), add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(response.strip(), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    answer_ids = answer_ids[: max(1, max_length // 2)]
    prompt_ids = prompt_ids[-(max_length - len(answer_ids)):]
    return prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids


def response_token_budget(answer_lengths: list[int]) -> int:
    """New tokens that answers like these need at generation: the 99th percentile of the training
    responses' token counts (EOS included), plus a quarter and 4 tokens of margin. Computed on the
    node, where the responses are; only the number leaves it."""
    if not answer_lengths:
        return 0
    p99 = sorted(answer_lengths)[math.ceil(0.99 * len(answer_lengths)) - 1]
    return math.ceil(1.25 * p99) + 4


def draw_batches(lengths: list[int], steps: int, batch_size: int, rng: random.Random,
                 group_by_length: bool) -> list[list[int]]:
    """`steps` batches of row indices, drawn in seeded order without replacement per pass over the
    rows. Grouped by length, the same rows are sorted by token count into batches whose order is
    then shuffled (seeded): a batch pads to its longest row, so like lengths waste little."""
    order: list[int] = []
    drawn: list[int] = []
    while len(drawn) < steps * batch_size:
        if not order:
            order = rng.sample(range(len(lengths)), len(lengths))
        drawn.append(order.pop())
    if group_by_length:
        drawn.sort(key=lambda i: lengths[i])
    batches = [drawn[s:s + batch_size] for s in range(0, len(drawn), batch_size)]
    if group_by_length:
        rng.shuffle(batches)
    return batches


def collate(examples: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (ids, labs) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(labs)] = torch.tensor(labs)
        mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": mask}


def _plain_head(model):
    """The decoder and LM head of a PEFT-wrapped causal LM whose logits are a plain projection of
    the last hidden state, or None when the model post-processes its logits (soft-capping, scaling)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if any(getattr(config, name, None) for name in ("final_logit_softcapping", "logit_scale", "logits_scaling")):
        return None
    decoder, head = getattr(base, "model", None), getattr(base, "lm_head", None)
    return (decoder, head) if isinstance(head, torch.nn.Linear) and decoder is not None else None


def response_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token loss over the labelled (response) tokens, as the model's own loss computes it.

    The LM head is applied only where a label exists: the prompt makes up ~85% of the tokens here,
    and a 49k-word head over every position costs about a fifth of a training step on CPU.
    """
    parts = _plain_head(model)
    if parts is None:
        return model(**batch).loss
    decoder, head = parts
    hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    targets = batch["labels"][:, 1:]
    scored = targets != -100
    logits = head(hidden[:, :-1][scored])
    return torch.nn.functional.cross_entropy(logits.float(), targets[scored])


def train_steps(model, tokenizer, rows: list[tuple[str, str]], steps: int, batch_size: int, lr: float,
                max_length: int, seed: int, trainable: str = "all", adapter: str = "default",
                group_by_length: bool = False, max_grad_norm: float = 0.0, prompt_format: str = "alpaca") -> TrainOutcome:
    """Run `steps` AdamW steps on batches drawn (seeded, without replacement per pass) from `rows`.

    trainable: 'all' LoRA weights, or 'lora_B' only (lora_A frozen, as FFA-LoRA does), of the
    adapter named `adapter`; any other adapter active beside it (lora.companion_adapter) stays frozen.
    group_by_length: batches of like-length rows (draw_batches). max_grad_norm: each step's
    gradient clipped to this L2 norm (0 = not clipped).
    """
    import time

    started = time.perf_counter()
    torch.manual_seed(seed)
    rng = random.Random(seed)
    encoded = [encode(tokenizer, q, a, max_length, prompt_format) for q, a in rows]
    params = []
    for name, param in model.named_parameters():
        wanted = "lora_" in name and f".{adapter}." in name and (trainable == "all" or trainable in name)
        param.requires_grad_(wanted)
        if wanted:
            params.append(param)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    slots = real = 0
    for batch_rows in draw_batches([len(ids) for ids, _ in encoded], steps, batch_size, rng, group_by_length):
        batch = [encoded[i] for i in batch_rows]
        slots += batch_size * max(len(ids) for ids, _ in batch)
        real += sum(len(ids) for ids, _ in batch)
        loss = response_loss(model, to_model_device(collate(batch, tokenizer.pad_token_id), model))
        loss.backward()
        if max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    model.eval()
    budget = response_token_budget([sum(label != -100 for label in labels) for _, labels in encoded])
    return TrainOutcome(loss=sum(losses) / len(losses), first_loss=losses[0], last_loss=losses[-1],
                        samples=steps * batch_size, seconds=time.perf_counter() - started,
                        token_budget=budget, padding=1 - real / slots if slots else 0.0)
