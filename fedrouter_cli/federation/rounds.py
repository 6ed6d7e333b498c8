"""The rounds on Flower: one `Strategy` for every algorithm, around the algorithm's rule.

An algorithm's rule (fedrouter_cli.federation.strategies) only decides: which jobs each node
trains in a round (`plan`) and how the replies combine (`combine`). This class does the rest, the
same for all of them: it finds the nodes and their client indices and centroids, turns plans
into train messages and replies into results, writes each round's checkpoint (PEFT adapters,
state.json, the metrics table) and resumes from the last one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedrouter_cli.config import Config
from fedrouter_cli.errors import FederationStopped
from fedrouter_cli.federation.run_output import SAT_OUT, failed, load_round, save_round
from fedrouter_cli.federation.starting_point import StartingPoint
from fedrouter_cli.federation.strategies.base import (
    AdapterStrategy,
    Job,
    JobResult,
    lr_at,
    sampled_clients,
)
from fedrouter_cli.federation.train_wire import JobSpec, RoundSettings, TrainRequest
from fedrouter_cli.federation.wire import from_record, nbytes
from fedrouter_cli.files import write_json
from fedrouter_cli.model.lora import Adapter
from fedrouter_cli.rundir import FederationDir

log = logging.getLogger(__name__)


def error_summary(reason: str) -> str:
    """The line of a client's error that says what went wrong: Flower passes on the whole remote
    traceback (under Ray, wrapped in its exception's repr), whose last line is the message."""
    lines = [line.strip(" '\">") for line in reason.splitlines() if line.strip(" '\">")]
    return (lines[-1] if lines else reason)[:300]


@dataclass
class FederationJob:
    """Everything the server side needs for one simulate run."""

    config: Config
    out: FederationDir
    num_nodes: int
    initial_adapter: Callable[[int], Adapter]
    progress: Callable[[str, int, int], None] = lambda label, done, total: None
    torch_threads: int = 0
    tasks: tuple[str, ...] = ()   # the federation's tasks (partition stage), for '--global-clusters tasks'
    start: StartingPoint | None = None  # --init-from: the adapters the first round starts from


class FlowerRounds(Strategy):
    """Flower's Strategy for any algorithm: `rule` decides, this class talks to the nodes and keeps
    the checkpoints."""

    def __init__(self, rule: AdapterStrategy, job: FederationJob) -> None:
        self.rule = rule
        self.job = job
        self.config = job.config
        self.train = job.config.train
        self.name = rule.name
        self.node_client: dict[int, int] = {}          # Flower node id -> client index
        self.completed = 0
        # adapter (aggregation tag) -> the largest new-token budget its trainers reported
        self.token_budgets: dict[str, int] = {}
        self._sent_bytes: dict[int, int] = {}
        self._plans: dict[int, list[Job]] = {}
        self._silent: set[int] = set()  # nodes that never introduced themselves
        self._sat_out: list[int] = []   # clients not sampled this round
        self.sampling = bool(self.train.clients_per_round or self.train.fraction_train)

    # -- setup: who is there, and their centroids ----------------------------------------
    def connect(self, grid: Grid, timeout: float = 600.0) -> None:
        """Wait for the nodes, ask each for its local centroids and learn its client index."""
        deadline = time.monotonic() + timeout
        while len(nodes := sorted(grid.get_node_ids())) < self.job.num_nodes:
            if time.monotonic() > deadline:
                raise FederationStopped(f"only {len(nodes)} of {self.job.num_nodes} nodes connected "
                                        f"within {timeout:.0f} s")
            time.sleep(0.2)
        self._introduce(grid, nodes, timeout)
        if not self.node_client:
            # without this a run whose every client is down would "complete" its rounds untrained
            raise FederationStopped(f"none of the {len(nodes)} nodes answered the centroid query")

    def _introduce(self, grid: Grid, nodes: list[int], timeout: float) -> None:
        """Ask nodes who they are (their client index) and for their local centroids."""
        privacy = self.config.privacy
        config = ConfigRecord({"round": 0, "seed": self.train.seed, "centroid-epsilon": privacy.centroid_epsilon,
                               "dp-delta": privacy.dp_delta})
        query = [Message(content=RecordDict({"config": config}), dst_node_id=node, message_type="query.centroids")
                 for node in nodes]
        answered = set()
        for reply in grid.send_and_receive(query, timeout=timeout):
            answered.add(reply.metadata.src_node_id)
            if reply.has_error():
                log.warning("node %s did not send centroids: %s", reply.metadata.src_node_id, reply.error.reason)
                self._silent.add(reply.metadata.src_node_id)
                continue
            client = int(reply.content["metrics"]["client"])
            for old in [n for n, c in self.node_client.items() if c == client]:
                del self.node_client[old]  # a restarted SuperNode returns under a new node id
            self.node_client[reply.metadata.src_node_id] = client
            sent = reply.content["centroids"]
            self.rule.local_centroids.setdefault(client, sent["centroids"].numpy())
            if "sizes" in sent:
                self.rule.local_sizes.setdefault(client, sent["sizes"].numpy())
        self._silent |= set(nodes) - answered  # not asked again: a dead node must not cost every round a wait

    def refresh_nodes(self, grid: Grid) -> None:
        """Before a round: introduce nodes that joined since (a SuperNode restarted after a crash),
        so its client takes part again; a node that vanished simply misses its replies."""
        new = sorted(set(grid.get_node_ids()) - set(self.node_client) - self._silent)
        if new:
            log.info("%d node(s) joined; asking who they are", len(new))
            self._introduce(grid, new, timeout=min(120.0, self.train.round_timeout))

    def restore_or_initialize(self) -> None:
        last = self.last_completed_round()
        if last == 0:
            self.rule.initialize()
            if self.job.start is not None:
                mapping = self.rule.warm_start(self.job.start)
                write_json(self.job.out.starting_point_file, self.job.start.describe(mapping))
                log.info("starting from %s (round %d): %s", self.job.start.source, self.job.start.round, mapping)
            return
        state, self.rule.adapters = load_round(self.job.out, last)
        self.rule.load_extra_state(state.get("extra", {}))
        self.rule.turns = {int(c): int(n) for c, n in state.get("turns", {}).items()}
        self.token_budgets = dict(state.get("token_budgets", {}))
        self.completed = last

    # -- Flower Strategy API -------------------------------------------------------------
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        round_number = self.completed + server_round
        self.refresh_nodes(grid)
        messages = []
        self._plans, self._sent_bytes = {}, {}
        chosen = set(sampled_clients(self.train, sorted(set(self.node_client.values())), round_number))
        self._sat_out = sorted(set(self.node_client.values()) - chosen)
        for node, client in sorted(self.node_client.items(), key=lambda item: item[1]):
            if client not in chosen:
                continue
            # without sampling a client's turns are the rounds (also for runs saved before sampling)
            self.rule.turns[client] = self.rule.turns.get(client, 0 if self.sampling else round_number - 1) + 1
            jobs = self.rule.plan(round_number, client)
            if not jobs:
                continue
            self._plans[node] = jobs
            content = self.train_request(round_number, jobs).to_content()
            self._sent_bytes[node] = sum(nbytes(job.adapter) for job in jobs)
            messages.append(Message(content=content, dst_node_id=node, message_type="train"))
        self.job.progress("round", round_number - 1, self.train.rounds)
        return messages

    def train_request(self, round_number: int, jobs: list[Job]) -> TrainRequest:
        t, privacy = self.train, self.config.privacy
        settings = RoundSettings(
            round=round_number, alg=self.name, model=self.config.model.model, lr=lr_at(t, round_number),
            local_steps=t.local_steps, batch_size=t.batch_size, max_length=t.max_length, seed=t.seed,
            lora_r=t.lora_r, lora_alpha=t.lora_alpha, lora_dropout=t.lora_dropout,
            target_modules=tuple(t.target_modules), torch_threads=self.job.torch_threads,
            # each node places the model on its own machine: 'auto' takes its GPU when it has one
            device=self.config.model.device, load_in_4bit=self.config.model.load_in_4bit,
            dp_epsilon=privacy.dp_epsilon, dp_clip=privacy.dp_clip, dp_delta=privacy.dp_delta,
            group_by_length=t.group_by_length, max_grad_norm=t.max_grad_norm, prompt_format=t.prompt_format)
        specs = [JobSpec(name=j.name, clusters=tuple(j.clusters), trainable=j.trainable, send=j.send, keep=j.keep,
                         companion=j.companion, scale=j.scale, companion_scale=j.companion_scale) for j in jobs]
        return TrainRequest(settings, specs, [j.adapter for j in jobs])

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        round_number = self.completed + server_round
        results: list[JobResult] = []
        rows: list[dict[str, Any]] = []
        answered = set()
        for reply in replies:
            node = reply.metadata.src_node_id
            answered.add(node)
            client = self.node_client.get(node, -1)
            if reply.has_error():
                log.warning("client %s failed in round %s: %s", client, round_number, error_summary(reply.error.reason))
                rows.append(self._row(round_number, client, None, None, "failed", 0, self._sent_bytes.get(node, 0)))
                continue
            metrics = reply.content["metrics"]
            for i, job in enumerate(self._plans[node]):
                key = f"adapter-{i}"
                adapter = from_record(reply.content[key]) if key in reply.content else {}
                result = JobResult(client, job, adapter, int(metrics["samples"][i]), float(metrics["loss"][i]),
                                   float(metrics["first-loss"][i]), float(metrics["last-loss"][i]),
                                   float(metrics["train-seconds"][i]), float(metrics.get("peak-rss-mb", 0.0)),
                                   int(metrics["token-budget"][i]) if "token-budget" in metrics else 0)
                results.append(result)
                rows.append(self._row(round_number, client, job, result, "ok", nbytes(adapter),
                                      nbytes(job.adapter)))
        rows += [self._row(round_number, client, None, None, SAT_OUT, 0, 0) for client in self._sat_out]
        for node in set(self._plans) - answered:
            client = self.node_client[node]
            log.warning("client %s sent no reply in round %s (timeout)", client, round_number)
            rows.append(self._row(round_number, client, None, None, "missing", 0, self._sent_bytes.get(node, 0)))
        if not results:
            # a round nobody trained in must not count as done: resuming would skip it for good
            raise FederationStopped(f"round {round_number}: no client returned a trained adapter "
                                    f"({len(rows)} failed or missing); the round was not saved")
        # replies arrive in whatever order parallel workers finish; aggregate in client order so
        # that float sums, and so the run, do not depend on timing
        results.sort(key=lambda r: (r.client, r.job.name))
        rows.sort(key=lambda r: (r["client"], r["job"]))
        self.rule.combine(round_number, results)
        for result in results:
            if result.token_budget:
                tag = result.job.tag
                self.token_budgets[tag] = max(self.token_budgets.get(tag, 0), result.token_budget)
        self.checkpoint(round_number, rows)
        self.job.progress("round", round_number, self.train.rounds)
        return None, MetricRecord({
            "jobs": len(results), "failed": sum(failed(r["status"]) for r in rows),
            "loss": float(np.mean([r.loss for r in results])) if results else 0.0,
        })

    def _row(self, round_number: int, client: int, job: Job | None, result: JobResult | None, status: str,
             bytes_up: int, bytes_down: int) -> dict[str, Any]:
        return {
            "round": round_number, "client": client, "job": job.name if job else "", "tag": job.tag if job else "",
            "status": status, "samples": result.samples if result else 0,
            # what the adapter was trained with this round: optimizer steps and learning rate
            "steps": self.train.local_steps if result else 0,
            "lr": lr_at(self.train, round_number) if job else float("nan"),
            "loss": result.loss if result else float("nan"),
            "first_loss": result.first_loss if result else float("nan"),
            "last_loss": result.last_loss if result else float("nan"),
            "train_seconds": result.seconds if result else 0.0,
            "client_peak_rss_mb": result.peak_rss_mb if result else float("nan"),
            "bytes_up": bytes_up, "bytes_down": bytes_down,
        }

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return []  # evaluation is its own stage (`fedrouter evaluate`)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return None

    def summary(self) -> None:
        log.info("%s: %d rounds, %d local steps, batch %d", self.name, self.train.rounds,
                 self.train.local_steps, self.train.batch_size)

    # -- checkpoints -----------------------------------------------------------------------
    def last_completed_round(self) -> int:
        done = self.job.out.saved_rounds()
        return done[-1] if done else 0

    def checkpoint(self, round_number: int, rows: list[dict[str, Any]]) -> None:
        """Save adapters, state and metrics of a round; the round counts once its folder is in place."""
        save_round(self.job.out, round_number, self.name, self.rule.adapters, self.rule.extra_state(), rows, self.train,
                   self.config.model.model, self.token_budgets, self.rule.turns if self.sampling else None)
