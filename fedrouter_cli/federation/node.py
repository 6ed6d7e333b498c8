"""A client's own folder: its train rows, local clusters and any state it keeps between rounds.

In the deployment engine the folder is the SuperNode's `data-dir` node config; in the simulation
engine (where node configs are fixed to partition ids) it is $FEDROUTER_NODES_ROOT/cNN.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from safetensors.numpy import load_file, save_file

from fedrouter_cli.model.lora import Adapter
from fedrouter_cli.rundir import PARTITION_TEXT, atomic_path, client_index, client_name, read_table

NODE_FILES = ("train.parquet", "assignments.parquet", "centroids.parquet")
# what a node needs to score itself (`evaluate --on nodes`): its test rows ('test', and 'test_all'
# for the generalization test) and the embeddings of its train and test rows, made on its machine
EMBEDDINGS_DIR = "embeddings"


def test_rows_file(folder: Path, split: str) -> Path:
    return folder / f"{split}.parquet"


def embeddings_file(folder: Path, split: str) -> Path:
    """The node's embeddings of one of its splits ('train', 'test', 'test_all')."""
    return folder / EMBEDDINGS_DIR / f"{split}.parquet"


def evaluation_dir(folder: Path, alg: str, evaluation: str) -> Path:
    """Where a node keeps one evaluation of its own: the adapters it was sent and its predictions."""
    return folder / "evaluations" / alg / evaluation


def node_folder(node_config: dict) -> Path:
    if "data-dir" in node_config:
        return Path(str(node_config["data-dir"]))
    root = os.environ.get("FEDROUTER_NODES_ROOT")
    if root is None:
        raise RuntimeError("node has no data-dir in its node config and FEDROUTER_NODES_ROOT is unset")
    return Path(root) / client_name(int(node_config["partition-id"]))


@dataclass
class NodeData:
    folder: Path
    client: int
    instructions: list[str]
    responses: list[str]
    clusters: np.ndarray      # local cluster of each train row
    centroids: np.ndarray     # [k, dim]
    sizes: np.ndarray         # rows per local cluster

    @classmethod
    def load(cls, folder: Path) -> "NodeData":
        train = read_table(folder / "train.parquet", PARTITION_TEXT)
        assignments = pq.read_table(folder / "assignments.parquet")
        if train.column("id").to_pylist() != assignments.column("id").to_pylist():
            raise RuntimeError(f"{folder}: assignments do not match train rows")
        cents = pq.read_table(folder / "centroids.parquet")
        flat = cents.column("centroid").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        client = client_index(folder.name) or 0
        return cls(folder=folder, client=client,
                   instructions=train.column("instruction").to_pylist(),
                   responses=train.column("response").to_pylist(),
                   clusters=np.asarray(assignments.column("cluster").to_pylist(), dtype=np.int64),
                   centroids=flat.astype(np.float32).reshape(len(cents), -1),
                   sizes=np.asarray(cents.column("size").to_pylist(), dtype=np.int64))

    def rows(self, clusters: Sequence[int] = ()) -> list[tuple[str, str]]:
        """Train rows of the given local clusters (in row order), or all rows for () or [-1]."""
        wanted = [c for c in clusters if c >= 0]
        picked = np.flatnonzero(np.isin(self.clusters, wanted)) if wanted else range(len(self.instructions))
        return [(self.instructions[i], self.responses[i]) for i in picked]


def state_path(folder: Path, alg: str, name: str, round_number: int) -> Path:
    return folder / "state" / alg / f"{name}.r{round_number:04d}.safetensors"


def save_state(folder: Path, alg: str, name: str, round_number: int, arrays: Adapter) -> None:
    path = state_path(folder, alg, name, round_number)
    with atomic_path(path) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))


def latest_state(folder: Path, alg: str, name: str, before_round: int) -> Adapter | None:
    """The node's kept weights from the latest round before `before_round` (so a redone round is exact)."""
    candidates = sorted((folder / "state" / alg).glob(f"{name}.r*.safetensors"))
    best = None
    for path in candidates:
        number = int(path.name.split(".r")[-1].split(".")[0])
        if number < before_round:
            best = path
    return load_file(str(best)) if best else None
