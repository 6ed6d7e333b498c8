"""The ServerApp, the one module that defines it: `app`, which `flwr run` starts (the repository's
Flower App, a local simulation federation or the deployment engine), and `build_server_app`,
the same loop bound to one run for `fedrouter simulate` (Flower's public simulation API passes a
ServerApp no run config, so the simulate stage hands it the run directly). Both run
fedrouter_cli.federation.loop.run_rounds.

With `app`, stages simulate and evaluate run on whatever federation `flwr run` targets.

It reads its run directory from the run config, runs the same strategy on the SuperNodes
that connect to the SuperLink, and writes rounds, metrics and the simulate manifest into
<run-dir>/simulate/<alg>/ exactly as `fedrouter simulate` does. With `stage="evaluate"` (or
`evaluate=true` after training, in the same run) each SuperNode scores its own test set and the
server writes <run-dir>/evaluate/<alg>/<mode>+nodes/scores.json from their per-task sums; the
server needs no copy of the clients' test data. Run config keys: see
fedrouter_cli.deploy.RUN_CONFIG_DEFAULTS.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedrouter_cli.config_file import load_config
from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.federation.loop import run_rounds
from fedrouter_cli.federation.rounds import FederationJob
from fedrouter_cli.federation.strategies import STRATEGIES
from fedrouter_cli.federation.strategies.base import AdapterStrategy
from fedrouter_cli.rundir import RunDir

log = logging.getLogger(__name__)

app = ServerApp()


def _progress(label: str, done: int, total: int) -> None:
    log.info("fedrouter %s %d/%d", label, done, total)


STAGES = ("simulate", "evaluate")


@app.main()
def main(grid: Grid, context: Context) -> None:
    logging.getLogger("fedrouter_cli").setLevel(logging.INFO)
    rc = context.run_config
    run_dir = str(rc.get("run-dir", ""))
    if not run_dir or not Path(run_dir).is_absolute():
        raise FedrouterError(f"run config 'run-dir' must be an absolute path on the SuperLink machine, got {run_dir!r}.")
    stage = str(rc.get("stage", "simulate"))
    if stage not in STAGES:
        raise FedrouterError(f"run config 'stage' must be one of {', '.join(STAGES)}, got {stage!r}.")
    run = RunDir(Path(run_dir))
    config = load_config(run.config_path)
    if rc.get("alg"):
        config = replace(config, train=replace(config.train, alg=str(rc["alg"])))
    if stage == "simulate":
        _train(grid, rc, run, config)
    if stage == "evaluate" or bool(rc.get("evaluate", False)):
        _evaluate(grid, rc, run, config)


def _evaluate(grid: Grid, rc, run: RunDir, config) -> None:
    from fedrouter_cli.stages.evaluate import run_evaluate

    if rc.get("eval-mode"):
        config = replace(config, eval=replace(config.eval, mode=str(rc["eval-mode"])))
    alg = str(rc.get("eval-alg", "")) or config.train.alg
    result = run_evaluate(config, run, alg, force=bool(rc.get("force", False)), progress=_progress, on="nodes",
                          grid=grid)
    log.info("fedrouter evaluate %s on the nodes: %s", alg, result.to_json())


def _train(grid: Grid, rc, run: RunDir, config) -> None:
    from fedrouter_cli.data.prompts import check_prompt_format
    from fedrouter_cli.federation.run_output import finish, open_output
    from fedrouter_cli.federation.starting_point import starting_point
    from fedrouter_cli.fingerprints import simulate_fingerprint
    from fedrouter_cli.manifests import cache_hit
    from fedrouter_cli.model.lora import initial_adapter, peft_model

    alg = config.train.alg  # a known one: the config checks it
    fp = simulate_fingerprint(config)
    force = bool(rc.get("force", False))
    if hit := cache_hit(run, "simulate", fp, force, alg):
        log.warning("%s in %s already finished with these settings (%s rounds); pass -c force=true to redo it.",
                    alg, run.root, hit.summary.get("rounds_completed"))
        return
    started = time.perf_counter()
    clients = run.clients()
    num_nodes = int(rc.get("num-nodes", 0)) or len(clients)
    _, tokenizer = peft_model(config.model.model, config.train)  # load (and convert) the base model once, up front
    check_prompt_format(config.train.prompt_format, tokenizer, config.model.model)  # before anything is written
    start = starting_point(config, run, STRATEGIES[alg].global_router)
    out = open_output(run, alg, fp, force, clients)
    job = FederationJob(config=config, out=out, num_nodes=num_nodes,
                        initial_adapter=lambda seed: initial_adapter(config.model.model, config.train, seed),
                        progress=_progress, torch_threads=int(rc.get("torch-threads", 0)),
                        tasks=tuple(run.require("partition")["summary"]["tasks"]), start=start)
    log.info("waiting for %d SuperNodes", num_nodes)
    run_rounds(grid, job, STRATEGIES[alg], connect_timeout=float(rc.get("connect-timeout", 600.0)), every_node=True)
    result = finish(config, run, out, fp, started, STRATEGIES[alg])
    log.info("fedrouter %s finished: %s", alg, result.to_json())


def build_server_app(job: FederationJob, strategy_class: type[AdapterStrategy],
                     errors: list[BaseException]) -> ServerApp:
    """A ServerApp bound to one run, for `fedrouter simulate` on the simulation engine; exceptions
    land in `errors` for the caller to report."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            run_rounds(grid, job, strategy_class)
        except BaseException as exc:  # surfaced by the simulate stage, not lost in a thread
            errors.append(exc)
            raise

    return app
