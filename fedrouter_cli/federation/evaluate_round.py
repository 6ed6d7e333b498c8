"""The server's side of an evaluation on the nodes: one query round and one evaluate round.

The query learns which node is which client and the majority task of each of its local clusters;
the evaluate round sends each node the settings, the round's router state and the adapters its
algorithm's inference rule needs, and collects per-task sums. A node that fails or does not answer
is reported as missing, with the reason; the others' scores still come back.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from fedrouter_cli.config import Config
from fedrouter_cli.evaluation import BASE_ALG
from fedrouter_cli.federation.eval_wire import EvalRequest, sums_from_content
from fedrouter_cli.federation.rounds import error_summary
from fedrouter_cli.federation.strategies import STRATEGIES
from fedrouter_cli.model.lora import load_adapter
from fedrouter_cli.rundir import ROUND_ADAPTERS, ROUND_STATE, client_name

log = logging.getLogger(__name__)


@dataclass
class NodeEvaluation:
    """What came back: per client and task, the sums and counts; and who is missing, and why."""

    sums: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    bytes_down: int = 0


@dataclass
class EvalPlan:
    """What the server asks for: the evaluated round (folder with state.json and adapters/, or
    None for the base model), and the clients expected."""

    config: Config
    alg: str
    evaluation: str
    split: str
    round_dir: Path | None
    clients: int
    torch_threads: int = 0
    timeout: float = 3600.0
    progress: Callable[[str, int, int], None] = lambda label, done, total: None


def _wait_for_nodes(grid: Grid, count: int, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(nodes := sorted(grid.get_node_ids())) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return nodes


def evaluate_on_nodes(grid: Grid, plan: EvalPlan) -> NodeEvaluation:
    result = NodeEvaluation()
    nodes = _wait_for_nodes(grid, plan.clients, min(plan.timeout, 600.0))
    query = [Message(content=RecordDict({"config": ConfigRecord({"round": 0})}), dst_node_id=n,
                     message_type="query.tasks") for n in nodes]
    node_client: dict[int, int] = {}
    local_tasks: dict[int, list[str]] = {}
    for reply in grid.send_and_receive(query, timeout=plan.timeout):
        if reply.has_error():
            log.warning("node %s did not say who it is: %s", reply.metadata.src_node_id,
                        error_summary(reply.error.reason))
            continue
        client = int(reply.content["metrics"]["client"])
        node_client[reply.metadata.src_node_id] = client
        local_tasks[client] = json.loads(str(reply.content["tasks"]["local-tasks"]))
    state, global_tasks = {}, {}
    if plan.alg != BASE_ALG and plan.round_dir is not None:
        state = json.loads((plan.round_dir / ROUND_STATE).read_text())
        global_tasks = STRATEGIES[plan.alg].adapter_tasks(state, local_tasks) if len(local_tasks) == plan.clients else {}
    base = EvalRequest(config=plan.config, alg=plan.alg, evaluation=plan.evaluation, split=plan.split, state=state,
                       global_tasks=global_tasks, torch_threads=plan.torch_threads)
    messages = []
    for node, client in sorted(node_client.items(), key=lambda item: item[1]):
        names = [] if plan.alg == BASE_ALG else STRATEGIES[plan.alg].evaluation_adapters(state, client,
                                                                                       plan.config.eval.mode)
        adapters = {name: load_adapter(plan.round_dir / ROUND_ADAPTERS / name) for name in names}
        result.bytes_down += sum(int(v.nbytes) for a in adapters.values() for v in a.values())
        messages.append(Message(content=replace(base, adapters=adapters).to_content(), dst_node_id=node,
                                message_type="evaluate"))
    plan.progress("evaluate on nodes", 0, len(messages))
    answered: set[int] = set()
    for reply in grid.send_and_receive(messages, timeout=plan.timeout):
        node = reply.metadata.src_node_id
        answered.add(node)
        client = node_client.get(node, -1)
        if reply.has_error():
            reason = error_summary(reply.error.reason)
            log.warning("client %s failed to evaluate: %s", client, reason)
            result.missing[client_name(client)] = reason
            continue
        client, sums = sums_from_content(reply.content)
        result.sums[client_name(client)] = sums
        plan.progress("evaluate on nodes", len(answered), len(messages))
    for node, client in node_client.items():
        if node not in answered:
            result.missing[client_name(client)] = f"no reply within {plan.timeout:.0f} s"
    for client in set(range(plan.clients)) - set(node_client.values()):
        result.missing.setdefault(client_name(client), "its node did not connect or did not say who it is")
    return result


def build_evaluate_app(plan: EvalPlan, outcome: list[NodeEvaluation], errors: list[BaseException]):
    """A ServerApp for the simulation engine that runs one evaluation on the nodes; its result
    lands in `outcome` and exceptions in `errors`, for the caller to report."""
    from flwr.app import Context
    from flwr.serverapp import ServerApp

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            outcome.append(evaluate_on_nodes(grid, plan))
        except BaseException as exc:  # surfaced by the evaluate stage, not lost in a thread
            errors.append(exc)
            raise

    return app
