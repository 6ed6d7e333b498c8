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
        "partition": lambda f: run_partition(config, run, f, progress),
        "embed": lambda f: run_embed(config, run, f, progress),
        "cluster-local": lambda f: run_cluster_local(config, run, f, progress),
    }
    results = []
    for stage in UPSTREAM[: UPSTREAM.index(upto) + 1]:
        results.append(steps[stage](force and stage == upto))
    return results


def run_all(config: Config, run: RunDir, progress: Progress = no_progress,
            algs: tuple[str, ...] = ("fedrouter",), force: bool = False, trackers: tuple[str, ...] = ()) -> dict:
    """The whole pipeline: data stages, silhouette curves, federation, evaluation (+ base model
    row); `force` reruns every stage; `trackers` (fedrouter_cli.tracking) get each simulate's
    metrics and each evaluation's scores."""
    from dataclasses import replace

    from fedrouter_cli.federation.strategies import STRATEGIES
    from fedrouter_cli.stages.evaluate import BASE_ALG, run_evaluate
    from fedrouter_cli.stages.select_k import run_select_k
    from fedrouter_cli.stages.simulate import run_simulate
    from fedrouter_cli.tracking import track_scores, track_training

    stages = [prepare(config, run, stage, force, progress)[-1] for stage in UPSTREAM] if force \
        else prepare(config, run, "cluster-local", progress=progress)
    report: dict = {name.replace("-", "_"): r.to_json() for name, r in zip(UPSTREAM, stages)}
    report["select_k"] = {level: run_select_k(config, run, level, force, progress).to_json()
                        for level in ("local", "global")}
    report["simulate"], report["evaluate"], report["tracking"] = {}, {}, {}
    for alg in algs:
        cfg = replace(config, train=replace(config.train, alg=alg))
        report["simulate"][alg] = run_simulate(cfg, run, force=force, progress=progress).to_json()
        report["tracking"][alg] = track_training(trackers, run, cfg)
        for mode in STRATEGIES[alg].evaluation_modes:
            cfg_mode = replace(cfg, eval=replace(cfg.eval, mode=mode))
            scores = report["evaluate"][f"{alg}/{mode}"] = run_evaluate(cfg_mode, run, alg, force, progress).to_json()
            report["tracking"][f"{alg}/{mode}"] = track_scores(trackers, run, cfg_mode, scores)
    report["evaluate"][f"{BASE_ALG}/local"] = run_evaluate(config, run, BASE_ALG, force, progress).to_json()
    return report
