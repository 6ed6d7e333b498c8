"""Stage `deploy prepare-node`: one client's SuperNode folder, made on that client's machine,
from its share of a shared source or (--data) from the node's own file of records.

It runs the same stages as the server would for this one client (partition share, embeddings of
its train and test rows, local clustering) with the same settings and seeds, so the folder matches
what `deploy node-dir` would copy from a server run, without the client's data leaving its
machine. The test rows and their embeddings let the node score itself (`evaluate --on nodes`).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from fedrouter_cli.config import Config
from fedrouter_cli.data.own_records import split_client
from fedrouter_cli.data.records import read_records
from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.files import read_table, write_table
from fedrouter_cli.rundir import (
    PARTITION_TEXT,
    TEST_SPLITS,
    NodeDir,
    RunDir,
    client_name,
)
from fedrouter_cli.stages.cluster_local import (
    choose_k,
    cluster_client,
    stability_record,
    tasks_held,
)
from fedrouter_cli.stages.common import Progress, no_progress
from fedrouter_cli.stages.embed import embed_unique
from fedrouter_cli.stages.partition import rows_table, run_partition
from fedrouter_cli.vectors import embeddings_table


def check_node_folder(dest: Path, client: int) -> None:
    """The ClientApp reads its client index from the folder name, so it must be named for it."""
    if NodeDir(dest).client != client:
        raise FedrouterError(f"The node folder for {client_name(client)} must be named after it "
                             f"(e.g. .../{client_name(client)}), got {dest}.")


def prepare_node(config: Config, client: int, dest: Path, progress: Progress = no_progress,
                 data: Path | None = None) -> dict[str, Any]:
    """This client's node folder: from its share of the shared source, or (`data`) from a file
    of the node's own records that no other machine sees."""
    if data is None and not 0 <= client < config.data.clients:
        raise FedrouterError(f"--client {client} does not exist: the federation has {config.data.clients} clients "
                             f"(0..{config.data.clients - 1}).")
    dest = Path(dest).expanduser().resolve()
    check_node_folder(dest, client)
    started = time.perf_counter()
    name = client_name(client)
    warnings: list[str] = []
    if data is not None:
        train, tests, held, warnings = own_rows(config, client, Path(data))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run = RunDir(Path(tmp))
            run_partition(config, run)  # text rows only: cheap, and the same draw on every machine
            train = read_table(run.partition_file(name, "train"), PARTITION_TEXT)
            tests = {split: read_table(run.partition_file(name, split), PARTITION_TEXT) for split in TEST_SPLITS}
            held = tasks_held(config, tuple(run.require("partition")["summary"]["tasks"]), client)
    texts = train.column("instruction").to_pylist()
    unique = sorted(set(texts).union(*(t.column("instruction").to_pylist() for t in tests.values())))
    vectors, _, _, _ = embed_unique(config, unique, progress)
    row_of = {text: i for i, text in enumerate(unique)}

    def vectors_of(table: pa.Table) -> np.ndarray:
        return vectors[[row_of[t] for t in table.column("instruction").to_pylist()]]

    points = vectors_of(train)
    tasks = train.column("task").to_pylist()
    ids = train.column("id").to_pylist()
    k, curve = choose_k(points, config, name, held)
    clusters = cluster_client(ids, tasks, points, k, config.cluster.seed)
    # file by file (each atomic), so state the node keeps between rounds (its state/) survives
    node = NodeDir(dest)
    write_table(node.rows_file("train"), train)
    write_table(node.assignments_file, clusters.assignments_table())
    write_table(node.centroids_file, clusters.centroids_table())
    write_table(node.embeddings_file("train"), embeddings_table(ids, points))
    for split, table in tests.items():
        write_table(node.rows_file(split), table)
        write_table(node.embeddings_file(split), embeddings_table(table.column("id").to_pylist(), vectors_of(table)))
    return {"client": name, "node_dir": str(dest), "rows": len(texts), "test_rows": tests["test"].num_rows,
            "k": len(clusters.centroids), "sizes": clusters.sizes,
            "purity": clusters.purity, **stability_record(curve),
            "warnings": warnings, "seconds": round(time.perf_counter() - started, 3)}


def check_own_data_options(source_given: bool, client_column: str) -> None:
    """--data is all of this node's rows: no shared --source beside it, no column splitting it among clients."""
    if source_given:
        raise FedrouterError("--data and --source both name this node's rows; pass one of them.")
    if client_column:
        raise FedrouterError("--client-column splits one file among simulated clients; a node's --data is all its "
                             "own, so leave --client-column out.")


def own_rows(config: Config, client: int, path: Path) -> tuple[pa.Table, dict[str, pa.Table], int | None, list[str]]:
    """The node's own records, split as a simulation of the same rows splits that client
    (own_records.split_client); every problem is found before anything is written."""
    data = config.data
    check_own_data_options(False, data.client_column)
    columns = replace(data.columns(), client=None)
    records = read_records(path, columns)
    train, test, warning = split_client(records, client, str(path), data.train_per_client, data.test_per_client,
                                        data.test_fraction, data.seed)
    if len(train) < config.train.batch_size:
        raise FedrouterError(f"{path} leaves {len(train)} train row(s) after the test share, fewer than one batch "
                             f"({config.train.batch_size}); add rows or pass a smaller --test-fraction.")
    held = len({r.task for r in train} - {""}) or None
    return rows_table(train), {"test": rows_table(test)}, held, [warning] if warning else []
