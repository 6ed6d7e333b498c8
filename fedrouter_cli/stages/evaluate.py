"""Stage `evaluate`: route each test sample to an adapter, generate greedily, score ROUGE."""

from __future__ import annotations

import time
from dataclasses import asdict

import pyarrow as pa

from fedrouter_cli.config import Config
from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.evaluation import (
    BASE_ALG,
    ClientTest,
    RoundInputs,
    generate_all,
    route,
    score_records,
    summarize,
    task_sums,
)
from fedrouter_cli.federation.run_output import pick_round
from fedrouter_cli.federation.strategies import STRATEGIES
from fedrouter_cli.files import read_json, read_table, write_json, write_table
from fedrouter_cli.fingerprints import (
    embed_fingerprint,
    evaluate_fingerprint,
    simulate_fingerprint,
)
from fedrouter_cli.generation_cache import GenerationCache
from fedrouter_cli.model.device import resolve_device
from fedrouter_cli.rundir import PARTITION_TEXT, RunDir, client_name
from fedrouter_cli.stages.cluster_local import read_centroids
from fedrouter_cli.stages.common import (
    Progress,
    StageResult,
    cache_hit,
    manifest,
    no_progress,
    refuse_on_nodes,
    staged_outputs,
)
from fedrouter_cli.vectors import read_embeddings


def _client_test(run: RunDir, config: Config, client: int) -> ClientTest:
    name = client_name(client)
    rows = read_table(run.partition_file(name, config.data.test_split), PARTITION_TEXT)
    ids, vectors = read_embeddings(run.embedding_file(name, config.data.test_split))
    if ids != rows.column("id").to_pylist():
        raise FedrouterError(f"Test embeddings of {name} do not match its test rows; rerun `fedrouter embed --force`.")
    train_rows = read_table(run.partition_file(name, "train"), PARTITION_TEXT)
    centroids, _, tasks = read_centroids(run.centroids_file(name))
    return ClientTest(client=client, rows=rows, embeddings=vectors,
                      train_embeddings=read_embeddings(run.embedding_file(name, "train"))[1],
                      train_instructions=train_rows.column("instruction").to_pylist(),
                      local_centroids=centroids, local_tasks=tasks, node_dir=run.client_dir(name))


def _round_inputs(run: RunDir, alg: str, round_number: int, tests: list[ClientTest]) -> RoundInputs:
    if alg == BASE_ALG:
        return RoundInputs()
    out = run.federation(alg)
    state = read_json(out.state_file(round_number))
    global_tasks = STRATEGIES[alg].adapter_tasks(state, {t.client: t.local_tasks for t in tests})
    return RoundInputs(state, out.adapters_dir(round_number), global_tasks)


def evaluation_name(mode: str, test_tasks: str, explicit_round: int = 0, on: str = "server") -> str:
    """Folder name of one evaluation, so the generalization test set, per-round evaluations and
    evaluations on the nodes never overwrite the default one: 'local', 'global+all-tasks',
    'local@r3', 'local+nodes'."""
    name = mode if test_tasks == "scenario" else f"{mode}+all-tasks"
    name = f"{name}+nodes" if on == "nodes" else name
    return f"{name}@r{explicit_round}" if explicit_round else name


EVALUATE_ON = ("server", "nodes")


def run_evaluate(config: Config, run: RunDir, alg: str | None = None, force: bool = False,
                 progress: Progress = no_progress, on: str = "server", grid=None) -> StageResult:
    """Score `alg` on the clients' test sets. on='server': this machine holds every client's test
    rows (a simulation). on='nodes': each node scores its own test set and returns per-task sums;
    on Flower's simulation engine, or through `grid` when a deployment's ServerApp calls it."""
    alg = alg or config.train.alg
    if alg != BASE_ALG and alg not in STRATEGIES:
        raise FedrouterError(f"Unknown algorithm {alg!r}; choose one of {', '.join([BASE_ALG, *STRATEGIES])}.")
    if on not in EVALUATE_ON:
        raise FedrouterError(f"--on must be one of {', '.join(EVALUATE_ON)}, got {on!r}.")
    run.require("partition")
    if grid is None:  # a deployment's ServerApp passes its grid; everything else runs on this machine
        refuse_on_nodes(config, "evaluate" if on == "nodes" else "evaluate --on server")
    if config.data.on_nodes and config.data.test_tasks == "all":
        raise FedrouterError("--test-tasks all scores each client on every client's test rows, and nodes that "
                             "bring their own data hold only their own; use --test-tasks scenario.")
    if on == "server":
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
    fp = evaluate_fingerprint(config, alg, round_number, on)
    sub = (alg, evaluation_name(config.eval.mode, config.data.test_tasks, config.eval.round, on))
    if hit := cache_hit(run, "evaluate", fp, force, *sub):
        return hit
    started = time.perf_counter()
    clients = len(run.clients())
    if on == "server":
        tests = [_client_test(run, config, c) for c in range(clients)]
        inputs = _round_inputs(run, alg, round_number, tests)
        routings = [route(config, alg, test, inputs) for test in tests]
        cache = GenerationCache(run.generation_cache)
        predictions, seconds_generating, generated = generate_all(config, tests, routings, progress, cache, reuse=not force)
        records = score_records(tests, routings, predictions, config.eval.rouge_stemming)
        summary = summarize(task_sums(records))
        # samples_per_second: of the samples generated here (the rest were known by content)
        summary |= {"generation_seconds": round(seconds_generating, 3), "generated": generated,
                    "samples_per_second": round(generated / seconds_generating, 3) if generated else None,
                    "predictions_path": str(run.predictions_file(*sub))}
    else:
        from fedrouter_cli.stages.evaluate_nodes import evaluate_on_nodes_stage

        records = None
        summary = evaluate_on_nodes_stage(config, run, alg, round_number, sub[1], clients, progress, grid)
    with staged_outputs(run, "evaluate", *sub) as at:
        if records is not None:
            write_table(at(run.predictions_file(*sub)), pa.Table.from_pylist(records))
        seconds = time.perf_counter() - started
        summary |= {"alg": alg, "mode": config.eval.mode, "round": round_number, "on": on,
                    "test_tasks": config.data.test_tasks, "seconds": round(seconds, 3),
                    **resolve_device(config.model.device).describe()}
        write_json(at(run.scores_file(*sub)), summary)
        write_json(at(run.manifest_path("evaluate", *sub)),
                   manifest("evaluate", fp, asdict(config.eval), {}, seconds, summary, []))
    return StageResult("evaluate", False, seconds, summary)
