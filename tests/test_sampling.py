"""Client sampling: a seeded share of the clients trains each round; a client that sits rounds out
continues its own round-robin; an adapter no sampled client trains keeps its weights."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from fedrouter_cli.cli.app import app
from fedrouter_cli.config import TrainConfig
from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.federation.strategies.base import sampled_clients


def test_sampling_is_seeded_and_fair_over_many_rounds() -> None:
    train = TrainConfig(clients_per_round=3, seed=7)
    clients = list(range(10))
    draws = [sampled_clients(train, clients, r) for r in range(1, 601)]
    assert draws == [sampled_clients(train, clients, r) for r in range(1, 601)]  # seeded
    assert draws != [sampled_clients(TrainConfig(clients_per_round=3, seed=8), clients, r) for r in range(1, 601)]
    assert all(len(d) == 3 == len(set(d)) for d in draws)
    counts = Counter(c for d in draws for c in d)
    assert set(counts) == set(clients) and all(abs(n - 180) < 50 for n in counts.values()), counts  # 600 x 3/10
    assert len(sampled_clients(TrainConfig(fraction_train=0.25), list(range(8)), 1)) == 2
    assert sampled_clients(TrainConfig(), clients, 1) == clients  # the default: every client, every round
    assert sampled_clients(TrainConfig(clients_per_round=50), clients, 1) == clients
    with pytest.raises(FedrouterError, match="pass one"):
        TrainConfig(clients_per_round=2, fraction_train=0.5)


def test_a_client_that_sits_out_continues_its_own_cycle_and_untrained_adapters_keep_their_weights(
        smoke_copy: Path, inprocess) -> None:
    from fedrouter_cli.model.lora import load_adapter

    result = CliRunner().invoke(app, ["simulate", "--run-dir", str(smoke_copy), "--rounds", "5",
                                      "--clients-per-round", "2", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["failed_jobs"] == 0
    rows = pq.read_table(summary["metrics_path"]).to_pylist()
    out = Path(summary["adapters_dir"]).parents[1]
    state = json.loads((out / "r0005" / "state.json").read_text())
    routes = {int(c): r for c, r in state["extra"]["routes"].items()}
    trained = {}  # client -> the adapters it trained, round by round
    for r in range(1, 6):
        this_round = [row for row in rows if row["round"] == r]
        assert len([row for row in this_round if row["status"] == "ok"]) == 2  # two clients a round
        assert len([row for row in this_round if row["status"] == "sat-out"]) == 2  # and who sat out
        for row in this_round:
            if row["status"] == "ok":
                trained.setdefault(row["client"], []).append(row["tag"])
    assert any(len(tags) < 5 for tags in trained.values())  # somebody sat rounds out
    for client, tags in trained.items():
        # its n-th round trains local cluster n mod K: the authors' rule with turns instead of rounds
        expected = [f"g{routes[client][turn % len(routes[client])]:02d}" for turn in range(1, len(tags) + 1)]
        assert tags == expected, (client, tags, expected)
    assert state["turns"] == {str(c): len(tags) for c, tags in sorted(trained.items())}
    for r in range(2, 6):
        touched = {row["tag"] for row in rows if row["round"] == r and row["status"] == "ok"}
        for name in state["adapters"]:
            if name in touched:
                continue
            before, after = (load_adapter(out / f"r{n:04d}" / "adapters" / name) for n in (r - 1, r))
            assert all(np.array_equal(before[k], after[k]) for k in before)  # bit for bit
