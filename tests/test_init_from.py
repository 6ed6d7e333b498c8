"""--init-from: a federation starts from an earlier run's (or an export's) adapters, each new adapter
from the source adapter its rule maps it to; the option is pinned to the source's content."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from fedrouter_cli.cli.app import app
from fedrouter_cli.config import Config, TrainConfig
from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.federation.starting_point import (
    StartingPoint,
    load_starting_point,
    pin,
)
from fedrouter_cli.federation.strategies import STRATEGIES


def adapter(value: float) -> dict[str, np.ndarray]:
    return {"l.lora_A.weight": np.full((2, 4), value, np.float32), "l.lora_B.weight": np.full((4, 2), -value, np.float32)}


def rule(alg: str, **train):
    job = SimpleNamespace(config=Config(train=TrainConfig(alg=alg, **train)), tasks=("a", "b"),
                          initial_adapter=lambda seed: adapter(0.0))
    return STRATEGIES[alg](job)


def test_each_rule_maps_the_source_adapters_onto_its_own() -> None:
    fedit = rule("fedit")
    fedit.initialize()
    assert fedit.warm_start(StartingPoint("s", 3, {"global": adapter(1.0)})) == {"global": "global"}
    assert np.array_equal(fedit.adapters["global"]["l.lora_A.weight"], adapter(1.0)["l.lora_A.weight"])
    # several source adapters and none of the same name: their plain mean
    fedit.initialize()
    mapping = fedit.warm_start(StartingPoint("s", 3, {"g00": adapter(1.0), "g01": adapter(3.0)}))
    assert mapping == {"global": "mean of g00, g01"}
    assert np.allclose(fedit.adapters["global"]["l.lora_B.weight"], -2.0)
    # FedSA's server keeps A only: B never enters, A comes from the source
    fedsa = rule("fedsa")
    fedsa.initialize()
    fedsa.warm_start(StartingPoint("s", 1, {"global": adapter(5.0)}))
    assert set(fedsa.adapters["global"]) == {"l.lora_A.weight"} and np.all(fedsa.adapters["global"]["l.lora_A.weight"] == 5)


def test_fedrouter_takes_the_adapter_of_the_nearest_source_centroid() -> None:
    router = rule("fedrouter", global_clusters=2)
    router.local_centroids = {0: np.array([[0.0, 0.0], [10.0, 10.0]], np.float32),
                              1: np.array([[0.2, 0.0], [10.0, 9.8]], np.float32)}
    router.initialize()
    near_zero = int(np.argmin(np.linalg.norm(router.global_centroids, axis=1)))
    start = StartingPoint("s", 2, {"far": adapter(7.0), "near": adapter(9.0)},
                          {"far": np.array([9.0, 9.0], np.float32), "near": np.array([1.0, 0.0], np.float32)})
    mapping = router.warm_start(start)
    assert mapping[f"g{near_zero:02d}"] == "near" and mapping[f"g{1 - near_zero:02d}"] == "far"
    assert np.all(router.adapters[f"g{near_zero:02d}"]["l.lora_A.weight"] == 9.0)
    with pytest.raises(FedrouterError, match="same --embedder"):
        router.warm_start(StartingPoint("s", 2, {"x": adapter(1.0)}, {"x": np.zeros(3, np.float32)}))


def test_the_pin_follows_the_adapters_content(smoke_simulated, tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(smoke_simulated[0], source)
    pinned = pin(str(source))
    assert pinned.startswith(f"{source.resolve()}@sha256:") and pin(str(source)) == pinned
    last = sorted(source.glob("simulate/fedrouter/rounds/r*"))[-1]  # the round a run dir starts others from
    weights = next(last.glob("adapters/*/adapter_model.safetensors"))
    weights.write_bytes(weights.read_bytes() + b" ")
    assert pin(str(source)) != pinned
    with pytest.raises(FedrouterError, match="changed since"):
        load_starting_point(pinned, "fedrouter", "x", {}, lambda state: None)
    with pytest.raises(FedrouterError, match="neither a run dir"):
        pin(str(tmp_path))


def test_simulate_starts_its_first_round_from_the_source_adapters(smoke_simulated, smoke_copy: Path, inprocess,
                                                                   monkeypatch) -> None:
    """Through the CLI and Flower: what round 1 sends each client is, bit for bit, the source's
    last-round adapter that the new global cluster maps to."""
    from fedrouter_cli.federation.rounds import FlowerRounds
    from fedrouter_cli.model.lora import load_adapter

    source = smoke_simulated[0]
    sent: dict[str, list] = {}
    original = FlowerRounds.train_request

    def recording(self, round_number, jobs):
        if round_number == 1:
            for job in jobs:
                sent.setdefault(job.name, []).append(job.adapter)
        return original(self, round_number, jobs)

    monkeypatch.setattr(FlowerRounds, "train_request", recording)
    result = CliRunner().invoke(app, ["simulate", "--run-dir", str(smoke_copy), "--rounds", "1",
                                      "--init-from", str(source), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    started = summary["init_from"]
    last = max(int(p.name[1:]) for p in (source / "simulate" / "fedrouter" / "rounds").glob("r*"))
    assert started["source"] == str(source.resolve()) and started["round"] == last
    source_dir = source / "simulate" / "fedrouter" / "rounds" / f"r{last:04d}" / "adapters"
    assert sent and set(sent) <= set(started["from"])
    for name, adapters in sent.items():
        expected = load_adapter(source_dir / started["from"][name])
        for a in adapters:
            assert set(a) == set(expected) and all(np.array_equal(a[k], expected[k]) for k in a)
    saved = (smoke_copy / "config.toml").read_text()
    assert f"{source.resolve()}@sha256:" in saved  # pinned: a later evaluate needs no access to the source


def test_a_starting_point_of_another_shape_or_itself_is_refused(smoke_simulated, smoke_copy: Path,
                                                                 tmp_path: Path) -> None:
    source = str(smoke_simulated[0])
    wrong_rank = CliRunner().invoke(app, ["simulate", "--run-dir", str(smoke_copy), "--init-from", source,
                                          "--lora-r", "4", "--rounds", "1"])
    assert wrong_rank.exit_code == 2 and "--lora-r" in wrong_rank.output and "Traceback" not in wrong_rank.output
    assert not (smoke_copy / "simulate" / "fedrouter").exists()  # refused before anything was written
    own = tmp_path / "own"
    shutil.copytree(source, own)
    itself = CliRunner().invoke(app, ["simulate", "--run-dir", str(own), "--init-from", str(own), "--rounds", "1"])
    assert itself.exit_code == 2 and "this run dir itself" in itself.output
    missing = CliRunner().invoke(app, ["simulate", "--run-dir", str(smoke_copy), "--init-from", str(smoke_copy)])
    assert missing.exit_code == 2 and "neither a run dir" in missing.output
