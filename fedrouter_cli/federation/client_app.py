"""The ClientApp: answers the centroid query, trains the adapters the server sends, and scores
its own test set when asked (`evaluate --on nodes`).

A train message carries one or more jobs. Job i comes with the arrays `adapter-i` and says which
local clusters to train on, as one data set ('0,2'; '' = all the client's data), which LoRA part
is trainable, which part goes back to the server, which part the client keeps for itself between
rounds, and which other job's adapter (its companion) is active and frozen while it trains. Every
algorithm is expressed in these terms, so the client needs no per-algorithm code.
Only arrays and numbers leave the client (and, for evaluation, the task names of its labels).
"""

from __future__ import annotations

import contextlib
import json
import resource

import numpy as np
import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedrouter_cli.config import TrainConfig
from fedrouter_cli.federation.node import NodeData, latest_state, node_folder, save_state
from fedrouter_cli.federation.privacy import privatize_centroids, privatize_update
from fedrouter_cli.federation.wire import from_record, select, to_record
from fedrouter_cli.model.device import resolve_device
from fedrouter_cli.model.lora import companion_adapter, get_adapter, peft_model, set_adapter_weights
from fedrouter_cli.model.train import train_steps
from fedrouter_cli.quiet import silence_dependencies

silence_dependencies()  # a Ray worker or SuperNode process is as quiet as the CLI that started it
app = ClientApp()

_NODE_CACHE: dict[str, NodeData] = {}


def _node(context: Context) -> NodeData:
    folder = node_folder(dict(context.node_config))
    key = str(folder)
    if key not in _NODE_CACHE:
        _NODE_CACHE[key] = NodeData.load(folder)
    return _NODE_CACHE[key]


@app.query("tasks")
def tasks(msg: Message, context: Context) -> Message:
    """Who this node is, and the majority task of each local cluster (for routing accuracy)."""
    from fedrouter_cli.federation.node_evaluate import local_tasks

    node = _node(context)
    content = RecordDict({"tasks": ConfigRecord({"local-tasks": json.dumps(local_tasks(node.folder))}),
                          "metrics": MetricRecord({"client": node.client})})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Route, generate and score this node's test set; only per-task sums and counts go back."""
    from fedrouter_cli.federation.eval_wire import EvalRequest, sums_to_content
    from fedrouter_cli.federation.node_evaluate import evaluate_node

    node = _node(context)
    threads = int(msg.content["config"].get("torch-threads", 0))
    if threads:
        torch.set_num_threads(threads)
    sums = evaluate_node(node, EvalRequest.from_content(msg.content))
    return Message(content=sums_to_content(node.client, sums), reply_to=msg)


@app.query("centroids")
def centroids(msg: Message, context: Context) -> Message:
    node = _node(context)
    cfg = msg.content["config"]
    epsilon = float(cfg.get("centroid-epsilon", 0.0))
    if epsilon > 0:
        sent = {"centroids": privatize_centroids(node.centroids, node.sizes, epsilon, float(cfg["dp-delta"]),
                                                 seed=int(cfg.get("seed", 0)) + 7 * node.client)}
    else:
        sent = {"centroids": node.centroids, "sizes": node.sizes}
    content = RecordDict({"centroids": to_record(sent), "metrics": MetricRecord({"client": node.client})})
    return Message(content=content, reply_to=msg)


def _train_config(cfg: ConfigRecord) -> TrainConfig:
    return TrainConfig(lora_r=int(cfg["lora-r"]), lora_alpha=int(cfg["lora-alpha"]),
                       lora_dropout=float(cfg["lora-dropout"]), target_modules=tuple(cfg["target-modules"]))


def job_clusters(cfg: ConfigRecord) -> list[list[int]]:
    """Each job's local clusters: 'job-clusters' ('0,2'; '' = all data), or a server of before
    issue #14 that sent one cluster per job ('job-cluster', -1 = all data)."""
    if "job-clusters" in cfg:
        return [[int(c) for c in str(value).split(",") if c.strip()] for value in cfg["job-clusters"]]
    return [[int(value)] for value in cfg["job-cluster"]]


@app.train()
def train(msg: Message, context: Context) -> Message:
    cfg = msg.content["config"]
    node = _node(context)
    round_number = int(cfg["round"])
    threads = int(cfg.get("torch-threads", 0))
    if threads:
        torch.set_num_threads(threads)
    placement = resolve_device(str(cfg.get("device", "auto")))
    model, tokenizer = peft_model(str(cfg["model"]), _train_config(cfg), bool(cfg.get("load-in-4bit", False)),
                                  placement)
    names = [str(n) for n in cfg["job-name"]]
    companions = [str(c) for c in cfg.get("job-companion", [""] * len(names))]
    alg = str(cfg["alg"])
    reply = RecordDict()
    losses, first, last, samples, seconds = [], [], [], [], []
    for i, clusters in enumerate(job_clusters(cfg)):
        name, keep = str(cfg["job-name"][i]), str(cfg["job-keep"][i])
        key = f"adapter-{i}"
        adapter = from_record(msg.content[key]) if key in msg.content else {}
        kept = latest_state(node.folder, alg, name, round_number) if keep != "none" else None
        if kept:
            adapter.update(kept)
        for k, v in get_adapter(model).items():  # a part neither sent nor kept yet starts at zeros
            adapter.setdefault(k, np.zeros_like(v))  # (LoRA's initial B), never at a previous job's weights
        set_adapter_weights(model, adapter)
        seed = int(cfg["seed"]) + 7919 * round_number + 104729 * node.client + i
        frozen = contextlib.nullcontext()
        if companions[i]:  # another job's adapter, as the server sent it, active and frozen beside this one
            frozen = companion_adapter(model, from_record(msg.content[f"adapter-{names.index(companions[i])}"]),
                                       _train_config(cfg))
        with frozen:
            outcome = train_steps(model, tokenizer, node.rows(clusters), int(cfg["local-steps"]),
                                  int(cfg["batch-size"]), float(cfg["lr"]), int(cfg["max-length"]),
                                  seed=seed, trainable=str(cfg["job-trainable"][i]))
        trained = get_adapter(model)
        if keep != "none":
            save_state(node.folder, alg, name, round_number, select(trained, keep))
        sent = select(trained, str(cfg["job-send"][i])) if cfg["job-send"][i] != "none" else {}
        if sent and float(cfg.get("dp-epsilon", 0.0)) > 0:
            sent = privatize_update(sent, adapter, float(cfg["dp-clip"]), float(cfg["dp-epsilon"]),
                                    float(cfg["dp-delta"]), seed)
        reply[key] = to_record(sent)
        losses.append(outcome.loss)
        first.append(outcome.first_loss)
        last.append(outcome.last_loss)
        samples.append(outcome.samples)
        seconds.append(outcome.seconds)
    reply["metrics"] = MetricRecord({
        "client": node.client, "loss": losses, "first-loss": first, "last-loss": last,
        "samples": samples, "train-seconds": seconds,
        # the worker's peak resident memory so far: flat over rounds means nothing accumulates
        "peak-rss-mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    })
    return Message(content=reply, reply_to=msg)
