"""Differential privacy on what leaves a client: the mechanisms, the settings, and a real run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from fedrouter_cli.config import Config, PrivacyConfig
from fedrouter_cli.config_file import build_config
from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.federation.engine import check_privacy
from fedrouter_cli.federation.privacy import (
    gaussian_sigma,
    privatize_centroids,
    privatize_update,
)
from fedrouter_cli.fingerprints import simulate_fingerprint


def test_gaussian_sigma_is_the_classic_mechanism() -> None:
    assert gaussian_sigma(1.0, 1.0, 1e-5) == pytest.approx(math.sqrt(2 * math.log(1.25e5)))
    assert gaussian_sigma(2.0, 4.0, 1e-5) == pytest.approx(gaussian_sigma(1.0, 2.0, 1e-5))


def test_update_is_clipped_then_noised_reproducibly() -> None:
    start = {"a": np.zeros((40, 50), np.float32), "b": np.ones((50, 40), np.float32)}
    trained = {"a": start["a"] + 3.0, "b": start["b"] - 3.0}  # update norm 3 * sqrt(4000), far above clip
    huge_epsilon = 1e9  # noise negligible: only clipping shows
    clipped = privatize_update(trained, start, clip=0.5, epsilon=huge_epsilon, delta=1e-5, seed=1)
    norm = math.sqrt(sum(float(np.sum((clipped[k] - start[k]) ** 2)) for k in start))
    assert norm == pytest.approx(0.5, rel=1e-3)
    noisy = privatize_update(trained, start, clip=0.5, epsilon=1.0, delta=1e-5, seed=1)
    residual = np.concatenate([(noisy[k] - clipped[k]).ravel() for k in start])
    assert residual.std() == pytest.approx(gaussian_sigma(1.0, 1.0, 1e-5), rel=0.05)
    again = privatize_update(trained, start, clip=0.5, epsilon=1.0, delta=1e-5, seed=1)
    assert all(np.array_equal(noisy[k], again[k]) for k in start)  # same seed, same release (resume)
    other = privatize_update(trained, start, clip=0.5, epsilon=1.0, delta=1e-5, seed=2)
    assert not np.array_equal(noisy["a"], other["a"])


def test_centroid_noise_scales_with_cluster_size() -> None:
    centroids = np.zeros((2, 4000), np.float32)
    noisy = privatize_centroids(centroids, np.array([10, 1000]), epsilon=2.0, delta=1e-5, seed=0)
    assert noisy[0].std() == pytest.approx(gaussian_sigma(2 / 10, 2.0, 1e-5), rel=0.05)
    assert noisy[1].std() == pytest.approx(gaussian_sigma(2 / 1000, 2.0, 1e-5), rel=0.05)


def test_privacy_settings_are_checked_and_fingerprinted() -> None:
    for bad in ({"dp_epsilon": -1.0}, {"dp_delta": 0.0}, {"dp_clip": 0.0}, {"centroid_epsilon": -2.0}):
        with pytest.raises(FedrouterError):
            PrivacyConfig(**bad)
    plain = Config()
    assert not plain.privacy.enabled
    private = build_config(plain, {"privacy": {"centroid_epsilon": 5.0}})
    assert simulate_fingerprint(private) != simulate_fingerprint(plain)
    with pytest.raises(FedrouterError, match="unit-norm"):
        check_privacy(build_config(private, {"embed": {"embedder": "base"}}))


def test_simulate_with_privacy_changes_what_is_sent(smoke_simulated, tmp_path: Path, inprocess) -> None:
    """Through Flower: with DP on, the global clusters come from noisy centroids, and every update
    a node sends is its trained update clipped to --dp-clip plus Gaussian noise of the mechanism's
    sigma (sensitivity 2 x clip), read off the wire. The noise level is set so that both parts
    show in the update's norm: |u|^2 = clip^2 + d sigma^2 = 5 clip^2, which fails if the update is
    not clipped (a trained update is far above this clip), not noised, or noised at another level."""
    import shutil

    from safetensors.numpy import load_file
    from typer.testing import CliRunner

    from fedrouter_cli.cli.app import app
    from fedrouter_cli.federation.wire import from_record

    plain_run, plain = smoke_simulated
    run = tmp_path / "run"
    shutil.copytree(plain_run, run, ignore=shutil.ignore_patterns("simulate", "evaluate", "nodes"))
    name = sorted(json.loads((Path(plain["adapters_dir"]).parent / "state.json").read_text())["adapters"])[0]
    size = sum(v.size for v in load_file(str(Path(plain["adapters_dir"]) / name / "adapter_model.safetensors")).values())
    clip, delta = 1e-3, 1e-5
    epsilon = math.sqrt(size) * gaussian_sigma(1.0, 1.0, delta)  # sigma = 2 clip / sqrt(size): d sigma^2 = 4 clip^2
    result = CliRunner().invoke(app, ["simulate", "--run-dir", str(run), "--preset", "smoke", "--workers", "1",
                                      "--dp-epsilon", str(epsilon), "--dp-clip", str(clip), "--dp-delta", str(delta),
                                      "--centroid-epsilon", "0.5", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["rounds_completed"] == plain["rounds_completed"]
    state = json.loads((Path(payload["adapters_dir"]).parent / "state.json").read_text())
    plain_state = json.loads((Path(plain["adapters_dir"]).parent / "state.json").read_text())
    assert state["extra"]["global_centroids"] != plain_state["extra"]["global_centroids"]
    squared = []
    for sent, reply in inprocess.calls:
        if sent.metadata.message_type != "train":
            continue
        for key in (k for k in reply.content.array_records if k.startswith("adapter-")):
            start, back = from_record(sent.content.array_records[key]), from_record(reply.content.array_records[key])
            assert sum(v.size for v in back.values()) == size
            squared.append(sum(float(np.sum((back[k].astype(np.float64) - start[k]) ** 2)) for k in back))
    assert len(squared) == 2 * 4  # one job per client and round
    expected = clip**2 + size * gaussian_sigma(2 * clip, epsilon, delta) ** 2
    assert expected == pytest.approx(5 * clip**2)
    assert np.mean(squared) == pytest.approx(expected, rel=0.15), (squared, clip**2)
    assert "centroid_epsilon = 0.5" in (run / "config.toml").read_text()
