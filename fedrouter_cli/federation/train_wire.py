"""The train message, one definition for both ends: what the server asks a node to train.

A round's message holds the settings every job shares and one or more jobs. Job i comes with the
arrays `adapter-i` and says which local clusters to train on, as one data set (() = all the
client's data), which LoRA part is trainable, which part goes back to the server, which part the
client keeps for itself between rounds, and which other job's adapter (its companion) is active
and frozen while it trains. Every algorithm is expressed in these terms, so the client needs no
per-algorithm code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from flwr.app import ConfigRecord, RecordDict

from fedrouter_cli.config import TrainConfig
from fedrouter_cli.federation.wire import from_record, to_record
from fedrouter_cli.model.lora import Adapter


@dataclass
class JobSpec:
    name: str                   # the client's name for it (keys its kept state)
    clusters: tuple[int, ...]   # local clusters to train on, as one data set; () = all the client's data
    trainable: str = "all"      # 'all' or 'lora_B'
    send: str = "all"           # part returned: 'all', 'lora_A', 'lora_B' or 'none'
    keep: str = "none"          # part the client keeps between rounds: 'none', 'all', 'lora_B'
    companion: str = ""         # another job's name whose adapter, as sent, is active and frozen ('' = none)
    scale: float = 1.0          # how much this job's adapter counts in the forward pass while it trains
    companion_scale: float = 1.0  # how much the companion's counts (FedDPA as released: 0.5 and 0.5)


@dataclass
class RoundSettings:
    round: int
    alg: str
    model: str
    lr: float
    local_steps: int
    batch_size: int
    max_length: int
    seed: int
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    target_modules: tuple[str, ...]
    torch_threads: int = 0      # 0 = torch's default
    device: str = "auto"        # each node places the model on its own machine
    load_in_4bit: bool = False
    dp_epsilon: float = 0.0
    dp_clip: float = 1.0
    dp_delta: float = 1e-5
    group_by_length: bool = False  # batches of like-length rows (model.train.draw_batches)
    max_grad_norm: float = 0.0     # gradient clipping per step (0 = off)
    prompt_format: str = "alpaca"  # data.prompts.format_prompt

    def lora(self) -> TrainConfig:
        return TrainConfig(lora_r=self.lora_r, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
                           target_modules=tuple(self.target_modules))


@dataclass
class TrainRequest:
    settings: RoundSettings
    jobs: list[JobSpec]
    adapters: list[Adapter] = field(default_factory=list)  # what the server sends for each job (may be empty)

    def to_content(self) -> RecordDict:
        request = {"settings": asdict(self.settings), "jobs": [asdict(job) for job in self.jobs]}
        content = RecordDict({"config": ConfigRecord({"round": self.settings.round, "request": json.dumps(request)})})
        for i, adapter in enumerate(self.adapters):
            if adapter:
                content[f"adapter-{i}"] = to_record(adapter)
        return content

    @classmethod
    def from_content(cls, content: RecordDict) -> "TrainRequest":
        request = json.loads(str(content["config"]["request"]))
        settings = RoundSettings(**{**request["settings"],
                                    "target_modules": tuple(request["settings"]["target_modules"])})
        jobs = [JobSpec(**{**job, "clusters": tuple(job["clusters"])}) for job in request["jobs"]]
        adapters = [from_record(content[f"adapter-{i}"]) if f"adapter-{i}" in content else {} for i in range(len(jobs))]
        return cls(settings, jobs, adapters)
