"""Stage `evaluate`: route each test sample to an adapter, generate greedily, score ROUGE."""

from __future__ import annotations

import functools
import statistics
import time
from dataclasses import asdict
from typing import Any

import pyarrow as pa

from fedrouter_cli.config import Config
from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.federation.inference import InferenceInput, Routing
from fedrouter_cli.federation.strategies import STRATEGIES
from fedrouter_cli.metrics import ROUGE_KEYS, rouge
from fedrouter_cli.model.device import generate_batch_size, resolve_device
from fedrouter_cli.model.generate import BASE, generate
from fedrouter_cli.rundir import (
    PARTITION_TEXT, RunDir, client_name, fingerprint, read_json, read_table, saved_rounds, write_json, write_table,
)
from fedrouter_cli.stages.cluster_local import read_centroids
from fedrouter_cli.stages.common import Progress, StageResult, cache_hit, manifest, no_progress, staged_outputs
from fedrouter_cli.stages.embed import embed_fingerprint, read_embeddings
from fedrouter_cli.stages.simulate import simulate_fingerprint

BASE_ALG = "base"  # the base model with no adapter, evaluated the same way


def pick_round(run: RunDir, alg: str, wanted: int) -> int:
    done = saved_rounds(run.simulate_dir(alg))
    if not done:
        raise FedrouterError(f"The run dir has no rounds of {alg}; run `fedrouter simulate --alg {alg}` first.")
    if wanted == 0:
        return done[-1]
    if wanted not in done:
        raise FedrouterError(f"Round {wanted} of {alg} does not exist; completed rounds are {done[0]}..{done[-1]}.")
    return wanted


def _test_split(config: Config) -> str:
    return "test_all" if config.data.test_tasks == "all" else "test"


def _client_inputs(run: RunDir, config: Config, client: int) -> tuple[pa.Table, Any]:
    name = client_name(client)
    rows = read_table(run.partition_file(name, _test_split(config)), PARTITION_TEXT)
    ids, vectors = read_embeddings(run.embedding_file(name, _test_split(config)))
    if ids != rows.column("id").to_pylist():
        raise FedrouterError(f"Test embeddings of {name} do not match its test rows; rerun `fedrouter embed --force`.")
    return rows, vectors


def _routings(config: Config, run: RunDir, alg: str, round_number: int, clients: int,
              tests: list[tuple[pa.Table, Any]]) -> list[Routing]:
    if alg == BASE_ALG:
        return [Routing([BASE] * len(rows), {}, None) for rows, _ in tests]
    strategy = STRATEGIES[alg]
    round_dir = run.round_dir(alg, round_number)
    state = read_json(round_dir / "state.json")
    local = {c: read_centroids(run.centroids_file(client_name(c))) for c in range(clients)}
    adapter_tasks = strategy.adapter_tasks(state, {c: local[c][2] for c in local})
    routings = []
    for c, (rows, vectors) in enumerate(tests):
        train_rows = read_table(run.partition_file(client_name(c), "train"), PARTITION_TEXT)
        inputs = InferenceInput(client=c, mode=config.eval.mode, embeddings=vectors, state=state,
                                adapters_dir=round_dir / "adapters", node_dir=run.client_dir(client_name(c)),
                                train_embeddings=read_embeddings(run.embedding_file(client_name(c), "train"))[1],
                                local_centroids=local[c][0], local_tasks=local[c][2], global_tasks=adapter_tasks,
                                instructions=rows.column("instruction").to_pylist(),
                                train_instructions=train_rows.column("instruction").to_pylist(),
                                hidden_states=functools.partial(_hidden_states, config), seed=config.train.seed)
        routings.append(strategy.route(inputs))
    return routings


def _hidden_states(config: Config, instructions: list[str], adapter) -> Any:
    """Last-token hidden states of the evaluated base model with `adapter` (loaded on first use)."""
    from fedrouter_cli.model.generate import last_token_states
    from fedrouter_cli.model.lora import peft_model

    model, tokenizer = peft_model(config.model.model, config.train, config.model.load_in_4bit)
    return last_token_states(model, tokenizer, instructions, adapter, config.train,
                             max_length=config.train.max_length, batch_size=config.eval.batch_size)


def evaluation_name(mode: str, test_tasks: str, explicit_round: int = 0) -> str:
    """Folder name of one evaluation, so the generalization test set and per-round evaluations
    never overwrite the default one: 'local', 'global+all-tasks', 'local@r3'."""
    name = mode if test_tasks == "scenario" else f"{mode}+all-tasks"
    return f"{name}@r{explicit_round}" if explicit_round else name


def evaluate_fingerprint(config: Config, alg: str, round_number: int) -> str:
    upstream = embed_fingerprint(config) if alg == BASE_ALG else simulate_fingerprint(config)
    settings = asdict(config.eval) | {"round": round_number, "test_tasks": config.data.test_tasks}
    if alg == BASE_ALG:
        settings |= {"model": config.model.model}
    return fingerprint("evaluate", alg, upstream, settings)


