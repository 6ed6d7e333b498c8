"""Stage `partition`: split the source's task rows over clients and write one Parquet per client and split."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict

import pyarrow as pa

from fedrouter_cli.config import Config
from fedrouter_cli.data import sources
from fedrouter_cli.data.partition import (
    client_tasks,
    draw_split,
    drop_overlap,
    shares,
    skewed_sizes,
)
from fedrouter_cli.data.sources import Row
from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.files import write_json, write_table
from fedrouter_cli.fingerprints import partition_fingerprint
from fedrouter_cli.rundir import RunDir, client_name
from fedrouter_cli.stages.common import (
    Progress,
    StageResult,
    cache_hit,
    manifest,
    no_progress,
    record_on_nodes,
    staged_outputs,
)


def rows_table(rows: list[Row]) -> pa.Table:
    return pa.table({
        "id": [r.id for r in rows],
        "task": [r.task for r in rows],
        "category": [r.category for r in rows],
        "instruction": [r.instruction for r in rows],
        "response": [r.response for r in rows],
    })


def run_partition(config: Config, run: RunDir, force: bool = False, progress: Progress = no_progress) -> StageResult:
    fp, tasks = partition_fingerprint(config)
    if hit := cache_hit(run, "partition", fp, force):
        return hit
    started = time.perf_counter()
    data = config.data
    if data.on_nodes:
        return record_on_nodes(run, "partition", fp, asdict(data), {
            "tasks": [], "scenario": data.scenario, "clients": [{"client": client_name(i)} for i in range(data.clients)]})
    progress("partition", 0, data.clients)
    if data.own_records:
        draws, warnings, values = _own_records(config)
        tasks = tuple(sorted({r.task for rows in draws["train"] for r in rows} - {""}))
        return _write(config, run, fp, tasks, draws, warnings, started, progress, values)
    held = [client_tasks(data.scenario, tasks, data.clients, i) for i in range(data.clients)]
    sizes = ([data.train_per_client] * data.clients if not data.quantity_skew else
             skewed_sizes(data.train_per_client * data.clients, data.clients, data.quantity_skew, data.seed,
                          config.train.batch_size))
    wants = {
        "train": [shares(size, h) for size, h in zip(sizes, held)],
        "test": [shares(data.test_per_client, h) for h in held],
        "test_all": [shares(data.test_per_client, tasks) for _ in held],
    }
    demand = {split: Counter() for split in wants}
    for split, per_client in wants.items():
        for want in per_client:
            demand[split].update(want)
    test_demand = {t: max(demand["test"][t], demand["test_all"][t]) for t in tasks}
    test_pools = {t: sources.load_rows(data.source, t, "test", test_demand[t], data.seed) for t in tasks}
    loaded = {t: sources.load_rows(data.source, t, "train", demand["train"][t], data.seed) for t in tasks}
    train_pools = {t: drop_overlap(loaded[t], test_pools[t]) for t in tasks}
    overlap = [f"train: task {t}: dropped {len(loaded[t]) - len(train_pools[t])} of its {len(loaded[t])} train rows "
               "that also appear in its test split (same id, or same instruction and response)"
               for t in tasks if len(train_pools[t]) < len(loaded[t])]
    empty = [t for t, rows in train_pools.items() if not rows and demand["train"][t]]
    if empty:
        raise FedrouterError(f"Task(s) {', '.join(empty)} have no train rows left once test rows are excluded; "
                             "check the source's train.jsonl files.")
    drawn = {
        "train": draw_split(train_pools, wants["train"], data.seed, "train"),
        "test": draw_split(test_pools, wants["test"], data.seed, "test"),
        "test_all": draw_split(test_pools, wants["test_all"], data.seed, "test_all"),
    }
    warnings = overlap + [w for split in ("train", "test", "test_all") for w in drawn[split].warnings]
    draws = {split: d.rows for split, d in drawn.items()}
    return _write(config, run, fp, tasks, draws, warnings, started, progress)


def _own_records(config: Config) -> tuple[dict[str, list[list[Row]]], list[str], list[str]]:
    """One's own records split by the client column: the splits, warnings and each client's value."""
    from fedrouter_cli.data.own_records import split_by_client
    from fedrouter_cli.data.records import read_records

    data = config.data
    split = split_by_client(read_records(data.source, data.columns()), data.client_column, data.clients,
                            data.train_per_client, data.test_per_client, data.test_fraction, data.seed)
    return {"train": split.train, "test": split.test, "test_all": split.test_all}, split.warnings, split.values


def _write(config: Config, run: RunDir, fp: str, tasks: tuple[str, ...], draws: dict[str, list[list[Row]]],
           warnings: list[str], started: float, progress: Progress, values: list[str] | None = None) -> StageResult:
    """Write each client's splits and the manifest (last)."""
    data = config.data
    clients = []
    with staged_outputs(run, "partition") as at:
        for i in range(data.clients):
            name = client_name(i)
            for split, rows in draws.items():
                write_table(at(run.partition_file(name, split)), rows_table(rows[i]))
            clients.append({
                "client": name,
                **({data.client_column: values[i]} if values else {}),
                "train": dict(Counter(r.task for r in draws["train"][i])),
                "test": dict(Counter(r.task for r in draws["test"][i])),
                "test_all": dict(Counter(r.task for r in draws["test_all"][i])),
            })
            progress("partition", i + 1, data.clients)
        summary = {"tasks": list(tasks), "scenario": data.scenario, "clients": clients,
                   "partition_dir": str(run.stage_dir("partition"))}
        seconds = time.perf_counter() - started
        write_json(at(run.manifest_path("partition")),
                   manifest("partition", fp, asdict(data), {}, seconds, summary, warnings))
    return StageResult("partition", False, seconds, summary, warnings)
