"""embed, cluster-local and select-k through the real MiniLM encoder and scikit-learn."""

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import FLAN_TASKS, SHARED_FLAN, needs_flan

from fedrouter_cli.clustering import best_k, purity, stability_curve, stable_k
from fedrouter_cli.config_file import build_config
from fedrouter_cli.errors import FedrouterError, MissingInputError
from fedrouter_cli.presets import resolve_config
from fedrouter_cli.rundir import RunDir
from fedrouter_cli.stages.cluster_local import run_cluster_local
from fedrouter_cli.stages.embed import run_embed
from fedrouter_cli.stages.pipeline import prepare
from fedrouter_cli.stages.select_k import run_select_k
from fedrouter_cli.vectors import read_embeddings


def test_best_k_rule() -> None:
    assert best_k({2: 0.30, 3: 0.295, 4: 0.2}, tolerance=0.01) == 3   # largest K within tolerance
    assert best_k({2: 0.30, 3: 0.295, 4: 0.2}) == 2
    assert best_k({2: 0.03, 3: 0.02}, threshold=0.05) == 1           # nothing splits
    assert stable_k({2: 0.99, 3: 0.70, 4: 0.90, 5: 0.60}) == 4       # the largest stable K, not the most stable
    assert stable_k({2: 0.40, 3: 0.30}) == 1                          # no split reproduces: one cluster
    assert purity(np.array([0, 0, 1, 1]), ["a", "a", "b", "a"]) == 0.75


def test_stability_finds_real_splits_and_refuses_arbitrary_ones() -> None:
    rng = np.random.default_rng(0)
    two_tasks = np.concatenate([center + rng.normal(size=(60, 50)) for center in rng.normal(size=(2, 50)) * 3])
    curve = stability_curve(two_tasks, 2, 8, seed=0)
    assert curve[2] > 0.99 and max(curve[k] for k in range(3, 9)) < 0.75   # cutting a task in two does not reproduce
    assert stable_k(curve) == 2
    # scanned from k-max down and stopped at the first stable K: the same K, the same scores
    stopped = stability_curve(two_tasks, 2, 8, seed=0, stop_at=0.85)
    assert sorted(stopped) == list(range(2, 9)) and stopped == curve
    three_tasks = np.concatenate([center + rng.normal(size=(40, 50)) for center in rng.normal(size=(3, 50)) * 3])
    full, short = stability_curve(three_tasks, 2, 8, seed=0), stability_curve(three_tasks, 2, 8, seed=0, stop_at=0.85)
    assert stable_k(short) == stable_k(full) == 3 and min(short) == 3 and all(short[k] == full[k] for k in short)
    one_task = rng.normal(size=(150, 50))
    assert max(stability_curve(one_task, 2, 8, seed=0).values()) < 0.3     # no split of one blob reproduces: K = 1
    assert stable_k(stability_curve(one_task, 2, 8, seed=0)) == 1


def test_cluster_local_shows_how_firmly_the_automatic_rule_found_each_k() -> None:
    from rich.console import Console

    from fedrouter_cli.cli.cluster_local import render_clusters

    clients = [{"client": "c00", "k": 2, "purity": 1.0, "sizes": [5, 5], "stability": {"2": 0.97, "3": 0.61}},
               {"client": "c01", "k": 1, "purity": 1.0, "sizes": [10], "stability": {"2": 0.4, "3": 0.55}}]
    console = Console(record=True, width=160)
    render_clusters({"cache_hit": False, "seconds": 1.0, "purity": 1.0, "clients": clients}, console)
    text = console.export_text()
    assert "stability at K (next K)" in text and "0.97 (0.61)" in text and "no split (best 0.55)" in text
    console = Console(record=True, width=160)  # a fixed K scans nothing: no column
    render_clusters({"cache_hit": False, "seconds": 1.0, "purity": 1.0,
                     "clients": [{k: v for k, v in c.items() if k != "stability"} for c in clients]}, console)
    assert "stability" not in console.export_text()


def test_stages_need_their_inputs(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    config = resolve_config(run.config_path, "smoke", {})
    with pytest.raises(MissingInputError, match="no completed 'partition' stage"):
        run_embed(config, run)
    with pytest.raises(MissingInputError, match="'embed'"):
        run_cluster_local(config, run)
    assert not run.root.exists()


def test_embed_is_cached_and_reruns_on_change(smoke_copy: Path) -> None:
    run = RunDir(smoke_copy)
    config = resolve_config(run.config_path, None, {})
    again = run_embed(config, run)
    assert again.cache_hit
    ids, vectors = read_embeddings(run.embedding_file("c00", "train"))
    from fedrouter_cli.embed import CHAR_FEATURES, char_ngrams

    assert vectors.dtype == np.float32 and vectors.shape == (len(ids), 384 + CHAR_FEATURES)  # MiniLM + n-grams
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    # the two halves weigh the same, and the second is the text's own n-grams
    assert np.allclose(np.linalg.norm(vectors[:, :384], axis=1), 2 ** -0.5, atol=1e-4)
    texts = pq.read_table(run.partition_file("c00", "train")).column("instruction").to_pylist()
    assert np.allclose(vectors[:, 384:], char_ngrams(texts) / np.sqrt(2), atol=1e-6)
    changed = build_config(config, {"data": {"train_per_client": 20}})
    prepare(changed, run, "partition")
    assert not run_embed(changed, run).cache_hit


def test_unknown_model_leaves_run_dir_alone(smoke_copy: Path) -> None:
    run = RunDir(smoke_copy)
    config = build_config(resolve_config(run.config_path, None, {}),
                          {"embed": {"embedder": "base"}, "model": {"model": "no-such-org/no-such-model"}})
    before = sorted(p.relative_to(smoke_copy) for p in smoke_copy.rglob("*"))
    with pytest.raises(FedrouterError, match="Could not load model"):
        run_embed(config, run)
    assert sorted(p.relative_to(smoke_copy) for p in smoke_copy.rglob("*")) == before


@pytest.mark.slow
@pytest.mark.parametrize("scenario, true_k", [("dual", 2), ("all", 4)])
def test_synthetic_clusters_are_tasks(tmp_path: Path, scenario: str, true_k: int) -> None:
    run = RunDir(tmp_path / "run")
    config = resolve_config(run.config_path, None, {"data": {"scenario": scenario, "train_per_client": 80,
                                                             "test_per_client": 4}})
    clusters = prepare(config, run, "cluster-local")[-1]
    assert clusters.summary["purity"] >= 0.99
    assert run_select_k(config, run, "local").summary["best_k"] == true_k
    global_k = run_select_k(config, run, "global").summary
    assert global_k["best_k"] == 4 and global_k["server_k"] == 4   # the argmax and the server's rule


@pytest.mark.slow
@needs_flan()
@pytest.mark.parametrize("scenario", ["dual", "all"])
def test_flan_purity(tmp_path: Path, scenario: str) -> None:
    run = RunDir(tmp_path / "run")
    config = resolve_config(run.config_path, None, {"data": {
        "source": str(SHARED_FLAN), "tasks": FLAN_TASKS, "scenario": scenario, "clients": 8,
        "train_per_client": 150, "test_per_client": 8}})  # purity is of the train clusters
    clusters = prepare(config, run, "cluster-local")[-1]
    assert clusters.summary["purity"] >= 0.97
