"""Where everything lives: the run directory (RunDir: every path a stage reads or writes, and its
stage manifests), one algorithm's federation output (FederationDir), a client's own node folder
(NodeDir) and a bench (BenchDir, BenchResults). Stages ask these for paths, never build them;
files.py writes them atomically.

A stage's outputs count only once its manifest exists; the manifest is written last, so a killed
stage leaves nothing that a later run would mistake for a result.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedrouter_cli.errors import FedrouterError, MissingInputError
from fedrouter_cli.files import write_json
from fedrouter_cli.names import CLIENT_FOLDER, client_index, client_name  # noqa: F401 (re-exported)

STAGES = ("partition", "embed", "cluster-local", "select-k", "simulate", "evaluate")


def fingerprint(*parts: Any) -> str:
    """A stable hash of JSON-serialisable parts (config slices, upstream fingerprints)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


PARTITION_TEXT = ("id", "task", "instruction", "response")  # partition files' text columns
# partition/clients/cXX/{train,test,test_all}.parquet: test follows the scenario, test_all
# covers every task (the paper's generalization setting); evaluate picks one by --test-tasks.
TEST_SPLITS = ("test", "test_all")


def file_in_the_way(folder: Path) -> Path | None:
    """The file among `folder`'s existing ancestors that would stop it from being created, if any."""
    nearest = next((p for p in folder.parents if p.exists()), None)
    return nearest if nearest is not None and not nearest.is_dir() else None


