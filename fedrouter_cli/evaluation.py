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
from fedrouter_cli.generation_cache import GenerationCache
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
                            hidden_states=functools.partial(_hidden_states, config), seed=config.train.seed,
                            local_route=config.eval.local_route)
    routing = STRATEGIES[alg].route(inputs)
    routing.budgets = adapter_budgets(round_inputs.state.get("token_budgets", {}), routing.names)
    return routing


def adapter_budgets(saved: dict[str, int], names: list[str]) -> dict[str, int]:
    """Each routed adapter's new-token budget, as the run saved it by adapter name. A name the run
    kept none for (an adapter built at inference: a mix, a client's own half) gets the largest
    budget of the run, which covers every data set its parts were trained on."""
    if not saved:
        return {}
    largest = max(saved.values())
    return {name: int(saved.get(name, largest)) for name in set(names) if name != BASE}


def _hidden_states(config: Config, instructions: list[str], adapter) -> Any:
    """Last-token hidden states of the evaluated base model with `adapter` (loaded on first use)."""
    from fedrouter_cli.model.generate import last_token_states
    from fedrouter_cli.model.lora import peft_model

    model, tokenizer = peft_model(config.model.model, config.train, config.model.load_in_4bit)
    return last_token_states(model, tokenizer, instructions, adapter, config.train,
                             max_length=config.train.max_length, batch_size=config.eval.batch_size)


def token_limits(config: Config, routing: Routing) -> list[int]:
    """Each sample's new-token limit: its adapter's budget from its training responses when the
    run has one and --token-budget is on, never above --max-new-tokens."""
    cap = config.eval.max_new_tokens
    if not config.eval.token_budget or not routing.budgets:
        return [cap] * len(routing.names)
    return [min(cap, routing.budgets.get(name, cap)) for name in routing.names]


def _model_identity(config: Config, placement) -> str:
    """What the base model's answers depend on besides adapter and prompt: which model, and the
    numerics it runs in."""
    from fedrouter_cli.model.loading import model_reference

    return f"{model_reference(config.model.model)}|4bit={config.model.load_in_4bit}|{placement.dtype}"


def generate_all(config: Config, tests: list[ClientTest], routings: list[Routing],
                 progress: Progress = no_progress, cache: GenerationCache | None = None, reuse: bool = True
                 ) -> tuple[list[list[str]], float, int]:
    """Generate every client's answers in one stream, so batches mix clients and adapters.

    With a cache, answers whose content key (model, adapter weights, prompt, truncation) is known
    are read, not generated (reuse=False generates all and only stores them: --force); the model
    is loaded only when something is left to generate.
    Returns the answers per client, the seconds spent generating and how many were generated."""
    from fedrouter_cli.data.prompts import prompt_key
    from fedrouter_cli.generation_cache import adapter_digest, answer_for
    from fedrouter_cli.model.lora import with_rank

    placement = resolve_device(config.model.device)
    identity = _model_identity(config, placement)
    builds: dict[str, Any] = {}
    for routing in routings:
        builds.update(routing.build)  # names are unique across clients
    weights = {name: build() for name, build in builds.items()}
    scales = {name: with_rank(config.train, w) for name, w in weights.items()}
    digests = {name: adapter_digest(w, (scales[name].lora_r, scales[name].lora_alpha))
               for name, w in weights.items()} | {BASE: "base"}
    prompts, names, limits, owners = [], [], [], []
    for index, (test, routing) in enumerate(zip(tests, routings)):
        prompts += test.rows.column("instruction").to_pylist()
        names += routing.names
        limits += token_limits(config, routing)
        owners += [index] * len(test.rows)
    keys = [GenerationCache.key(identity, digests[n], prompt_key(p, config.train.prompt_format), config.train.max_length)
            for n, p in zip(names, prompts)]
    known = cache.get(sorted(set(keys))) if cache is not None and reuse else {}
    todo = [i for i, (k, limit) in enumerate(zip(keys, limits)) if k not in known or not known[k].serves(limit)]
    # one generation per key, to the largest limit asked of it (a shorter limit's answer is its prefix)
    first: dict[str, int] = {}
    longest: dict[str, int] = {}
    for i in todo:
        first.setdefault(keys[i], i)
        longest[keys[i]] = max(longest.get(keys[i], 0), limits[i])
    answers: list[str] = [""] * len(prompts)
    seconds = 0.0
    tokenizer = None
    if first:
        which = list(first.values())
        fresh_answers, seconds, tokenizer = _generate_fresh(config, placement, weights, which, prompts, names,
                                                            [longest[keys[i]] for i in which], progress)
        fresh = {keys[i]: answer for i, answer in zip(which, fresh_answers)}
        if cache is not None:
            cache.put(fresh)
        known = known | fresh
    for i, (key, limit) in enumerate(zip(keys, limits)):
        entry = known[key]
        if len(entry.tokens) > limit and tokenizer is None:  # a longer cached answer, cut: needs the tokenizer
            from fedrouter_cli.model.lora import peft_model

            tokenizer = peft_model(config.model.model, config.train, config.model.load_in_4bit, placement)[1]
        answers[i] = answer_for(entry, limit, lambda ids: _decode(tokenizer, ids))
    progress("generate", len(prompts), len(prompts))
    per_client: list[list[str]] = [[] for _ in tests]
    for owner, answer in zip(owners, answers):
        per_client[owner].append(answer)
    return per_client, seconds, len(first)


