"""What one function's Lambda package holds, for `make build-<LogicalId>` (sam build runs it).

`python3.12 devstack/lambda_package.py OauthCallbackFunction` prints, one a line, the paths
(relative to the repository root) that go into that function's package besides its
dependencies: `functions/__init__.py`, the function's own folder, `shared/__init__.py`, every
`shared/<package>` that its modules import, directly or through each other (imports inside
functions, made lazily for the cold start, count too), and `migrations/` when the migrator is
among those modules (it reads the SQL files at run time).

Whole packages, not single modules: a package's data files (the database CAs) go with it, and
the one-way rule between packages (docs/ARCHITECTURE.md) keeps the set small: token_status
carries platform, meta and connection, never hsm. So a change to another function's folder, to a
package this function does not import, or to tests, docs or tools leaves its package byte for
byte the same, and its published version too.

The logical id names the folder: `OauthCallbackFunction` is `functions/oauth_callback`
(tests/test_lambda_packages.py holds every function of template.yaml to that).
Standard library only: it runs under the build's python3.12, outside the dev venv.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROOTS = ("functions", "shared")
# The modules that read files beside the code at run time, and what they read.
DATA_READERS = {"shared.platform.migrator": "migrations"}


def folder_of(logical_id: str) -> str:
    """OauthCallbackFunction -> oauth_callback."""
    stem = logical_id.removesuffix("Function")
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", stem).lower()


def module_file(name: str) -> Path | None:
    path = ROOT.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_names(name: str, path: Path) -> set[str]:
    """Every import in module `name`'s file, `from a.b import c` giving both a.b and a.b.c."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return {n for n in names if n.split(".")[0] in ROOTS}


def closure(start: str) -> set[str]:
    """The project's modules that importing `start` can load, its packages' __init__s included."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        # Importing a.b.c runs a/__init__ and a/b/__init__ first.
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            path = module_file(prefix)
            if prefix in seen or path is None:
                continue
            seen.add(prefix)
            todo.extend(imported_names(prefix, path))
    return seen


def package_paths(logical_id: str) -> list[str]:
    folder = folder_of(logical_id)
    handler = f"functions.{folder}.app"
    if module_file(handler) is None:
        raise SystemExit(f"{logical_id}: no functions/{folder}/app.py; a function's logical id "
                         "is its folder's name in CamelCase plus 'Function'")
    modules = closure(handler)
    paths = {"functions/__init__.py", "shared/__init__.py"}
    for name in modules:
        parts = name.split(".")
        if len(parts) >= 2:
            top = "/".join(parts[:2])
            paths.add(top if (ROOT / top).is_dir() else f"{top}.py")
    paths.update(data for reader, data in DATA_READERS.items() if reader in modules)
    return sorted(paths)


if __name__ == "__main__":
    print("\n".join(package_paths(sys.argv[1])))
