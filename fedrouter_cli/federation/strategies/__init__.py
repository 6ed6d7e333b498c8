"""One module per algorithm, each holding its training and inference rules; `STRATEGIES` maps
every registered name (fedrouter_cli.algorithms) to its Strategy class."""

from __future__ import annotations

from fedrouter_cli.algorithms import REGISTRY, strategy_class
from fedrouter_cli.federation.strategies.base import AdapterStrategy

STRATEGIES: dict[str, type[AdapterStrategy]] = {name: strategy_class(name) for name in REGISTRY}