def run_evaluate(config: Config, run: RunDir, alg: str | None = None, force: bool = False,
                 progress: Progress = no_progress) -> StageResult:
    alg = alg or config.train.alg
    if alg != BASE_ALG and alg not in STRATEGIES:
        raise FedrouterError(f"Unknown algorithm {alg!r}; choose one of {', '.join([BASE_ALG, *STRATEGIES])}.")
    partition = run.require("partition")
    embed = run.require("embed")
    if embed["fingerprint"] != embed_fingerprint(config):
        raise FedrouterError("The run's embeddings were made with other data or embedder settings than asked; "
                             "run `fedrouter embed` with these settings first.")
    if alg != BASE_ALG:
        simulated = run.require("simulate", alg, hint=f"run `fedrouter simulate --alg {alg}` first")
        if simulated["fingerprint"] != simulate_fingerprint(config):
            raise FedrouterError(f"The run's {alg} simulation used other settings than asked; "
                                 f"rerun `fedrouter simulate --alg {alg}` with them, or drop the changed options.")
    round_number = 0 if alg == BASE_ALG else pick_round(run, alg, config.eval.round)
    fp = evaluate_fingerprint(config, alg, round_number)
    sub = (alg, evaluation_name(config.eval.mode, config.data.test_tasks, config.eval.round))
    if hit := cache_hit(run, "evaluate", fp, force, *sub):
        return hit
    started = time.perf_counter()
    clients = len(partition["summary"]["clients"])
    tests = [_client_inputs(run, config, c) for c in range(clients)]
    routings = _routings(config, run, alg, round_number, clients, tests)
    predictions, seconds_generating = _generate_all(config, tests, routings, progress)
    table, summary = _score(tests, routings, predictions)
    with staged_outputs(run, "evaluate", *sub) as at:
        out = run.evaluate_dir(*sub)
        write_table(at(out / "predictions.parquet"), table)
        seconds = time.perf_counter() - started
        summary |= {"alg": alg, "mode": config.eval.mode, "round": round_number,
                    "test_tasks": config.data.test_tasks, "seconds": round(seconds, 3),
                    "generation_seconds": round(seconds_generating, 3),
                    "samples_per_second": round(summary["samples"] / max(seconds_generating, 1e-9), 3),
                    "predictions_path": str(out / "predictions.parquet"),
                    **resolve_device(config.model.device).describe()}
        write_json(at(out / "scores.json"), summary)
        write_json(at(run.manifest_path("evaluate", *sub)),
                   manifest("evaluate", fp, asdict(config.eval), {}, seconds, summary, []))
    return StageResult("evaluate", False, seconds, summary)


def _generate_all(config: Config, tests, routings: list[Routing], progress: Progress) -> tuple[list[list[str]], float]:
    """Generate every client's answers in one stream, so batches mix clients and adapters."""
    from fedrouter_cli.model.lora import lora_config, peft_model, set_adapter_weights, with_rank

    placement = resolve_device(config.model.device)
    model, tokenizer = peft_model(config.model.model, config.train, config.model.load_in_4bit, placement)
    prompts, names, owners = [], [], []
    loaded: list[str] = []
    for c, ((rows, _), routing) in enumerate(zip(tests, routings)):
        for name, build in routing.build.items():  # names are unique across clients
            if name not in loaded:
                weights = build()
                model.add_adapter(name, lora_config(with_rank(config.train, weights)))
                set_adapter_weights(model, weights, adapter_name=name)
                loaded.append(name)
        prompts += rows.column("instruction").to_pylist()
        names += routing.names
        owners += [c] * len(rows)
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


def _score(tests, routings: list[Routing], predictions: list[list[str]]) -> tuple[pa.Table, dict[str, Any]]:
    records = []
    for c, ((rows, _), routing, answers) in enumerate(zip(tests, routings, predictions)):
        for i, row in enumerate(rows.to_pylist()):
            scores = rouge(answers[i], row["response"])
            routed = routing.routed_tasks[i] if routing.routed_tasks else None
            records.append({"client": client_name(c), "id": row["id"], "task": row["task"],
                            "adapter": routing.names[i], "routed_task": routed, "prediction": answers[i],
                            "reference": row["response"], **scores})
    by_client: dict[str, list[dict]] = {}
    by_task: dict[str, list[dict]] = {}
    for r in records:
        by_client.setdefault(r["client"], []).append(r)
        by_task.setdefault(r["task"], []).append(r)
    client_means = {c: {k: statistics.fmean(r[k] for r in rs) for k in ROUGE_KEYS} for c, rs in by_client.items()}
    routed = [r for r in records if r["routed_task"] is not None]
    summary = {k: round(statistics.fmean(m[k] for m in client_means.values()), 4) for k in ROUGE_KEYS}
    summary |= {
        "routing_accuracy": round(sum(r["routed_task"] == r["task"] for r in routed) / len(routed), 4) if routed else None,
        "samples": len(records),
        "per_task": {t: round(statistics.fmean(r["rouge1"] for r in rs), 4) for t, rs in sorted(by_task.items())},
        "per_client": {c: round(m["rouge1"], 4) for c, m in sorted(client_means.items())},
    }
    return pa.Table.from_pylist(records), summary
