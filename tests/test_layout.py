"""The package's shape, read from its imports: the day's data flows down, no cycle, no private name borrowed,
and the package's own modules import each other at the top (lazily only at the Airflow boundary)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from tests.helpers import REPO

PACKAGE = REPO / "include" / "admission"
# Where a lazy import of the package is the point: the Airflow boundary (task bodies, the command that starts
# Airflow after setting its logging level). The registry resolves check functions by name (importlib).
LAZY_ALLOWED = {"adapter", "cli.py"}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_import_contracts_hold():
    """pyproject.toml's [tool.importlinter]: layers from the entry points down to the contract, Airflow only in
    the adapter."""
    done = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_module_of_the_package_imports_itself_back_through_others():
    graph = grimp.build_graph("admission")
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    """The check above can fail: a made-up graph with a loop is caught."""
    graph = grimp.ImportGraph()
    for a, b in (("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")):
        graph.add_import(importer=a, imported=b)
    assert _cycles(graph) == [["p.a", "p.b", "p.c"]]


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_module_imports_no_private_name_of_another(path):
    me = _module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    borrowed = [f"{node.module}.{alias.name} (line {node.lineno})" for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("admission")
                and node.module != me for alias in node.names if alias.name.startswith("_")]
    assert borrowed == []


@pytest.mark.parametrize("path", [p for p in _modules() if p.relative_to(PACKAGE).parts[0] not in LAZY_ALLOWED],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_domain_module_imports_the_package_at_its_top(path):
    """A function-local import hides an arrow of the graph; outside the Airflow boundary there is none."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    hidden = [f"line {sub.lineno}" for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
              for sub in ast.walk(node) if isinstance(sub, ast.ImportFrom | ast.Import)
              and any(n.startswith("admission") for n in ([sub.module or ""] if isinstance(sub, ast.ImportFrom)
                                                         else [a.name for a in sub.names]))]
    assert hidden == []
