"""A node scores its own test set (`fedrouter evaluate --on nodes`).

It routes and generates with what the server sent (settings, the round's router state, the
adapters its inference rule needs) and what it holds itself (its test rows, the embeddings made on
its machine, its local centroids and kept state), keeps adapters and predictions in its own folder
for its owner to inspect, and returns per-task sums and counts.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fedrouter_cli.evaluation import (
    ClientTest,
    RoundInputs,
    generate_all,
    route,
    score_records,
    task_sums,
)
from fedrouter_cli.federation.eval_wire import EvalRequest
from fedrouter_cli.federation.node import NodeData
from fedrouter_cli.files import atomic_dir, read_table, write_json, write_table
from fedrouter_cli.generation_cache import GenerationCache
from fedrouter_cli.model.lora import save_adapter
from fedrouter_cli.rundir import (
    NODE_ADAPTERS,
    NODE_PREDICTIONS,
    NODE_SUMS,
    PARTITION_TEXT,
    NodeDir,
    client_name,
)
from fedrouter_cli.vectors import read_embeddings


class NodeNotReady(RuntimeError):
    """The node folder lacks what evaluation needs (made before `evaluate --on nodes` existed)."""


def node_test(node: NodeData, split: str) -> ClientTest:
    files = NodeDir(node.folder)
    needed = [files.rows_file(split), files.embeddings_file("train"), files.embeddings_file(split)]
    missing = [str(p.relative_to(node.folder)) for p in needed if not p.exists()]
    if missing:
        raise NodeNotReady(f"{node.folder} lacks {', '.join(missing)}; rerun `fedrouter deploy prepare-node` "
                           "for this client (it embeds the test rows on this machine)")
    rows = read_table(needed[0], PARTITION_TEXT)
    ids, vectors = read_embeddings(needed[2])
    if ids != rows.column("id").to_pylist():
        raise NodeNotReady(f"{needed[2]} does not match {needed[0]}; rerun `fedrouter deploy prepare-node`")
    train_ids, train_vectors = read_embeddings(needed[1])
    if len(train_ids) != len(node.instructions):
        raise NodeNotReady(f"{needed[1]} does not match the node's train rows; rerun `fedrouter deploy prepare-node`")
    return ClientTest(client=node.client, rows=rows, embeddings=vectors, train_embeddings=train_vectors,
                      train_instructions=node.instructions, local_centroids=node.centroids,
                      local_tasks=local_tasks(node.folder), node_dir=node.folder)


def local_tasks(folder: Path) -> list[str]:
    """Majority task of each local cluster: the labels routing accuracy needs (no text)."""
    return pq.read_table(NodeDir(folder).centroids_file).column("majority_task").to_pylist()


def evaluate_node(node: NodeData, request: EvalRequest) -> dict[str, dict[str, float]]:
    """Score this node's test set; returns {task: sums and counts} (see evaluation.task_sums)."""
    test = node_test(node, request.split)
    config = request.config
    out = NodeDir(node.folder).evaluation_dir(request.alg, request.evaluation)
    with atomic_dir(out) as tmp:
        for name, weights in request.adapters.items():
            save_adapter(tmp / NODE_ADAPTERS / name, weights, config.train, config.model.model)
        # route with the adapters where they will stay once the folder is in place: the
        # routing's loaders read them only when generation starts, after this block
    routing = route(config, request.alg, test, RoundInputs(request.state, out / NODE_ADAPTERS, request.global_tasks))
    # the node's own cache: a second evaluation of the same adapters on its rows generates nothing
    predictions, _, _ = generate_all(config, [test], [routing], cache=GenerationCache(NodeDir(node.folder).generation_cache))
    records = score_records([test], [routing], predictions, config.eval.rouge_stemming)
    sums = task_sums(records)
    write_table(out / NODE_PREDICTIONS, pa.Table.from_pylist(records))
    write_json(out / NODE_SUMS, {"alg": request.alg, "evaluation": request.evaluation, "sums": sums})
    return sums.get(client_name(node.client), {})
