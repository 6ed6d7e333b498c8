"""The messages of an evaluation on the nodes, one definition for both ends.

The server sends an `EvalRequest` (settings, the evaluated round's router state, the adapters the
node's inference rule needs); the node answers with per-task sums and counts only: no test text,
prediction or reference ever goes back.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from typing import Any

from flwr.app import ConfigRecord, MetricRecord, RecordDict

from fedrouter_cli.config import Config
from fedrouter_cli.config_file import build_config, config_toml
from fedrouter_cli.evaluation import SUM_KEYS
from fedrouter_cli.federation.wire import from_record, to_record
from fedrouter_cli.model.lora import Adapter

ADAPTER_PREFIX = "adapter:"


@dataclass
class EvalRequest:
    config: Config
    alg: str                    # an algorithm, or 'base'
    evaluation: str             # the evaluation's name (its folder on the node)
    split: str                  # 'test' or 'test_all'
    state: dict[str, Any] = field(default_factory=dict)          # state.json of the evaluated round
    global_tasks: dict[str, str] = field(default_factory=dict)   # adapter -> majority task
    adapters: dict[str, Adapter] = field(default_factory=dict)   # name -> weights
    torch_threads: int = 0      # torch threads on the node; 0 = torch's default

    def to_content(self) -> RecordDict:
        content = RecordDict({"config": ConfigRecord({
            "config": config_toml(self.config), "alg": self.alg, "evaluation": self.evaluation, "split": self.split,
            "state": json.dumps(self.state), "global-tasks": json.dumps(self.global_tasks),
            "adapters": json.dumps(sorted(self.adapters)), "torch-threads": self.torch_threads,
        })})
        for name, weights in self.adapters.items():
            content[ADAPTER_PREFIX + name] = to_record(weights)
        return content

    @classmethod
    def from_content(cls, content: RecordDict) -> "EvalRequest":
        cfg = content["config"]
        names = json.loads(str(cfg["adapters"]))
        return cls(config=build_config(Config(), tomllib.loads(str(cfg["config"]))), alg=str(cfg["alg"]),
                   evaluation=str(cfg["evaluation"]), split=str(cfg["split"]), state=json.loads(str(cfg["state"])),
                   global_tasks=json.loads(str(cfg["global-tasks"])),
                   adapters={n: from_record(content[ADAPTER_PREFIX + n]) for n in names},
                   torch_threads=int(cfg.get("torch-threads", 0)))


def sums_to_content(client: int, sums: dict[str, dict[str, float]]) -> RecordDict:
    """A node's reply: its client index, the task names (labels the server already knows from the
    partition) and, per task in that order, the sum of each score and the counts."""
    tasks = sorted(sums)
    metrics: dict[str, Any] = {"client": client}
    for key in SUM_KEYS:
        metrics[key] = [float(sums[t][key]) for t in tasks]
    return RecordDict({"tasks": ConfigRecord({"tasks": json.dumps(tasks)}), "metrics": MetricRecord(metrics)})


def sums_from_content(content: RecordDict) -> tuple[int, dict[str, dict[str, float]]]:
    tasks = json.loads(str(content["tasks"]["tasks"]))
    metrics = content["metrics"]
    return int(metrics["client"]), {t: {k: float(metrics[k][i]) for k in SUM_KEYS} for i, t in enumerate(tasks)}
