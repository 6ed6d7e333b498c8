"""Scoring one or more clients' test sets: route, generate, score, and sum per client and task.

The same functions serve the server (`fedrouter evaluate`, which holds every client's test rows)
and each node (`fedrouter evaluate --on nodes`, where a node holds only its own). The summary is
always built from per-(client, task) sums, so both places produce the same scores.json from the
same predictions.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from fedrouter_cli.config import BASE_ALG, Config
from fedrouter_cli.federation.inference import InferenceInput, Routing
from fedrouter_cli.federation.strategies import STRATEGIES
from fedrouter_cli.metrics import ROUGE_KEYS, rouge
from fedrouter_cli.model.device import generate_batch_size, resolve_device
from fedrouter_cli.model.generate import BASE
from fedrouter_cli.progress import Progress, no_progress
from fedrouter_cli.rundir import client_name

SUM_KEYS = (*ROUGE_KEYS, "count", "routed", "routed_correct")  # what a node returns per task


@dataclass
class ClientTest:
    """One client's test rows and what its node holds for routing them."""

    client: int
    rows: pa.Table                   # id, task, instruction, response
    embeddings: np.ndarray           # [n, dim], row by row
    train_embeddings: np.ndarray
    train_instructions: list[str]
    local_centroids: np.ndarray
    local_tasks: list[str]           # majority task of each local cluster
    node_dir: Path                   # the client's own folder (state it kept between rounds)


@dataclass
class RoundInputs:
    """What the evaluated round left for inference: its state and where its adapters are."""

    state: dict[str, Any] = field(default_factory=dict)
    adapters_dir: Path = Path()
    global_tasks: dict[str, str] = field(default_factory=dict)  # adapter -> majority task behind it


def route(config: Config, alg: str, test: ClientTest, round_inputs: RoundInputs) -> Routing:
    if alg == BASE_ALG:
        return Routing([BASE] * len(test.rows), {}, None)
    inputs = InferenceInput(client=test.client, mode=config.eval.mode, embeddings=test.embeddings,
                            state=round_inputs.state, adapters_dir=round_inputs.adapters_dir, node_dir=test.node_dir,
                            train_embeddings=test.train_embeddings, local_centroids=test.local_centroids,
                            local_tasks=test.local_tasks, global_tasks=round_inputs.global_tasks,
                            instructions=test.rows.column("instruction").to_pylist(),
                            train_instructions=test.train_instructions,
                            hidden_states=functools.partial(_hidden_states, config), seed=config.train.seed)
    return STRATEGIES[alg].route(inputs)


def _hidden_states(config: Config, instructions: list[str], adapter) -> Any:
    """Last-token hidden states of the evaluated base model with `adapter` (loaded on first use)."""
    from fedrouter_cli.model.generate import last_token_states
    from fedrouter_cli.model.lora import peft_model

    model, tokenizer = peft_model(config.model.model, config.train, config.model.load_in_4bit)
    return last_token_states(model, tokenizer, instructions, adapter, config.train,
                             max_length=config.train.max_length, batch_size=config.eval.batch_size)


def generate_all(config: Config, tests: list[ClientTest], routings: list[Routing],
                 progress: Progress = no_progress) -> tuple[list[list[str]], float]:
    """Generate every client's answers in one stream, so batches mix clients and adapters."""
    from fedrouter_cli.model.generate import generate
    from fedrouter_cli.model.lora import lora_config, peft_model, set_adapter_weights, with_rank

    placement = resolve_device(config.model.device)
    model, tokenizer = peft_model(config.model.model, config.train, config.model.load_in_4bit, placement)
    prompts, names, owners = [], [], []
    loaded: list[str] = []
    for index, (test, routing) in enumerate(zip(tests, routings)):
        for name, build in routing.build.items():  # names are unique across clients
            if name not in loaded:
                weights = build()
                model.add_adapter(name, lora_config(with_rank(config.train, weights)))
                set_adapter_weights(model, weights, adapter_name=name)
                loaded.append(name)
        prompts += test.rows.column("instruction").to_pylist()
        names += routing.names
        owners += [index] * len(test.rows)
    model.eval()
    started = time.perf_counter()
    try:
        answers = generate(model, tokenizer, prompts, names, strategy=config.eval.generation,
                           max_new_tokens=config.eval.max_new_tokens,
                           batch_size=generate_batch_size(config.eval.batch_size, placement),
                           max_length=config.train.max_length, progress=progress)
    finally:
        for name in loaded:
            model.delete_adapter(name)
    seconds = time.perf_counter() - started
    per_client: list[list[str]] = [[] for _ in tests]
    for owner, answer in zip(owners, answers):
        per_client[owner].append(answer)
    return per_client, seconds


def score_records(tests: list[ClientTest], routings: list[Routing], predictions: list[list[str]]) -> list[dict]:
    """One row per test sample: what it was routed to, what came out, and its ROUGE scores."""
    records = []
    for test, routing, answers in zip(tests, routings, predictions):
        for i, row in enumerate(test.rows.to_pylist()):
            routed = routing.routed_tasks[i] if routing.routed_tasks else None
            records.append({"client": client_name(test.client), "id": row["id"], "task": row["task"],
                            "adapter": routing.names[i], "routed_task": routed, "prediction": answers[i],
                            "reference": row["response"], **rouge(answers[i], row["response"])})
    return records


def task_sums(records: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """{client: {task: {rouge1, rouge2, rougeL (sums), count, routed, routed_correct}}}: all a
    node needs to return for the server to build the scores."""
    grouped: dict[str, dict[str, list[dict]]] = {}
    for r in records:
        grouped.setdefault(r["client"], {}).setdefault(r["task"], []).append(r)
    sums: dict[str, dict[str, dict[str, float]]] = {}
    for client, by_task in grouped.items():
        for task, rows in by_task.items():
            routed = [r for r in rows if r["routed_task"] is not None]
            sums.setdefault(client, {})[task] = {
                **{k: math.fsum(r[k] for r in rows) for k in ROUGE_KEYS},
                "count": float(len(rows)), "routed": float(len(routed)),
                "routed_correct": float(sum(r["routed_task"] == r["task"] for r in routed)),
            }
    return sums


def summarize(sums: dict[str, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """scores.json's figures from per-(client, task) sums: each client's mean over its samples,
    their mean over clients, ROUGE-1 per task over all its samples, and routing accuracy."""
    clients = sorted(sums)
    client_means = {c: {k: math.fsum(t[k] for t in sums[c].values()) / math.fsum(t["count"] for t in sums[c].values())
                        for k in ROUGE_KEYS} for c in clients}
    tasks = sorted({task for c in clients for task in sums[c]})
    per_task = {}
    for task in tasks:
        parts = [sums[c][task] for c in clients if task in sums[c]]
        per_task[task] = round(math.fsum(p["rouge1"] for p in parts) / math.fsum(p["count"] for p in parts), 4)
    every = [t for c in clients for t in sums[c].values()]
    routed = math.fsum(t["routed"] for t in every)
    summary: dict[str, Any] = {k: round(math.fsum(m[k] for m in client_means.values()) / len(clients), 4)
                               for k in ROUGE_KEYS}
    summary |= {
        "routing_accuracy": round(math.fsum(t["routed_correct"] for t in every) / routed, 4) if routed else None,
        "samples": int(math.fsum(t["count"] for t in every)),
        "per_task": per_task,
        "per_client": {c: round(m["rouge1"], 4) for c, m in client_means.items()},
    }
    return summary
