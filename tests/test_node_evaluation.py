"""`evaluate --on nodes`: each node scores its own test set and returns only per-task sums and
counts; the server builds the same scores.json from them as when it holds every test row."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from test_baselines import BASELINES

from fedrouter_cli.config_file import build_config
from fedrouter_cli.metrics import ROUGE_KEYS
from fedrouter_cli.rundir import NodeDir, client_name
from fedrouter_cli.stages.evaluate import run_evaluate

# one pytest-xdist worker runs every test of the shared `smoke` fixture, so each method trains once
pytestmark = pytest.mark.xdist_group("smoke-methods")

CASES = [("base", "local"), *[(alg, "local") for alg in BASELINES], ("fedrouter", "local"), ("fedrouter", "global")]
COMPARED = (*ROUGE_KEYS, "routing_accuracy", "samples", "per_task", "per_client")


def _setup(smoke, alg: str, mode: str):
    trained = smoke("fedrouter" if alg == "base" else alg)
    config = trained["config"]
    # an explicit round gives these evaluations their own folders ('local@r2'), so the shared run's
    # default evaluations, which other tests read, stay as they are; one prompt per batch makes the
    # server's batches (all clients) and a node's (its own prompts) the same computation
    config = build_config(config, {"eval": {"mode": mode, "round": config.train.rounds, "generation": "per-sample"}})
    return trained["run"], config


@pytest.mark.parametrize(("alg", "mode"), CASES)
def test_nodes_score_what_the_server_scores(smoke, inprocess, alg: str, mode: str) -> None:
    run, config = _setup(smoke, alg, mode)
    on_server = run_evaluate(config, run, alg).summary
    on_nodes = run_evaluate(config, run, alg, on="nodes").summary
    assert on_nodes["on"] == "nodes" and on_nodes["missing_clients"] == {}
    assert on_nodes["predictions_path"] is None
    # the same sums in the same order on both sides: equal, not only close
    assert {k: on_nodes[k] for k in COMPARED} == {k: on_server[k] for k in COMPARED}
    if alg == "fedrouter":
        assert on_nodes["routing_accuracy"] is not None
    # each node keeps its own predictions, and they are the server's, row by row
    server_rows = pq.read_table(on_server["predictions_path"]).to_pylist()
    evaluation = f"{mode}+nodes@r{config.train.rounds}"
    for c in range(config.data.clients):
        node_rows = pq.read_table(NodeDir(run.client_dir(client_name(c))).evaluation_dir(alg, evaluation)
                                  / "predictions.parquet").to_pylist()
        assert node_rows == [r for r in server_rows if r["client"] == client_name(c)]


def test_nothing_but_numbers_and_task_names_leave_a_node(smoke, inprocess) -> None:
    run, config = _setup(smoke, "fedrouter", "local")
    run_evaluate(config, run, "fedrouter", on="nodes", force=True)
    tasks = set(run.require("partition")["summary"]["tasks"])
    texts: set[str] = set()
    for c in range(config.data.clients):
        for split in ("train", "test"):
            for row in pq.read_table(run.partition_file(client_name(c), split)).to_pylist():
                texts |= {row["instruction"], row["response"]}
        node = NodeDir(run.client_dir(client_name(c))).evaluation_dir("fedrouter", f"local+nodes@r{config.train.rounds}")
        texts |= {r["prediction"] for r in pq.read_table(node / "predictions.parquet").to_pylist()}
    texts = {t.strip() for t in texts if len(t.strip()) >= 8}
    from flwr.common.serde import message_to_proto

    replies = [reply for sent, reply in inprocess.calls if sent.metadata.message_type in ("evaluate", "query.tasks")]
    assert len(replies) == 2 * config.data.clients
    for reply in replies:
        assert not reply.has_error()
        assert set(reply.content.keys()) == {"tasks", "metrics"}
        assert not reply.content.array_records
        labels = reply.content.config_records["tasks"]
        assert set(labels.keys()) <= {"tasks", "local-tasks"}
        assert all(set(json.loads(str(v))) <= tasks for v in labels.values())  # task names, nothing else
        assert all(isinstance(v, (int, float)) or all(isinstance(x, (int, float)) for x in v)
                   for v in reply.content.metric_records["metrics"].values())
        wire = message_to_proto(reply).SerializeToString()
        assert not [t for t in texts if t.encode() in wire]


def test_a_failing_node_is_reported_missing_and_the_others_still_count(smoke, inprocess) -> None:
    run, config = _setup(smoke, "fedit", "local")
    inprocess.fail_on = {(1, "evaluate")}  # client 1 fails when asked to evaluate
    summary = run_evaluate(config, run, "fedit", on="nodes", force=True).summary
    assert list(summary["missing_clients"]) == ["c01"] and "injected failure" in summary["missing_clients"]["c01"]
    assert sorted(summary["per_client"]) == [client_name(c) for c in range(config.data.clients) if c != 1]
    assert summary["samples"] == (config.data.clients - 1) * config.data.test_per_client


def test_summary_from_sums_is_the_mean_of_client_means() -> None:
    """The figures a server builds from per-task sums are those of the per-sample scores."""
    import random
    import statistics

    from fedrouter_cli.evaluation import summarize, task_sums

    rng = random.Random(3)
    records = [{"client": f"c0{c}", "task": rng.choice("ab"), "routed_task": rng.choice(["a", "b", None]),
                **{k: rng.random() for k in ROUGE_KEYS}} for c in range(3) for _ in range(rng.randint(2, 9))]
    summary = summarize(task_sums(records))
    clients = sorted({r["client"] for r in records})
    for k in ROUGE_KEYS:
        means = [statistics.fmean(r[k] for r in records if r["client"] == c) for c in clients]
        assert summary[k] == round(statistics.fmean(means), 4)
    for task in "ab":
        assert summary["per_task"][task] == round(statistics.fmean(r["rouge1"] for r in records if r["task"] == task), 4)
    routed = [r for r in records if r["routed_task"] is not None]
    assert summary["routing_accuracy"] == round(sum(r["routed_task"] == r["task"] for r in routed) / len(routed), 4)
    assert summary["samples"] == len(records)
