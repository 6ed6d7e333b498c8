"""The algorithms, registered once: each name with the module and class holding its training and
inference rules (fedrouter_cli.federation.strategies.<module>) and a one-line description.

Every list of algorithms is derived from here: `--alg`'s choices and help, config.ALGORITHMS, the
bench's methods and their table order, and `STRATEGIES`. Adding an algorithm is its own module
under federation/strategies/ plus one entry below. This module imports nothing heavy, so the
command line can list the algorithms without loading torch or Flower; `strategy_class` imports
an algorithm's module when it is first needed.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Algorithm:
    name: str         # `--alg` name, and the name its runs and tables use
    module: str       # fedrouter_cli.federation.strategies.<module>
    cls: str          # the Strategy class there
    summary: str      # one line for --help
    in_bench: bool = True  # a row of the bench's main table (the paper's methods)


REGISTRY: dict[str, Algorithm] = {a.name: a for a in (
    Algorithm("fedrouter", "fedrouter", "FedRouter", "task-centric: one adapter per global task cluster, routed per prompt"),
    Algorithm("fedit", "fedit", "FedIT", "one shared adapter, FedAvg"),
    Algorithm("local", "local", "Local", "each client trains alone"),
    Algorithm("fedcluster", "fedcluster", "FedCluster", "clients grouped by their updates, one adapter per group"),
    Algorithm("fedsa", "fedsa", "FedSA", "lora_A shared, lora_B kept by each client"),
    Algorithm("ffa-lora", "ffa_lora", "FFALoRA", "lora_A frozen, lora_B shared"),
    Algorithm("feddpa", "feddpa", "FedDPA", "a global and a local adapter, mixed per instance (as released)"),
    Algorithm("feddpa-knn", "feddpa", "FedDPAKnn", "FedDPA with a nearest-neighbour weight (this tool's variant)",
              in_bench=False),
)}
NAMES: tuple[str, ...] = tuple(REGISTRY)
# the bench's methods, in its tables' order: the baselines, then FedRouter and its star variant
BENCH_METHODS: tuple[str, ...] = (*(n for n, a in REGISTRY.items() if a.in_bench and n != "fedrouter"),
                                  "fedrouter", "fedrouter-star")


def choices_help() -> str:
    """`--alg`'s help: every registered algorithm with its one line."""
    return "; ".join(f"{a.name}: {a.summary}" for a in REGISTRY.values())


def strategy_class(name: str) -> Any:
    """The Strategy class of a registered algorithm (its module imported on first use)."""
    algorithm = REGISTRY[name]
    return getattr(importlib.import_module(f"fedrouter_cli.federation.strategies.{algorithm.module}"), algorithm.cls)
