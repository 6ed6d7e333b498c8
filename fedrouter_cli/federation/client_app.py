"""The ClientApp: answers the centroid query, trains the adapters the server sends, and scores
its own test set when asked (`evaluate --on nodes`).

A train message carries one or more jobs (federation.train_wire.TrainRequest, the one definition
of the message for both ends); every algorithm is expressed in its terms, so the client needs no
per-algorithm code.
Only arrays and numbers leave the client (and, for evaluation, the task names of its labels).

`app` is the ClientApp a deployed SuperNode starts by name: its folder is its `data-dir` node
config. The simulation engine, whose node configs hold only partition ids, gets its own from
`build_client_app(nodes_root)`: client i's folder is nodes_root/cNN.
"""

from __future__ import annotations

import contextlib
import json
import resource
from pathlib import Path

import numpy as np
import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedrouter_cli.federation.node import (
    NodeData,
    latest_state,
    node_folder,
    save_state,
)
from fedrouter_cli.federation.privacy import privatize_centroids, privatize_update
from fedrouter_cli.federation.train_wire import TrainRequest
from fedrouter_cli.federation.wire import to_record
from fedrouter_cli.model.device import resolve_device
from fedrouter_cli.model.lora import (
    companion_adapter,
    get_adapter,
    peft_model,
    scaled_adapter,
    scaled_b,
    select,
    set_adapter_weights,
)
from fedrouter_cli.model.train import train_steps
from fedrouter_cli.quiet import silence_dependencies

silence_dependencies()  # a Ray worker or SuperNode process is as quiet as the CLI that started it
_NODE_CACHE: dict[str, NodeData] = {}


def build_client_app(nodes_root: Path | None = None) -> ClientApp:
    """The ClientApp, finding each node's folder in its node config or, given, under `nodes_root`."""
    client_app = ClientApp()

    def node(context: Context) -> NodeData:
        folder = node_folder(dict(context.node_config), nodes_root, dict(context.run_config))
        if not folder.exists() and "data-dir" not in context.node_config and context.run_config.get("run-dir"):
            # `flwr run` on a local simulation federation: this node's machine holds the run, so the
            # node makes its own folder from its client's files, as `fedrouter simulate` does
            from fedrouter_cli.rundir import RunDir

            RunDir(Path(str(context.run_config["run-dir"]))).fill_nodes([folder.name])
        key = str(folder)
        if key not in _NODE_CACHE:
            _NODE_CACHE[key] = NodeData.load(folder)
        return _NODE_CACHE[key]

    client_app.query("tasks")(lambda msg, context: tasks(msg, node(context)))
    client_app.query("centroids")(lambda msg, context: centroids(msg, node(context)))
    client_app.train()(lambda msg, context: train(msg, node(context)))
    client_app.evaluate()(lambda msg, context: evaluate(msg, node(context)))
    return client_app


def tasks(msg: Message, node: NodeData) -> Message:
    """Who this node is, and the majority task of each local cluster (for routing accuracy)."""
    from fedrouter_cli.federation.node_evaluate import local_tasks

    content = RecordDict({"tasks": ConfigRecord({"local-tasks": json.dumps(local_tasks(node.folder))}),
                          "metrics": MetricRecord({"client": node.client})})
    return Message(content=content, reply_to=msg)


def evaluate(msg: Message, node: NodeData) -> Message:
    """Route, generate and score this node's test set; only per-task sums and counts go back."""
    from fedrouter_cli.federation.eval_wire import EvalRequest, sums_to_content
    from fedrouter_cli.federation.node_evaluate import evaluate_node

    threads = int(msg.content["config"].get("torch-threads", 0))
    if threads:
        torch.set_num_threads(threads)
    sums = evaluate_node(node, EvalRequest.from_content(msg.content))
    return Message(content=sums_to_content(node.client, sums), reply_to=msg)


def centroids(msg: Message, node: NodeData) -> Message:
    cfg = msg.content["config"]
    epsilon = float(cfg.get("centroid-epsilon", 0.0))
    if epsilon > 0:
        sent = {"centroids": privatize_centroids(node.centroids, node.sizes, epsilon, float(cfg["dp-delta"]),
                                                 seed=int(cfg.get("seed", 0)) + 7 * node.client)}
    else:
        sent = {"centroids": node.centroids, "sizes": node.sizes}
    content = RecordDict({"centroids": to_record(sent), "metrics": MetricRecord({"client": node.client})})
    return Message(content=content, reply_to=msg)


def train(msg: Message, node: NodeData) -> Message:
    request = TrainRequest.from_content(msg.content)
    settings = request.settings
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    placement = resolve_device(settings.device)
    model, tokenizer = peft_model(settings.model, settings.lora(), settings.load_in_4bit, placement)
    names = [job.name for job in request.jobs]
    reply = RecordDict()
    losses, first, last, samples, seconds, budgets = [], [], [], [], [], []
    for i, job in enumerate(request.jobs):
        adapter = dict(request.adapters[i])
        kept = latest_state(node.folder, settings.alg, job.name, settings.round) if job.keep != "none" else None
        if kept:
            adapter.update(kept)
        for k, v in get_adapter(model).items():  # a part neither sent nor kept yet starts at zeros
            adapter.setdefault(k, np.zeros_like(v))  # (LoRA's initial B), never at a previous job's weights
        set_adapter_weights(model, adapter)
        seed = settings.seed + 7919 * settings.round + 104729 * node.client + i
        frozen = contextlib.nullcontext()
        if job.companion:  # another job's adapter, as the server sent it, active and frozen beside this one
            beside = scaled_b(request.adapters[names.index(job.companion)], job.companion_scale)
            frozen = companion_adapter(model, beside, settings.lora())
        weighted = scaled_adapter(model, job.scale) if job.scale != 1.0 else contextlib.nullcontext()
        with frozen, weighted:
            outcome = train_steps(model, tokenizer, node.rows(job.clusters), settings.local_steps,
                                  settings.batch_size, settings.lr, settings.max_length,
                                  seed=seed, trainable=job.trainable, group_by_length=settings.group_by_length,
                                  max_grad_norm=settings.max_grad_norm, prompt_format=settings.prompt_format)
        trained = get_adapter(model)
        if job.keep != "none":
            save_state(node.folder, settings.alg, job.name, settings.round, select(trained, job.keep))
        sent = select(trained, job.send) if job.send != "none" else {}
        if sent and settings.dp_epsilon > 0:
            sent = privatize_update(sent, adapter, settings.dp_clip, settings.dp_epsilon, settings.dp_delta, seed)
        reply[f"adapter-{i}"] = to_record(sent)
        losses.append(outcome.loss)
        first.append(outcome.first_loss)
        last.append(outcome.last_loss)
        samples.append(outcome.samples)
        seconds.append(outcome.seconds)
        budgets.append(outcome.token_budget)
    reply["metrics"] = MetricRecord({
        "client": node.client, "loss": losses, "first-loss": first, "last-loss": last,
        "samples": samples, "train-seconds": seconds,
        # new tokens an answer of each job's data needs: the server keeps one budget per adapter
        "token-budget": budgets,
        # the worker's peak resident memory so far: flat over rounds means nothing accumulates
        "peak-rss-mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    })
    return Message(content=reply, reply_to=msg)


app = build_client_app()
