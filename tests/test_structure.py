"""The package's layering, read from its source: each layer imports only from the ones below it,
and only the strategies (and the CLI's choices and the bench's method list) know an algorithm by
its name. A change that breaks either fails here, not in a deployment run."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fedrouter_cli"
UPPER = ("fedrouter_cli.stages", "fedrouter_cli.experiments", "fedrouter_cli.cli")
# "local" is left out: it also names an evaluation mode and a select-k level
ALGORITHM_NAMES = {"fedrouter", "fedrouter-star", "fedit", "fedcluster", "fedsa", "ffa-lora", "feddpa", "feddpa-knn"}
MAY_NAME_ALGORITHMS = ("algorithms.py", "federation/strategies/", "cli/", "experiments/")


def _modules(*under: str) -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if any(str(p.relative_to(PACKAGE)).startswith(u) for u in under))


def _imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


# everything but the stages, the CLI and the entry point that starts the CLI
LOWER = [p for p in PACKAGE.rglob("*.py") if (p.parent == PACKAGE and p.name != "__main__.py")
         or p.parent.name in ("model", "data") or "federation" in p.relative_to(PACKAGE).parts]


@pytest.mark.parametrize("path", LOWER, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_lower_layers_import_no_stage_and_no_cli(path: Path) -> None:
    upward = sorted(m for m in _imported(path) if m.startswith(UPPER))
    assert not upward, f"{path.relative_to(PACKAGE)} imports {upward}"


def test_the_model_layer_imports_no_federation() -> None:
    for path in _modules("model/"):
        assert not [m for m in _imported(path) if m.startswith("fedrouter_cli.federation")], path


def _compares_to_an_algorithm(node: ast.AST) -> bool:
    """`x == "fedrouter"`, `x in ("fedit", ...)` or `x.startswith("fedrouter")`."""
    if isinstance(node, ast.Compare):
        constants = [c for c in ast.walk(node) if isinstance(c, ast.Constant) and isinstance(c.value, str)]
        return any(c.value in ALGORITHM_NAMES for c in constants) and not all(
            isinstance(op, (ast.Is, ast.IsNot)) for op in node.ops)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "startswith":
        return any(isinstance(a, ast.Constant) and a.value in ALGORITHM_NAMES for a in node.args)
    return False


def test_only_the_strategies_branch_on_an_algorithms_name() -> None:
    found = []
    for path in PACKAGE.rglob("*.py"):
        relative = str(path.relative_to(PACKAGE))
        if relative.startswith(MAY_NAME_ALGORITHMS):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if _compares_to_an_algorithm(node):
                found.append(f"{relative}:{node.lineno}")
    assert not found, f"branches on an algorithm's name outside strategies/: {found}"


def test_the_checks_see_a_branch_and_an_upward_import() -> None:
    """The two rules above find what they look for (a rule that cannot fail proves nothing)."""
    branch = ast.parse('if alg == "fedrouter":\n    pass\nok = mode == "global"\nb = a.startswith("fedrouter")')
    assert sum(_compares_to_an_algorithm(n) for n in ast.walk(branch)) == 2
    assert [m for m in {"fedrouter_cli.stages.evaluate", "fedrouter_cli.rundir"} if m.startswith(UPPER)] == \
        ["fedrouter_cli.stages.evaluate"]


def test_every_algorithm_is_registered_once_and_every_list_follows_the_registry() -> None:
    """fedrouter_cli.algorithms is the one list: each Strategy class with a name is registered under
    it, and the config's choices, `--alg`'s help and the bench's methods come from the registry."""
    import inspect

    from fedrouter_cli.algorithms import BENCH_METHODS, REGISTRY, strategy_class
    from fedrouter_cli.cli.options import AlgOpt
    from fedrouter_cli.config import ALGORITHMS
    from fedrouter_cli.federation.strategies import STRATEGIES
    from fedrouter_cli.federation.strategies.base import AdapterStrategy

    named = set()
    for path in sorted((PACKAGE / "federation" / "strategies").glob("*.py")):
        module = __import__(f"fedrouter_cli.federation.strategies.{path.stem}", fromlist=["*"])
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, AdapterStrategy) and "name" in vars(cls) and cls.__module__ == module.__name__ \
                    and cls.name != "base":
                named.add(cls.name)
                assert strategy_class(cls.name) is cls
    assert named == set(REGISTRY) == set(ALGORITHMS) == set(STRATEGIES)
    help_text = AlgOpt.__metadata__[0].help
    assert all(f"{name}:" in help_text for name in REGISTRY)
    assert set(BENCH_METHODS) == {n for n, a in REGISTRY.items() if a.in_bench} | {"fedrouter-star"}


# Flower's message API and the file layer: what the rounds (federation/rounds.py) and the stages use
NOT_FOR_RULES = ("flwr", "pyarrow", "safetensors", "fedrouter_cli.files", "fedrouter_cli.rundir",
                 "fedrouter_cli.federation.run_output", "fedrouter_cli.federation.node", "fedrouter_cli.federation.wire",
                 "fedrouter_cli.federation.train_wire", "fedrouter_cli.federation.rounds")


@pytest.mark.parametrize("path", sorted((PACKAGE / "federation" / "strategies").glob("*.py")), ids=lambda p: p.name)
def test_the_algorithms_rules_only_decide(path: Path) -> None:
    """An algorithm's module says which jobs each node trains, how replies combine and which
    adapter answers a prompt; it sends no message and touches no file (imports in functions too)."""
    found = sorted(m for m in _imported(path) if m == "pathlib" or m.startswith(NOT_FOR_RULES))
    assert not found, f"{path.name} imports {found}"


def test_one_server_app_module_and_one_federation_loop() -> None:
    """The training ServerApps are made in stages/server_app.py (besides them only the one-shot
    evaluation on simulated nodes, federation/evaluate_round.py, makes one), and the rounds are
    started in one place, federation/loop.py, whichever engine runs them (a second loop would
    drift from the first)."""
    makes_app, starts_rounds = set(), set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "ServerApp":
                makes_app.add(str(path.relative_to(PACKAGE)))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "start" \
                    and any(k.arg == "grid" for k in node.keywords):
                starts_rounds.add(str(path.relative_to(PACKAGE)))
    assert makes_app == {"stages/server_app.py", "federation/evaluate_round.py"}
    assert starts_rounds == {"federation/loop.py"}