def _decode(tokenizer, ids: list[int]) -> str:
    from fedrouter_cli.model.generate import decode

    return decode(tokenizer, ids)


def _generate_fresh(config: Config, placement, weights: dict[str, Any], which: list[int], prompts: list[str],
                    names: list[str], limits: list[int], progress: Progress):
    """Generate the samples `which` (each to its limit in `limits`) with the model and the adapters
    they need."""
    from fedrouter_cli.model.generate import generate_answers
    from fedrouter_cli.model.lora import (
        lora_config,
        peft_model,
        set_adapter_weights,
        with_rank,
    )

    model, tokenizer = peft_model(config.model.model, config.train, config.model.load_in_4bit, placement)
    needed = sorted({names[i] for i in which} - {BASE})
    for name in needed:
        model.add_adapter(name, lora_config(with_rank(config.train, weights[name])))
        set_adapter_weights(model, weights[name], adapter_name=name)
    model.eval()
    started = time.perf_counter()
    try:
        answers = generate_answers(model, tokenizer, [prompts[i] for i in which], [names[i] for i in which],
                                   limits, strategy=config.eval.generation,
                                   batch_size=generate_batch_size(config.eval.batch_size, placement),
                                   max_length=config.train.max_length, progress=progress,
                                   prompt_format=config.train.prompt_format)
    finally:
        for name in needed:
            model.delete_adapter(name)
    return answers, time.perf_counter() - started, tokenizer


def score_records(tests: list[ClientTest], routings: list[Routing], predictions: list[list[str]],
                  stemming: bool = True) -> list[dict]:
    """One row per test sample: what it was routed to, what came out, and its ROUGE scores."""
    records = []
    for test, routing, answers in zip(tests, routings, predictions):
        for i, row in enumerate(test.rows.to_pylist()):
            routed = routing.routed_tasks[i] if routing.routed_tasks else None
            records.append({"client": client_name(test.client), "id": row["id"], "task": row["task"],
                            "adapter": routing.names[i], "routed_task": routed, "prediction": answers[i],
                            "reference": row["response"], **rouge(answers[i], row["response"], stemming)})
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
    their mean over clients, ROUGE-1 per task over all its samples, and routing accuracy. Rows
    without a task label (one's own records, no task column) count in ROUGE only; `task_labels`
    says whether the figures by task cover all test rows, some or none."""
    clients = sorted(sums)
    client_means = {c: {k: math.fsum(t[k] for t in sums[c].values()) / math.fsum(t["count"] for t in sums[c].values())
                        for k in ROUGE_KEYS} for c in clients}
    tasks = sorted({task for c in clients for task in sums[c]})
    per_task = {}
    for task in filter(None, tasks):
        parts = [sums[c][task] for c in clients if task in sums[c]]
        per_task[task] = round(math.fsum(p["rouge1"] for p in parts) / math.fsum(p["count"] for p in parts), 4)
    every = [t for c in clients for t in sums[c].values()]
    labelled = [t for c in clients for task, t in sums[c].items() if task]
    routed = math.fsum(t["routed"] for t in labelled)
    summary: dict[str, Any] = {k: round(math.fsum(m[k] for m in client_means.values()) / len(clients), 4)
                               for k in ROUGE_KEYS}
    summary |= {
        "routing_accuracy": round(math.fsum(t["routed_correct"] for t in labelled) / routed, 4) if routed else None,
        "samples": int(math.fsum(t["count"] for t in every)),
        "per_task": per_task,
        "per_client": {c: round(m["rouge1"], 4) for c, m in client_means.items()},
        "task_labels": "all" if len(labelled) == len(every) else "some" if labelled else "none",
    }
    return summary
