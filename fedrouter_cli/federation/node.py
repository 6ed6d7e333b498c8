"""A client's own folder: its train rows, local clusters and any state it keeps between rounds.

In the deployment engine the folder is the SuperNode's `data-dir` node config; in the simulation
engine (where node configs are fixed to partition ids) it is <run-dir>/nodes/cNN, given to the
ClientApp the simulate stage builds (client_app.build_client_app).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from safetensors.numpy import load_file, save_file

from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.files import atomic_path, read_table
from fedrouter_cli.model.lora import Adapter
from fedrouter_cli.rundir import PARTITION_TEXT, NodeDir, client_name
from fedrouter_cli.vectors import read_vectors


def node_folder(node_config: dict, nodes_root: Path | None = None, run_config: dict | None = None) -> Path:
    """A node's own folder: its `data-dir` node config (a deployed SuperNode); else its client's
    folder under `nodes_root` (`fedrouter simulate`), or under the run config's run-dir/nodes/
    (`flwr run` on a local simulation federation), the node configs of both holding partition ids."""
    if "data-dir" in node_config:
        return Path(str(node_config["data-dir"]))
    if nodes_root is None and (run_config or {}).get("run-dir"):
        nodes_root = Path(str(run_config["run-dir"])) / "nodes"
    if nodes_root is None or "partition-id" not in node_config:
        raise RuntimeError("this node has no data-dir in its node config; start the SuperNode with "
                           "--node-config \"data-dir='<its folder>'\"")
    return Path(nodes_root) / client_name(int(node_config["partition-id"]))


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
        files = NodeDir(folder)
        train = read_table(files.rows_file("train"), PARTITION_TEXT)
        assignments = pq.read_table(files.assignments_file)
        if train.column("id").to_pylist() != assignments.column("id").to_pylist():
            raise RuntimeError(f"{folder}: assignments do not match train rows")
        cents = pq.read_table(files.centroids_file)
        client = files.client
        if client is None:  # a guess would train and report as another client
            raise FedrouterError(f"The node folder {folder} is not named for its client; name it as "
                                 "`fedrouter deploy node-dir` does (c03 for client 3, or node-3).")
        return cls(folder=folder, client=client,
                   instructions=train.column("instruction").to_pylist(),
                   responses=train.column("response").to_pylist(),
                   clusters=np.asarray(assignments.column("cluster").to_pylist(), dtype=np.int64),
                   centroids=read_vectors(cents.column("centroid")),
                   sizes=np.asarray(cents.column("size").to_pylist(), dtype=np.int64))

    def rows(self, clusters: Sequence[int] = ()) -> list[tuple[str, str]]:
        """Train rows of the given local clusters (in row order), or all rows for () or [-1]."""
        wanted = [c for c in clusters if c >= 0]
        picked = np.flatnonzero(np.isin(self.clusters, wanted)) if wanted else range(len(self.instructions))
        return [(self.instructions[i], self.responses[i]) for i in picked]


def save_state(folder: Path, alg: str, name: str, round_number: int, arrays: Adapter) -> None:
    with atomic_path(NodeDir(folder).state_file(alg, name, round_number)) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))


def latest_state(folder: Path, alg: str, name: str, before_round: int) -> Adapter | None:
    """The node's kept weights from the latest round before `before_round` (so a redone round is exact)."""
    earlier = {r: path for r, path in NodeDir(folder).saved_states(alg, name).items() if r < before_round}
    return load_file(str(earlier[max(earlier)])) if earlier else None