@dataclass(frozen=True)
class RunDir:
    """Owns the layout of one run directory; stages ask it for paths, never build them."""

    root: Path
    # where predictions by content are kept (generation_cache); None = the run dir's own cache/.
    # A bench's cells share one, so equal inputs are generated once across cells.
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "root", Path(self.root).expanduser().resolve())
        except (RuntimeError, OSError):  # a symlink loop; Python < 3.13 raises RuntimeError
            raise FedrouterError(f"--run-dir {self.root} is a symlink loop; pass a real folder path.") from None
        if self.root.exists() and not self.root.is_dir():
            raise FedrouterError(f"--run-dir {self.root} is a file, not a folder; pass a folder path.")
        # A file higher up would only fail at the first write, after the stage did its work.
        if blocker := file_in_the_way(self.root):
            raise FedrouterError(f"--run-dir {self.root} lies inside the file {blocker}; pass a folder path.")

    @property
    def generation_cache(self) -> Path:
        from fedrouter_cli.generation_cache import CACHE_FILE

        return (self.cache_dir or self.root / "cache") / CACHE_FILE

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the run dir's lock while a command writes to it, so that a second command on the
        same run dir stops with one sentence instead of both writing. The lock file lives in the
        user's cache (keyed by the run dir's path), not in the run dir, so a run dir holds only
        artifacts, and a new one is locked before it exists. The OS drops the lock when a
        process dies, so a killed command leaves nothing to clean up."""
        import fcntl

        from fedrouter_cli.model.loading import cache_root

        path = cache_root() / "locks" / f"{hashlib.sha256(str(self.root).encode()).hexdigest()[:20]}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip()
                raise FedrouterError(f"Another fedrouter command{f' (process {holder})' if holder else ''} is "
                                     f"writing to {self.root}; wait for it to finish, or pass another --run-dir.") from None
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- config and manifests -------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def tracking_dir(self) -> Path:
        """What --log-to writes: TensorBoard event files, MLflow's local store (fedrouter_cli.tracking)."""
        return self.root / "tracking"

    @property
    def mlflow_runs_file(self) -> Path:
        """The MLflow run of each (store, algorithm, simulate fingerprint), so a rerun logs into the same one."""
        return self.tracking_dir / "mlflow-runs.json"

    def stage_dir(self, stage: str, *sub: str) -> Path:
        return self.root.joinpath(stage, *sub)

    def manifest_path(self, stage: str, *sub: str) -> Path:
        return self.stage_dir(stage, *sub) / "manifest.json"

    def manifest(self, stage: str, *sub: str) -> dict[str, Any] | None:
        path = self.manifest_path(stage, *sub)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except ValueError:
            return None  # a damaged manifest means "not done"; the stage simply reruns

    def require(self, stage: str, *sub: str, hint: str | None = None) -> dict[str, Any]:
        found = self.manifest(stage, *sub)
        if found is None:
            name = " ".join((stage, *sub))
            raise MissingInputError(
                f"The run dir {self.root} has no completed '{name}' stage; "
                f"{hint or f'run `fedrouter {stage}` first'}."
            )
        return found

    def write_manifest(self, stage: str, manifest: dict[str, Any], *sub: str) -> None:
        write_json(self.manifest_path(stage, *sub), manifest)

    def invalidate(self, stage: str, *sub: str) -> None:
        """Drop a stage's manifest before rewriting its outputs, so a crash can't leave a stale 'done'."""
        path = self.manifest_path(stage, *sub)
        if path.exists():
            path.unlink()

    # -- per-client artifacts ------------------------------------------------------------
    def clients(self) -> list[str]:
        """The run's client names, in order, as its partition stage made them."""
        return [client_name(i) for i in range(len(self.require("partition")["summary"]["clients"]))]

    def partition_file(self, client: str, split: str) -> Path:
        return self.stage_dir("partition", "clients", client, f"{split}.parquet")

    def embedding_file(self, client: str, split: str) -> Path:
        return self.stage_dir("embed", "clients", client, f"{split}.parquet")

    def centroids_file(self, client: str) -> Path:
        return self.stage_dir("cluster-local", "clients", client, "centroids.parquet")

    def assignments_file(self, client: str) -> Path:
        return self.stage_dir("cluster-local", "clients", client, "assignments.parquet")

    @property
    def nodes_root(self) -> Path:
        """Where the simulation engine's nodes keep their folders, one per client."""
        return self.stage_dir("nodes")

    def client_dir(self, client: str) -> Path:
        """Everything one client owns, gathered for its Flower node (its 'own folder')."""
        return self.nodes_root / client

    def fill_nodes(self, clients: list[str], test_splits: tuple[str, ...] = ()) -> None:
        """Give each client its own folder under nodes/: the only files its Flower node reads (with
        `test_splits`, also what it needs to score itself), each copied atomically."""
        from fedrouter_cli.files import copy_files

        for client in clients:
            copy_files(self.node_files(client, self.node(client), test_splits))

    def node(self, client: str) -> "NodeDir":
        """The client's folder on the simulation engine, laid out as on a deployed machine."""
        return NodeDir(self.client_dir(client))

    def node_files(self, client: str, node: "NodeDir", test_splits: tuple[str, ...] = ()) -> dict[Path, Path]:
        """Where each file of a client's node folder comes from in this run dir: {node file: run
        file}. Training reads the first three; scoring itself (`evaluate --on nodes`) also needs
        the test rows of `test_splits` and the embeddings."""
        files = {node.rows_file("train"): self.partition_file(client, "train"),
                 node.assignments_file: self.assignments_file(client),
                 node.centroids_file: self.centroids_file(client)}
        if test_splits:
            files[node.embeddings_file("train")] = self.embedding_file(client, "train")
        for split in test_splits:
            files[node.rows_file(split)] = self.partition_file(client, split)
            files[node.embeddings_file(split)] = self.embedding_file(client, split)
        return files

    # -- federation and evaluation -------------------------------------------------------
    def simulate_dir(self, alg: str) -> Path:
        return self.stage_dir("simulate", alg)

    def federation(self, alg: str) -> "FederationDir":
        return FederationDir(self.simulate_dir(alg))

    def round_dir(self, alg: str, round_number: int) -> Path:
        return self.federation(alg).round(round_number)

    def evaluate_dir(self, alg: str, name: str) -> Path:
        """One evaluation of `alg`; `name` comes from `evaluation_name`."""
        return self.stage_dir("evaluate", alg, name)

    def scores_file(self, alg: str, name: str) -> Path:
        return self.evaluate_dir(alg, name) / "scores.json"

    def predictions_file(self, alg: str, name: str) -> Path:
        return self.evaluate_dir(alg, name) / "predictions.parquet"

    def scores_files(self) -> list[Path]:
        """Every evaluation's scores.json, of every method, in name order."""
        return sorted(self.stage_dir("evaluate").glob("*/*/scores.json"))

    def silhouette_files(self, level: str) -> tuple[Path, Path]:
        """select-k's curve of one level: its table and its plot."""
        folder = self.stage_dir("select-k", level)
        return folder / "scores.parquet", folder / "silhouette.png"

    @property
    def report_folder(self) -> Path:
        """Where `fedrouter report` of this run alone writes its table and plot."""
        return self.stage_dir("report")


ROUND_STATE, ROUND_ADAPTERS = "state.json", "adapters"  # inside each saved round's folder
NODE_ADAPTERS, NODE_PREDICTIONS, NODE_SUMS = "adapters", "predictions.parquet", "sums.json"  # a node's evaluation


