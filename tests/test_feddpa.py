"""Issue #14: FedDPA as its authors define it: the instance weight, the local adapter trained beside
the frozen global one, and the last-token probe. Unit tests, no Flower run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def test_feddpa_weight_is_half_the_mean_cosine_to_five_drawn_instructions(tmp_path: Path) -> None:
    from fedrouter_cli.config import TrainConfig
    from fedrouter_cli.federation.inference import InferenceInput
    from fedrouter_cli.federation.node import save_state
    from fedrouter_cli.federation.strategies.feddpa import FedDPA, draw_anchors, reference_weight
    from fedrouter_cli.model.lora import save_adapter

    anchors = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
    states = np.array([[1.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    cos = np.array([[1, 1, 0, 2 ** -0.5, 1], [0, 0, 1, 2 ** -0.5, 0], [-1, -1, 0, -2 ** -0.5, -1]])
    expected = np.clip(0.5 * cos.mean(axis=1), 0, 1)
    np.testing.assert_allclose(reference_weight(states, anchors), expected)
    assert reference_weight(states, anchors)[2] == 0.0                    # clipped at 0

    train_texts = [f"train {i}" for i in range(30)]
    drawn = draw_anchors(train_texts, seed=0, client=2)
    assert len(drawn) == 5 == len(set(drawn)) and set(drawn) <= set(train_texts)
    assert drawn == draw_anchors(train_texts, seed=0, client=2) != draw_anchors(train_texts, seed=0, client=3)

    # route: hidden states of test instructions and the 5 drawn ones, with the client's local adapter
    key = "base_model.model.model.layers.0.self_attn.q_proj.{}.weight"
    rng = np.random.default_rng(0)
    glob = {key.format("lora_A"): rng.normal(size=(2, 4)).astype(np.float32),
            key.format("lora_B"): rng.normal(size=(4, 2)).astype(np.float32)}
    local = {k: v + 1 for k, v in glob.items()}
    node, adapters = tmp_path / "c02", tmp_path / "adapters"
    save_state(node, "feddpa", "local", 1, local)
    save_adapter(adapters / "global", glob, TrainConfig(lora_r=2, target_modules=("q_proj",)), "m")
    vectors = {t: rng.normal(size=6) for t in train_texts + ["q1", "q2"]}
    vectors["q2"] = vectors[drawn[0]]
    seen = []

    def hidden(texts, adapter):
        seen.append((list(texts), adapter))
        return np.stack([vectors[t] for t in texts])

    inputs = InferenceInput(client=2, mode="local", embeddings=np.zeros((2, 3)), state={"round": 1, "extra": {}},
                            adapters_dir=adapters, node_dir=node, train_embeddings=np.zeros((30, 3)),
                            local_centroids=np.zeros((1, 3)), local_tasks=["t"], global_tasks={},
                            instructions=["q1", "q2"], train_instructions=train_texts, hidden_states=hidden, seed=0)
    routing = FedDPA.route(inputs)
    assert seen[0][0] == ["q1", "q2", *drawn] and all(np.array_equal(seen[0][1][k], local[k]) for k in local)
    w = reference_weight(np.stack([vectors["q1"], vectors["q2"]]), np.stack([vectors[t] for t in drawn]))
    for name, w_i in zip(routing.names, w):
        w_local = float(name.split("mix")[1].replace("_", "."))
        assert w_local == pytest.approx(round(w_i * 20) / 20)            # rounded to steps of 0.05
        mix = routing.build[name]()
        a, b = key.format("lora_A"), key.format("lora_B")
        np.testing.assert_allclose(mix[b] @ mix[a], (1 - w_local) * glob[b] @ glob[a] + w_local * local[b] @ local[a],
                                   rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_lm(tokenizer):
    """A randomly initialised two-layer Llama with the default model's vocabulary, LoRA-wrapped."""
    import torch
    from peft import get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from fedrouter_cli.config import TrainConfig
    from fedrouter_cli.model.lora import lora_config

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    train = TrainConfig(lora_r=2, lora_alpha=4, lora_dropout=0.0, target_modules=("q_proj", "v_proj"))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return get_peft_model(LlamaForCausalLM(config), lora_config(train)), tokenizer, train


