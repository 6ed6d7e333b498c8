"""`evaluate --on nodes`: each node scores its own test set; the server only adds up sums.

On Flower's simulation engine the stage first gives each client's node folder its test rows and
embeddings (in a simulation the run dir holds them all); in a deployment each machine's folder
already has them (`fedrouter deploy prepare-node`), and the deployment ServerApp passes its grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedrouter_cli.config import Config
from fedrouter_cli.errors import FederationStopped
from fedrouter_cli.evaluation import BASE_ALG, summarize
from fedrouter_cli.federation.evaluate_round import (
    EvalPlan,
    NodeEvaluation,
    build_evaluate_app,
    evaluate_on_nodes,
)
from fedrouter_cli.rundir import NODE_PREDICTIONS, NodeDir, RunDir, client_name
from fedrouter_cli.stages.common import Progress


def _simulated(config: Config, run: RunDir, plan: EvalPlan) -> NodeEvaluation:
    from fedrouter_cli.federation.engine import (
        check_request,
        run_engine,
        simulation_resources,
    )
    from fedrouter_cli.model.lora import peft_model

    placement = check_request(config)
    run.fill_nodes([client_name(c) for c in range(plan.clients)], (plan.split,))  # their test rows too
    model, _ = peft_model(config.model.model, config.train)  # converts the default model before the workers start
    _, threads, backend_config = simulation_resources(placement, plan.clients, model, config)
    plan.torch_threads = threads
    outcome: list[NodeEvaluation] = []
    errors: list[BaseException] = []
    run_engine(build_evaluate_app(plan, outcome, errors), run.nodes_root, plan.clients, backend_config, errors)
    return outcome[0]


def evaluate_on_nodes_stage(config: Config, run: RunDir, alg: str, round_number: int, evaluation: str, clients: int,
                            progress: Progress, grid=None) -> dict[str, Any]:
    plan = EvalPlan(config=config, alg=alg, evaluation=evaluation, split=config.data.test_split,
                    round_dir=None if alg == BASE_ALG else run.round_dir(alg, round_number), clients=clients,
                    timeout=config.train.round_timeout, progress=progress)
    outcome = evaluate_on_nodes(grid, plan) if grid is not None else _simulated(config, run, plan)
    if not outcome.sums:
        reasons = "; ".join(f"{c}: {why}" for c, why in sorted(outcome.missing.items()))
        raise FederationStopped(f"no node returned scores ({reasons})")
    summary = summarize(outcome.sums)
    summary |= {"missing_clients": dict(sorted(outcome.missing.items())),
                "bytes_down": outcome.bytes_down,
                "predictions_path": None,  # they stay on the nodes, each in its own folder:
                "node_predictions": str(NodeDir(Path("<node folder>")).evaluation_dir(alg, evaluation) / NODE_PREDICTIONS)}
    return summary
