"""The authors' smaller settings as options (issue 34): gradient clipping, one shared initial
adapter, ROUGE without stemming, local routing against the global centroids, the paper preset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_paper_rules import make_fedrouter

from fedrouter_cli.config import Config
from fedrouter_cli.config_file import build_config


def test_shared_init_starts_every_global_adapter_alike(tmp_path: Path) -> None:
    eye = np.eye(4, dtype=np.float32)
    own = make_fedrouter(tmp_path, {0: eye, 1: eye}, global_clusters="tasks")
    shared = make_fedrouter(tmp_path, {0: eye, 1: eye}, global_clusters="tasks", shared_init=True)
    first = lambda s: [v["w.lora_A.weight"][0, 0] for v in s.adapters.values()]  # noqa: E731 (the seed it was made with)
    assert first(own) == [0.0, 1.0, 2.0, 3.0] and first(shared) == [0.0] * 4


def test_rouge_without_stemming_scores_as_the_evaluate_library() -> None:
    from fedrouter_cli.metrics import rouge

    # stemmed: the dog were run / the dog run -> 3 of 4 and 3 of 3; unstemmed only "the" matches
    assert rouge("the dogs were running", "the dog runs")["rouge1"] == pytest.approx(2 * (3 / 4) * 1 / (3 / 4 + 1))
    assert rouge("the dogs were running", "the dog runs", stemming=False)["rouge1"] == pytest.approx(
        2 * (1 / 4) * (1 / 3) / (1 / 4 + 1 / 3))


def test_local_route_global_picks_among_the_global_centroids_of_the_clients_clusters(tmp_path: Path) -> None:
    from fedrouter_cli.federation.inference import InferenceInput
    from fedrouter_cli.federation.strategies.fedrouter import FedRouter

    eye = np.eye(4, dtype=np.float32)
    s = make_fedrouter(tmp_path, {0: eye[:2], 1: eye[2:]}, global_clusters="tasks")
    state = {"extra": s.extra_state()}
    # nearest to the client's first local centroid, but nearer to its second cluster's global
    # centroid than to its first's
    sample = np.array([[0.2, 0.45, 0.0, 0.0]], dtype=np.float32)
    inputs = dict(client=0, mode="local", embeddings=sample, state=state, adapters_dir=tmp_path, node_dir=tmp_path,
                  train_embeddings=np.zeros((1, 4)), local_centroids=np.stack([eye[0] * 0.2, eye[1]]),
                  local_tasks=["a", "b"], global_tasks={})
    ours = FedRouter.route(InferenceInput(**inputs))
    theirs = FedRouter.route(InferenceInput(**inputs, local_route="global"))
    assert ours.names == [f"g{s.routes[0][0]:02d}"]    # the nearest local centroid's adapter
    assert theirs.names == [f"g{s.routes[0][1]:02d}"]  # the nearest of the client's global centroids


def test_clipping_bounds_the_step_adam_takes_from_a_tiny_gradient(tiny_lm) -> None:
    """Adam divides by the gradient's scale, so clipping shows where the clipped gradient falls
    below Adam's epsilon: at 1e-12 the step is a small fraction of the unclipped one."""
    from fedrouter_cli.model.lora import get_adapter, set_adapter_weights
    from fedrouter_cli.model.train import train_steps

    model, tokenizer, _ = tiny_lm
    start = get_adapter(model)
    rows = [("Is it raining?", "no"), ("Summarize: Anna meets Ben.", "Anna and Ben meet.")]
    moved = {}
    for clip in (0.0, 1e-12):
        set_adapter_weights(model, start)
        train_steps(model, tokenizer, rows, steps=1, batch_size=2, lr=1e-2, max_length=32, seed=0, max_grad_norm=clip)
        after = get_adapter(model)
        moved[clip] = sum(float(np.abs(after[k] - start[k]).sum()) for k in start)
    assert moved[1e-12] < 0.1 * moved[0.0]


def test_the_paper_preset_carries_the_authors_training_settings() -> None:
    from fedrouter_cli.fingerprints import simulate_fingerprint
    from fedrouter_cli.presets import PRESETS

    paper = build_config(Config(), PRESETS["paper"])
    assert paper.train.max_grad_norm == 1.0 and paper.train.shared_init
    cpu = build_config(Config(), PRESETS["cpu"])
    assert cpu.train.max_grad_norm == 0.0 and not cpu.train.shared_init  # the bench's cells were made so
    # each joins the fingerprint only when on, and shared_init only FedRouter's
    assert simulate_fingerprint(build_config(cpu, {"train": {"max_grad_norm": 1.0}})) != simulate_fingerprint(cpu)
    fedit = build_config(cpu, {"train": {"alg": "fedit"}})
    assert simulate_fingerprint(build_config(fedit, {"train": {"shared_init": True}})) == simulate_fingerprint(fedit)
    assert simulate_fingerprint(build_config(cpu, {"train": {"shared_init": True}})) != simulate_fingerprint(cpu)
