"""Chaining stages like make: a stage first runs or reuses the stages it reads from."""

from __future__ import annotations

from fedrouter_cli.config import Config
from fedrouter_cli.rundir import RunDir
from fedrouter_cli.stages.cluster_local import run_cluster_local
from fedrouter_cli.stages.common import Progress, StageResult, no_progress
from fedrouter_cli.stages.embed import run_embed
from fedrouter_cli.stages.partition import run_partition

UPSTREAM = ("partition", "embed", "cluster-local")


def prepare(config: Config, run: RunDir, upto: str, force: bool = False,
            progress: Progress = no_progress) -> list[StageResult]:
    """Run (or reuse) the data stages up to and including `upto`; `force` reruns only `upto`."""
    steps = {
        "partition": lambda f: run_partition(config, run, f),
        "embed": lambda f: run_embed(config, run, f, progress),
        "cluster-local": lambda f: run_cluster_local(config, run, f),
    }
    results = []
    for stage in UPSTREAM[: UPSTREAM.index(upto) + 1]:
        results.append(steps[stage](force and stage == upto))
    return results
