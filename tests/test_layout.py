"""The shape of shared/: domain packages whose imports flow one way (docs/ARCHITECTURE.md).

    platform  <-  meta  <-  connection  <-  ads, whatsapp, leads  <-  hsm

A module may import its own package and the packages below it, never one beside or above it,
and no two modules import each other, directly or round a loop. Every import counts, also the
ones made inside a function (to keep a cold start light) and under TYPE_CHECKING: each is a
dependency all the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1] / "shared"

# What each package may import besides itself.
ALLOWED = {
    "platform": set(),
    "meta": {"platform"},
    "connection": {"platform", "meta"},
    "ads": {"platform", "meta", "connection"},
    "whatsapp": {"platform", "meta", "connection"},
    "leads": {"platform", "meta", "connection"},
    "hsm": {"platform", "meta", "connection", "whatsapp"},
}


def _modules() -> dict[str, Path]:
    return {".".join(path.relative_to(SHARED.parent).with_suffix("").parts): path
            for path in SHARED.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """Every `shared...` module or package this file names in an import."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("shared"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "shared" or node.module.startswith("shared."):
                # `from shared.hsm import claims` imports the module shared.hsm.claims.
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
                found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            pytest.fail(f"{path}: relative import; shared/ uses absolute imports only")
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    names = {m.removesuffix(".__init__") for m in modules}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        source = module.removesuffix(".__init__")
        graph[source] = {name for name in _imports(path) if name in names and name != source}
    return graph


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else None


def test_shared_holds_only_domain_packages():
    loose = sorted(p.name for p in SHARED.glob("*.py") if p.name != "__init__.py")
    assert loose == []
    packages = sorted(p.name for p in SHARED.iterdir() if (p / "__init__.py").exists())
    assert packages == sorted(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_says_what_it_owns_and_may_import(package):
    doc = ast.get_docstring(ast.parse((SHARED / package / "__init__.py").read_text()))
    assert doc and "May import" in doc, f"shared/{package}/__init__.py needs its docstring"
    named = {word for word in ALLOWED if f"`{word}`" in doc.split("May import", 1)[1]}
    assert named == ALLOWED[package]


def test_imports_flow_one_way():
    wrong = []
    for module, targets in sorted(_graph().items()):
        own = _package(module)
        for target in sorted(targets):
            other = _package(target)
            if own is None or other is None or other == own:
                continue
            if other not in ALLOWED[own]:
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_no_module_is_part_of_an_import_cycle():
    graph = _graph()
    cycles = []
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == []


def test_the_rule_would_catch_a_violation(tmp_path):
    """The checks above read real imports: a module that imports upward is found."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from shared.hsm.claims import Claim\n")
    assert "shared.hsm.claims" in _imports(bad)
