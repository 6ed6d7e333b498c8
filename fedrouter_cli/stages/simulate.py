"""Stage `simulate`: run an algorithm on Flower's simulation engine, one virtual node per client."""

from __future__ import annotations

import time

from fedrouter_cli.config import Config
from fedrouter_cli.federation.engine import check_request
from fedrouter_cli.federation.rounds import FederationJob
from fedrouter_cli.federation.strategies import STRATEGIES
from fedrouter_cli.files import read_table
from fedrouter_cli.fingerprints import simulate_fingerprint
from fedrouter_cli.rundir import PARTITION_TEXT, RunDir
from fedrouter_cli.stages.common import (
    Progress,
    StageResult,
    cache_hit,
    no_progress,
    refuse_on_nodes,
)


def run_simulate(config: Config, run: RunDir, force: bool = False, progress: Progress = no_progress,
                 workers: int = 0, gpus_per_client: float = 0.0) -> StageResult:
    run.require("cluster-local")
    refuse_on_nodes(config, "a simulation")
    alg = config.train.alg
    placement = check_request(config, gpus_per_client)
    fp = simulate_fingerprint(config)
    if hit := cache_hit(run, "simulate", fp, force, alg):
        return hit
    from fedrouter_cli.data.prompts import check_prompt_format
    from fedrouter_cli.federation.engine import run_engine, simulation_resources
    from fedrouter_cli.federation.run_output import finish, open_output
    from fedrouter_cli.federation.starting_point import starting_point
    from fedrouter_cli.model.lora import initial_adapter, peft_model
    from fedrouter_cli.stages.server_app import build_server_app

    started = time.perf_counter()
    clients = run.clients()
    for client in clients:  # a corrupt partition file fails here, in one sentence, before anything is written
        read_table(run.partition_file(client, "train"), PARTITION_TEXT)
    # the server's copy (initial adapters) stays on the CPU in fp32; loading it first also converts
    # the default model before the workers start
    model, tokenizer = peft_model(config.model.model, config.train)
    check_prompt_format(config.train.prompt_format, tokenizer, config.model.model)  # before anything is written
    start = starting_point(config, run, STRATEGIES[alg].global_router)
    out = open_output(run, alg, fp, force, clients)
    run.fill_nodes(clients)
    workers, threads, backend_config = simulation_resources(placement, len(clients), model, config, workers,
                                                            gpus_per_client)
    job = FederationJob(config=config, out=out, num_nodes=len(clients),
                        initial_adapter=lambda seed: initial_adapter(config.model.model, config.train, seed),
                        progress=progress, torch_threads=threads,
                        tasks=tuple(run.require("partition")["summary"]["tasks"]), start=start)
    errors: list[BaseException] = []
    run_engine(build_server_app(job, STRATEGIES[alg], errors), run.nodes_root, len(clients), backend_config, errors)
    return finish(config, run, out, fp, started, STRATEGIES[alg],
                  {**placement.describe(), "parallel_clients": workers,
                   "gpus_per_client": backend_config["client_resources"]["num_gpus"]})