@dataclass(frozen=True)
class FederationDir:
    """One algorithm's federation run (<run-dir>/simulate/<alg>/): the fingerprint it started with,
    one folder per saved round (state.json and adapters/), and the per-round metrics table."""

    root: Path

    @property
    def run_file(self) -> Path:
        return self.root / "run.json"

    @property
    def metrics_file(self) -> Path:
        return self.root / "metrics.parquet"

    @property
    def starting_point_file(self) -> Path:
        """Where the run's first adapters came from (--init-from), and which source adapter each took."""
        return self.root / "starting_point.json"

    def round(self, round_number: int) -> Path:
        return self.root / "rounds" / f"r{round_number:04d}"

    def state_file(self, round_number: int) -> Path:
        return self.round(round_number) / ROUND_STATE

    def adapters_dir(self, round_number: int) -> Path:
        return self.round(round_number) / ROUND_ADAPTERS

    def saved_rounds(self) -> list[int]:
        """The rounds saved, in order: a round counts once its state.json is in place."""
        return sorted(int(state.parent.name[1:]) for state in self.root.glob("rounds/r*/state.json"))


@dataclass(frozen=True)
class NodeDir:
    """One client's own folder: a SuperNode's `data-dir` on its machine, <run-dir>/nodes/cNN/ on the
    simulation engine. What its node reads to train (train rows, local clusters), what it reads to
    score itself (test rows, embeddings), and what it keeps (state between rounds, evaluations)."""

    root: Path

    @property
    def train_files(self) -> tuple[Path, Path, Path]:
        """What its node needs to train: its train rows, their local clusters and the centroids."""
        return self.rows_file("train"), self.assignments_file, self.centroids_file

    @property
    def client(self) -> int | None:
        return client_index(self.root.name)

    def rows_file(self, split: str) -> Path:
        """Its rows of one split: 'train', 'test' or 'test_all'."""
        return self.root / f"{split}.parquet"

    @property
    def assignments_file(self) -> Path:
        return self.root / "assignments.parquet"

    @property
    def centroids_file(self) -> Path:
        return self.root / "centroids.parquet"

    def embeddings_file(self, split: str) -> Path:
        """Its embeddings of one split, made on its machine (for `evaluate --on nodes`)."""
        return self.root / "embeddings" / f"{split}.parquet"

    def state_dir(self, alg: str) -> Path:
        return self.root / "state" / alg

    def state_file(self, alg: str, name: str, round_number: int) -> Path:
        """Weights it keeps between rounds (local adapters): `name` as saved after `round_number`."""
        return self.state_dir(alg) / f"{name}.r{round_number:04d}.safetensors"

    def saved_states(self, alg: str, name: str) -> dict[int, Path]:
        """Round -> file of every kept copy of `name`."""
        return {int(path.name.split(".r")[-1].split(".")[0]): path
                for path in self.state_dir(alg).glob(f"{name}.r*.safetensors")}

    @property
    def generation_cache(self) -> Path:
        from fedrouter_cli.generation_cache import CACHE_FILE

        return self.root / "cache" / CACHE_FILE

    def evaluation_dir(self, alg: str, evaluation: str) -> Path:
        """One evaluation of its own: the adapters it was sent (NODE_ADAPTERS), its predictions
        (NODE_PREDICTIONS) and the sums it returned (NODE_SUMS)."""
        return self.root / "evaluations" / alg / evaluation


@dataclass(frozen=True)
class BenchDir:
    """A bench's folder: one run dir per cell (cells/<scenario>-s<seed>/<method>/...), and by
    default its results (results/: bench.json, bench.md, the plots and the per-sample scores)."""

    root: Path

    def cell(self, name: str) -> RunDir:
        return RunDir(self.root / "cells" / name, cache_dir=self.root / "cache")

    @property
    def default_results(self) -> Path:
        return self.root / "results"

    @property
    def stop_file(self) -> Path:
        """Created by the user to stop the bench after the running cell (signals reach Ray's
        handlers first, so they cannot be the bench's way to stop cleanly)."""
        return self.root / "STOP"


@dataclass(frozen=True)
class BenchResults:
    """Where a bench's tables go (the bench folder's results/ or --results-dir): what is committed."""

    root: Path

    @property
    def json_file(self) -> Path:
        return self.root / "bench.json"

    @property
    def markdown_file(self) -> Path:
        return self.root / "bench.md"

    def plot_file(self, name: str) -> Path:
        return self.root / f"{name}.png"

    def samples_file(self, cell: str) -> Path:
        """One cell's per-sample scores, so that its intervals can be recomputed anywhere."""
        return self.root / "samples" / f"{cell}.json"
