"""What every adapter-training strategy shares on top of Flower's `Strategy`.

Subclasses say what each node trains this round (`plan`) and how replies are combined
(`combine`); this class turns plans into Messages, replies into results, keeps per-round
checkpoints (PEFT-loadable adapters + state.json) and the metrics table, and resumes from the
last completed round.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedrouter_cli.config import Config, TrainConfig
from fedrouter_cli.errors import FederationStopped
from fedrouter_cli.federation.inference import InferenceInput, Routing
from fedrouter_cli.federation.run_output import load_round, save_round
from fedrouter_cli.federation.train_wire import JobSpec, RoundSettings, TrainRequest
from fedrouter_cli.federation.wire import from_record, nbytes
from fedrouter_cli.model.lora import Adapter
from fedrouter_cli.rundir import FederationDir

log = logging.getLogger(__name__)


def error_summary(reason: str) -> str:
    """The line of a client's error that says what went wrong: Flower passes on the whole remote
    traceback (under Ray, wrapped in its exception's repr), whose last line is the message."""
    lines = [line.strip(" '\">") for line in reason.splitlines() if line.strip(" '\">")]
    return (lines[-1] if lines else reason)[:300]


@dataclass
class Job:
    """One adapter a node trains in a round."""

    name: str                 # the client's name for it (keys its kept state)
    clusters: tuple[int, ...] # local clusters to train on, as one data set; () = all the client's data
    adapter: Adapter          # what the server sends (may be empty)
    tag: str                  # what the server aggregates it into (e.g. a global cluster)
    trainable: str = "all"    # 'all' or 'lora_B'
    send: str = "all"         # part returned: 'all', 'lora_A', 'lora_B' or 'none'
    keep: str = "none"        # part the client keeps between rounds: 'none', 'all', 'lora_B'
    companion: str = ""       # name of another job of the message whose adapter, as sent, is active
                              # and frozen while this one trains ('' = none)
    scale: float = 1.0        # weight of this job's adapter in the forward pass while it trains
    companion_scale: float = 1.0  # weight of the companion's adapter meanwhile


@dataclass
class JobResult:
    client: int
    job: Job
    adapter: Adapter
    samples: int
    loss: float
    first_loss: float
    last_loss: float
    seconds: float
    peak_rss_mb: float = 0.0
    token_budget: int = 0     # new tokens an answer of the data it trained on needs (0 = not sent)


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


class AdapterStrategy(Strategy):
    name = "base"
    # the evaluation modes whose routing differs for this algorithm (`fedrouter run` scores each)
    evaluation_modes: tuple[str, ...] = ("local",)

    @staticmethod
    def fingerprint_parts(train: TrainConfig) -> tuple[dict[str, Any], ...]:
        """What this algorithm's runs depend on beyond their settings: versions of its own rules
        and schedules, added after runs were made. They join the simulate fingerprint, so a run
        made under an older rule or schedule is not taken as a cache hit, and changing one
        algorithm's rule never reruns another's."""
        return ()

    def __init__(self, job: FederationJob) -> None:
        self.job = job
        self.config = job.config
        self.train = job.config.train
        self.adapters: dict[str, Adapter] = {}
        self.node_client: dict[int, int] = {}          # Flower node id -> client index
        self.local_centroids: dict[int, np.ndarray] = {}
        # each local cluster's train samples, where the client sends them (not under centroid DP)
        self.local_sizes: dict[int, np.ndarray] = {}
        self.completed = 0
        # adapter (aggregation tag) -> the largest new-token budget its trainers reported
        self.token_budgets: dict[str, int] = {}
        self._sent_bytes: dict[int, int] = {}
        self._plans: dict[int, list[Job]] = {}
        self._silent: set[int] = set()  # nodes that never introduced themselves

    # -- hooks for subclasses ------------------------------------------------------------
    def initialize(self) -> None:
        """Set up adapters (and anything else) for a fresh run, after the centroid query."""
        raise NotImplementedError

    def plan(self, round_number: int, client: int) -> list[Job]:
        raise NotImplementedError

    def combine(self, round_number: int, results: list[JobResult]) -> None:
        raise NotImplementedError

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        return None

    # -- helpers ----------------------------------------------------------------------------
    def lr_at(self, round_number: int) -> float:
        """Cosine from --lr down to max(lr_min, lr_floor x lr) over the rounds, constant within a round."""
        t = self.train
        if t.rounds == 1:
            return t.lr
        end = max(t.lr_min, t.lr_floor * t.lr)
        progress = (round_number - 1) / (t.rounds - 1)
        return end + 0.5 * (t.lr - end) * (1 + math.cos(math.pi * progress))

    def tasks_k(self, points: int) -> int:
        """'--global-clusters tasks': as many server-side clusters as tasks in the federation
        (the paper's rule, section 3.2), at most one per point."""
        if not self.job.tasks:
            raise FederationStopped("--global-clusters tasks needs the federation's tasks; the server was given none")
        return min(len(self.job.tasks), points)

    @staticmethod
    def weighted_groups(results: list[JobResult]) -> dict[str, list[JobResult]]:
        groups: dict[str, list[JobResult]] = {}
        for result in results:
            groups.setdefault(result.job.tag, []).append(result)
        return groups

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
            self.local_centroids.setdefault(client, sent["centroids"].numpy())
            if "sizes" in sent:
                self.local_sizes.setdefault(client, sent["sizes"].numpy())
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
            self.initialize()
            return
        state, self.adapters = load_round(self.job.out, last)
        self.load_extra_state(state.get("extra", {}))
        self.token_budgets = dict(state.get("token_budgets", {}))
        self.completed = last

    # -- Flower Strategy API -------------------------------------------------------------
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        round_number = self.completed + server_round
        self.refresh_nodes(grid)
        messages = []
        self._plans, self._sent_bytes = {}, {}
        for node, client in sorted(self.node_client.items(), key=lambda item: item[1]):
            jobs = self.plan(round_number, client)
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
            round=round_number, alg=self.name, model=self.config.model.model, lr=self.lr_at(round_number),
            local_steps=t.local_steps, batch_size=t.batch_size, max_length=t.max_length, seed=t.seed,
            lora_r=t.lora_r, lora_alpha=t.lora_alpha, lora_dropout=t.lora_dropout,
            target_modules=tuple(t.target_modules), torch_threads=self.job.torch_threads,
            # each node places the model on its own machine: 'auto' takes its GPU when it has one
            device=self.config.model.device, load_in_4bit=self.config.model.load_in_4bit,
            dp_epsilon=privacy.dp_epsilon, dp_clip=privacy.dp_clip, dp_delta=privacy.dp_delta,
            group_by_length=t.group_by_length, max_grad_norm=t.max_grad_norm)
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
        self.combine(round_number, results)
        for result in results:
            if result.token_budget:
                tag = result.job.tag
                self.token_budgets[tag] = max(self.token_budgets.get(tag, 0), result.token_budget)
        self.checkpoint(round_number, rows)
        self.job.progress("round", round_number, self.train.rounds)
        return None, MetricRecord({
            "jobs": len(results), "failed": sum(r["status"] != "ok" for r in rows),
            "loss": float(np.mean([r.loss for r in results])) if results else 0.0,
        })

    def _row(self, round_number: int, client: int, job: Job | None, result: JobResult | None, status: str,
             bytes_up: int, bytes_down: int) -> dict[str, Any]:
        return {
            "round": round_number, "client": client, "job": job.name if job else "", "tag": job.tag if job else "",
            "status": status, "samples": result.samples if result else 0,
            # what the adapter was trained with this round: optimizer steps and learning rate
            "steps": self.train.local_steps if result else 0,
            "lr": self.lr_at(round_number) if job else float("nan"),
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
        save_round(self.job.out, round_number, self.name, self.adapters, self.extra_state(), rows, self.train,
                   self.config.model.model, self.token_budgets)

    # -- inference (used by `evaluate`) ------------------------------------------------------
    @staticmethod
    def route(inputs: "InferenceInput") -> "Routing":
        raise NotImplementedError

    @staticmethod
    def global_cluster_count(state: dict[str, Any]) -> int:
        """How many global clusters (or shared adapters) a saved round holds, for the summary."""
        return len(state["adapters"])

    @staticmethod
    def local_cluster_routes(state: dict[str, Any], local_counts: dict[int, int]) -> dict[int, list[int]]:
        """The global cluster (or client group) of each client's local clusters, where the method
        has one: what the simulate summary's global purity is measured on. {} = none."""
        return {}

    @staticmethod
    def global_router(state: dict[str, Any]) -> tuple[np.ndarray, list[str]] | None:
        """Centroids and adapter names of a router over every global adapter (answering a prompt
        from no particular client, and export); None when the method has none."""
        return None

    @staticmethod
    def evaluation_adapters(state: dict[str, Any], client: int, mode: str) -> list[str]:
        """The saved adapters a node needs to answer its test samples with `route` (evaluate --on
        nodes sends only these); what the node kept for itself is already on it."""
        return list(state["adapters"])

    @staticmethod
    def adapter_tasks(state: dict[str, Any], local_tasks: dict[int, list[str]]) -> dict[str, str]:
        """Majority task of the data behind each adapter, where the method knows it (for routing accuracy)."""
        return {}
