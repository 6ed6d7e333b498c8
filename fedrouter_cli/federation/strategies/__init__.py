"""One Strategy class per algorithm; `STRATEGIES` maps `simulate --alg` names to them."""

from __future__ import annotations

from fedrouter_cli.federation.strategies.base import AdapterStrategy
from fedrouter_cli.federation.strategies.fedrouter import FedRouter

STRATEGIES: dict[str, type[AdapterStrategy]] = {
    "fedrouter": FedRouter,
}
