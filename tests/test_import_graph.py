"""The import graph: no cycles (imports inside functions included), and a CLI that starts
without the heavy libraries, which only the stages that compute need."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import fedrouter_cli

PACKAGE = Path(fedrouter_cli.__file__).parent


def module_imports(package: Path) -> dict[str, set[str]]:
    """Each module of `package` -> the modules of the package it imports anywhere in its file
    (at the top or inside a function). A package's own __init__ counts only where it is named:
    Python runs it for every submodule, and counting that would make each sibling import a cycle."""
    modules: dict[str, Path] = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from .x import y
                    anchor = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    cycles.append(sorted(group))
    return cycles


def test_no_module_imports_itself_through_others() -> None:
    assert import_cycles(module_imports(PACKAGE)) == []


def test_the_cycle_check_finds_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text("def later():\n    from .. import c\n")
    (package / "c.py").write_text("import pkg.a\n")
    (package / "d.py").write_text("import pkg.a\n")  # imports into the cycle, not part of it
    assert import_cycles(module_imports(package)) == [["pkg.a", "pkg.c", "pkg.sub.b"]]


def test_the_cli_starts_without_the_heavy_libraries() -> None:
    """`fedrouter --help` and a cached stage answer at once: importing the CLI pulls in none of the
    libraries that take seconds to import; the stages import them when they compute."""
    heavy = ["torch", "transformers", "sklearn", "flwr", "peft", "scipy", "pyarrow", "matplotlib", "datasets"]
    code = ("import json, sys; import fedrouter_cli.cli.app; "
            f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(loaded.stdout) == []


def test_every_module_imports() -> None:
    """Each module of the package imports, names from other modules included (a name moved to
    another module fails here, not in the one test that reaches the import at run time)."""
    import importlib

    failed = {}
    for name in sorted(module_imports(PACKAGE)):
        if name.endswith("__main__"):
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - report every module that fails, not just the first
            failed[name] = f"{exc.__class__.__name__}: {exc}"
    assert not failed, failed
