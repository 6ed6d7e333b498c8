"""FedDPA as its authors' released code runs it (issue 34; issue 14 had the weighting inverted): the instance weight, the local adapter trained beside
the frozen global one, and the last-token probe. Unit tests, no Flower run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def test_feddpa_gives_the_global_adapter_half_the_mean_cosine_to_five_instructions_drawn_per_instance(
        tmp_path: Path) -> None:
    """As the released GlobalModel_generated.py: the global adapter is active at w = 0.5 x mean
    cosine (hidden states with the local adapter alone), the local one at 1 - w, and the 5 train
    instructions are drawn anew for every test instance."""
    from fedrouter_cli.config import TrainConfig
    from fedrouter_cli.federation.inference import InferenceInput
    from fedrouter_cli.federation.node import save_state
    from fedrouter_cli.federation.strategies.feddpa import (
        FedDPA,
        draw_anchors,
        global_weight,
    )
    from fedrouter_cli.model.lora import save_adapter

    anchors = np.array([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]]] * 3)
    states = np.array([[1.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    cos = np.array([[1, 1, 0, 2 ** -0.5, 1], [0, 0, 1, 2 ** -0.5, 0], [-1, -1, 0, -2 ** -0.5, -1]])
    np.testing.assert_allclose(global_weight(states, anchors), np.clip(0.5 * cos.mean(axis=1), 0, 1))
    assert global_weight(states, anchors)[2] == 0.0                      # clipped at 0

    train_texts = [f"train {i}" for i in range(30)]
    draws = [draw_anchors(30, seed=0, client=2, instance=i) for i in range(2)]
    assert all(len(d) == 5 == len(set(d)) for d in draws) and draws[0] != draws[1]  # a draw per instance
    assert draws[0] == draw_anchors(30, seed=0, client=2, instance=0) != draw_anchors(30, seed=0, client=3, instance=0)

    key = "base_model.model.model.layers.0.self_attn.q_proj.{}.weight"
    rng = np.random.default_rng(0)
    glob = {key.format("lora_A"): rng.normal(size=(2, 4)).astype(np.float32),
            key.format("lora_B"): rng.normal(size=(4, 2)).astype(np.float32)}
    local = {k: v + 1 for k, v in glob.items()}
    node, adapters = tmp_path / "c02", tmp_path / "adapters"
    save_state(node, "feddpa", "local", 1, local)
    save_adapter(adapters / "global", glob, TrainConfig(lora_r=2, target_modules=("q_proj",)), "m")
    vectors = {t: rng.normal(size=6) for t in train_texts + ["q1", "q2"]}
    vectors["q2"] = vectors[train_texts[draws[1][0]]]
    seen = []

    def hidden(texts, adapter):
        seen.append((list(texts), adapter))
        return np.stack([vectors[t] for t in texts])

    inputs = InferenceInput(client=2, mode="local", embeddings=np.zeros((2, 3)), state={"round": 1, "extra": {}},
                            adapters_dir=adapters, node_dir=node, train_embeddings=np.zeros((30, 3)),
                            local_centroids=np.zeros((1, 3)), local_tasks=["t"], global_tasks={},
                            instructions=["q1", "q2"], train_instructions=train_texts, hidden_states=hidden, seed=0)
    routing = FedDPA.route(inputs)
    drawn = sorted(set(draws[0]) | set(draws[1]))
    assert seen[0][0] == ["q1", "q2", *[train_texts[j] for j in drawn]]  # each drawn instruction once
    assert all(np.array_equal(seen[0][1][k], local[k]) for k in local)  # with the local adapter alone
    for i, name in enumerate(routing.names):
        w_global = 0.5 * np.mean([np.dot(vectors[f"q{i + 1}"], vectors[train_texts[j]])
                                  / np.linalg.norm(vectors[f"q{i + 1}"]) / np.linalg.norm(vectors[train_texts[j]])
                                  for j in draws[i]])
        w_local = float(name.split("mix")[1].replace("_", "."))
        assert w_local == pytest.approx(1 - round(max(w_global, 0) * 20) / 20)  # rounded to steps of 0.05
        mix = routing.build[name]()
        a, b = key.format("lora_A"), key.format("lora_B")
        np.testing.assert_allclose(mix[b] @ mix[a], (1 - w_local) * glob[b] @ glob[a] + w_local * local[b] @ local[a],
                                   rtol=1e-5, atol=1e-5)


def test_feddpa_local_adapter_trains_beside_the_frozen_global_one(tiny_lm) -> None:
    import torch

    from fedrouter_cli.model.lora import (
        COMPANION,
        companion_adapter,
        get_adapter,
        set_adapter_weights,
    )
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


def test_feddpa_training_forward_is_half_local_plus_half_global_and_the_global_gets_no_gradient(tiny_lm) -> None:
    """The released LoRA layer while the local adapter trains: W x + 0.5 local(x) + 0.5 detach(global(x))."""
    import torch

    from fedrouter_cli.federation.strategies.feddpa import mix_adapter
    from fedrouter_cli.model.lora import (
        COMPANION,
        companion_adapter,
        get_adapter,
        lora_config,
        scaled_adapter,
        scaled_b,
        set_adapter_weights,
        with_rank,
    )

    model, tokenizer, train = tiny_lm
    rng = np.random.default_rng(3)
    local = {k: rng.normal(scale=0.5, size=v.shape).astype(np.float32) for k, v in get_adapter(model).items()}
    glob = {k: rng.normal(scale=0.5, size=v.shape).astype(np.float32) for k, v in local.items()}
    set_adapter_weights(model, local)
    batch = tokenizer(["Summarize: Anna meets Ben at noon."], return_tensors="pt")
    model.eval()
    halves = mix_adapter(glob, local, 0.5)  # one rank-2r adapter whose update is 0.5 global + 0.5 local
    model.add_adapter("halves", lora_config(with_rank(train, halves)))
    set_adapter_weights(model, halves, adapter_name="halves")
    model.set_adapter("halves")
    with torch.no_grad():
        expected = model(**batch).logits
    model.set_adapter("default")
    model.delete_adapter("halves")
    with companion_adapter(model, scaled_b(glob, 0.5), train), scaled_adapter(model, 0.5):
        out = model(**batch).logits
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
        out.sum().backward()
        grads = {n: p.grad for n, p in model.named_parameters() if "lora_" in n}
        assert all(g is None for n, g in grads.items() if f".{COMPANION}." in n)      # global: no gradient
        assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if ".default." in n)
    model.zero_grad(set_to_none=True)
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
    from fedrouter_cli.federation.rounds import FederationJob, FlowerRounds
    from fedrouter_cli.federation.strategies.feddpa import FedDPA, FedDPAKnn
    from fedrouter_cli.rundir import FederationDir

    for cls, expected, scales in ((FedDPA, ["", "global"], [(1.0, 1.0), (0.5, 0.5)]),
                                  (FedDPAKnn, ["", ""], [(1.0, 1.0), (1.0, 1.0)])):
        job = FederationJob(config=Config(train=TrainConfig(alg=cls.name)), out=FederationDir(tmp_path), num_nodes=1,
                            initial_adapter=lambda seed: {})
        s = cls(job)
        s.initialize()
        jobs = FlowerRounds(s, job).train_request(2, s.plan(2, 0)).jobs
        assert [j.name for j in jobs] == ["global", "local"] and [j.companion for j in jobs] == expected
        assert [(j.scale, j.companion_scale) for j in jobs] == scales
    s = FedDPA(FederationJob(config=Config(train=TrainConfig(alg="feddpa")), out=FederationDir(tmp_path), num_nodes=1,
                             initial_adapter=lambda seed: {}))
    s.initialize()
    assert [j.name for j in s.plan(1, 0)] == ["global"]  # the released code's first round: the global adapter alone
