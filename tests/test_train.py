"""The training loss: the response-only LM head gives the model's own loss and gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedrouter_cli.config import TrainConfig


def test_response_loss_matches_the_models_own_loss_and_gradients(tiny_model: str) -> None:
    from fedrouter_cli.model.lora import (
        initial_adapter,
        peft_model,
        set_adapter_weights,
    )
    from fedrouter_cli.model.train import _plain_head, collate, encode, response_loss

    train = TrainConfig(lora_r=4, lora_alpha=8, lora_dropout=0.0)
    model, tokenizer = peft_model(tiny_model, train)
    assert _plain_head(model) is not None  # Llama takes the fast path, so this test compares two paths
    start = initial_adapter(tiny_model, train, seed=3)
    rng = np.random.default_rng(0)  # a nonzero B, so every LoRA weight gets a gradient
    set_adapter_weights(model, {k: rng.normal(scale=0.2, size=v.shape).astype(np.float32) if "lora_B" in k else v
                                for k, v in start.items()})
    rows = [("Summarize: the council approved the new park after a long debate.", "Council approves park"),
            ("Is 'the cat sat on the mat' grammatical? OPTIONS: - yes - no", "yes"),
            ("Turn into a sentence: Alan_Bean | occupation | astronaut", "Alan Bean was an astronaut.")]
    batch = collate([encode(tokenizer, q, a, 64) for q, a in rows], tokenizer.pad_token_id)
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    model.eval()  # no dropout: both passes see the same network

    def loss_and_grads(compute) -> tuple[float, list[torch.Tensor]]:
        for p in lora:
            p.requires_grad_(True)
            p.grad = None
        loss = compute()
        loss.backward()
        return float(loss), [p.grad.clone() for p in lora]

    fast, fast_grads = loss_and_grads(lambda: response_loss(model, batch))
    full, full_grads = loss_and_grads(lambda: model(**batch).loss)
    assert fast == pytest.approx(full, rel=1e-5)
    for a, b in zip(fast_grads, full_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert any(float(g.abs().sum()) > 0 for g in fast_grads)