def test_feddpa_local_adapter_trains_beside_the_frozen_global_one(tiny_lm) -> None:
    import torch

    from fedrouter_cli.model.lora import COMPANION, companion_adapter, get_adapter, set_adapter_weights
    from fedrouter_cli.model.train import train_steps

    model, tokenizer, train = tiny_lm
    rng = np.random.default_rng(1)
    start = {k: (rng.normal(scale=0.5, size=v.shape) if "lora_A" in k else np.zeros(v.shape)).astype(np.float32)
             for k, v in get_adapter(model).items()}
    glob = {k: rng.normal(scale=0.5, size=v.shape).astype(np.float32) for k, v in start.items()}
    set_adapter_weights(model, start)
    batch = tokenizer(["Summarize: Anna meets Ben at noon."], return_tensors="pt")
    model.eval()
    with torch.no_grad():
        local_only = model(**batch).logits
    rows = [("Summarize: Anna meets Ben at noon.", "Anna and Ben meet."), ("Is it raining?", "no")]
    with companion_adapter(model, glob, train):
        with torch.no_grad():
            stacked = model(**batch).logits
        assert not torch.allclose(stacked, local_only, atol=1e-4)       # the global adapter is active
        train_steps(model, tokenizer, rows, steps=2, batch_size=2, lr=1e-2, max_length=32, seed=0)
        frozen = get_adapter(model, COMPANION)
        for k, v in glob.items():
            assert np.array_equal(frozen[k], v), k                      # ... and frozen
        assert all(not p.requires_grad for n, p in model.named_parameters() if f".{COMPANION}." in n)
    trained = get_adapter(model)
    assert any(not np.array_equal(trained[k], start[k]) for k in start if "lora_B" in k)  # the local one trained
    assert COMPANION not in model.peft_config and model.active_adapters == ["default"]


def test_last_token_states_use_the_given_adapter_and_leave_the_model_as_it_was(tiny_lm, tmp_path: Path) -> None:
    from fedrouter_cli.model.generate import PROBE, last_token_states
    from fedrouter_cli.model.lora import get_adapter

    model, tokenizer, train = tiny_lm
    zero = {k: np.zeros_like(v) for k, v in get_adapter(model).items()}
    moved = {k: np.full_like(v, 0.3) for k, v in zero.items()}
    prompts = ["short one", "a somewhat longer instruction " * 20]
    a = last_token_states(model, tokenizer, prompts, zero, train, max_length=32, batch_size=1)
    b = last_token_states(model, tokenizer, prompts, zero, train, max_length=32, batch_size=2)
    c = last_token_states(model, tokenizer, prompts, moved, train, max_length=32)
    assert a.shape == (2, 32)
    np.testing.assert_allclose(a, b, atol=1e-4)          # padding does not change a prompt's state
    assert not np.allclose(a, c, atol=1e-4)
    assert PROBE not in model.peft_config and model.active_adapters == ["default"]


def test_feddpa_sends_the_companion_with_the_local_job(tmp_path: Path) -> None:
    from fedrouter_cli.config import Config, TrainConfig
    from fedrouter_cli.federation.strategies.base import FederationJob
    from fedrouter_cli.federation.strategies.feddpa import FedDPA, FedDPAKnn
    from fedrouter_cli.rundir import FederationDir

    for cls, expected in ((FedDPA, ["", "global"]), (FedDPAKnn, ["", ""])):
        job = FederationJob(config=Config(train=TrainConfig(alg=cls.name)), out=FederationDir(tmp_path), num_nodes=1,
                            initial_adapter=lambda seed: {})
        s = cls(job)
        s.initialize()
        jobs = s.train_request(1, s.plan(1, 0)).jobs
        assert [j.name for j in jobs] == ["global", "local"] and [j.companion for j in jobs] == expected
