"""One Strategy class per algorithm; `STRATEGIES` maps `simulate --alg` names to them."""

from __future__ import annotations

from fedrouter_cli.config import ALGORITHMS
from fedrouter_cli.federation.strategies.base import AdapterStrategy
from fedrouter_cli.federation.strategies.fedcluster import FedCluster
from fedrouter_cli.federation.strategies.feddpa import FedDPA, FedDPAKnn
from fedrouter_cli.federation.strategies.fedit import FedIT
from fedrouter_cli.federation.strategies.fedrouter import FedRouter
from fedrouter_cli.federation.strategies.fedsa import FedSA
from fedrouter_cli.federation.strategies.ffa_lora import FFALoRA
from fedrouter_cli.federation.strategies.local import Local

STRATEGIES: dict[str, type[AdapterStrategy]] = {
    "fedrouter": FedRouter,
    "fedit": FedIT,
    "local": Local,
    "fedcluster": FedCluster,
    "fedsa": FedSA,
    "ffa-lora": FFALoRA,
    "feddpa": FedDPA,
    "feddpa-knn": FedDPAKnn,
}
assert tuple(STRATEGIES) == ALGORITHMS, "config.ALGORITHMS and STRATEGIES must name the same algorithms"
