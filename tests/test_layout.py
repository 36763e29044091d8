"""The packages form floors, and imports only go down: a cycle between floors cannot creep back in.

Bottom to top: ``models`` (PyTorch/NumPy, never Ray) → ``store`` (schemas, staging, atomic writers, manifests,
table readers) → ``actors`` (Ray Data callables) → ``pipelines`` (Dataset builders) → ``jobs`` (CLIs) →
``benchmarks``. A module may import its own floor and the floors below it. Every ``import`` statement counts,
wherever it sits (module level, inside a function, under ``TYPE_CHECKING``), because a function-level import is
how cycles usually hide. Pure ``ast``: nothing is imported, so a broken module cannot hide a violation.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Bottom to top; a package may import only the packages at or below its own position.
FLOORS = ("models", "store", "actors", "pipelines", "jobs", "benchmarks")
#: Third-party packages a floor must not import (with everything above it).
FORBIDDEN_EXTERNAL = {"models": ("ray",)}


def imported_modules(tree: ast.AST, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``tree`` (relative imports resolved against ``module``)."""
    package = module if is_package else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # stays inside its top-level package (Python refuses to go beyond it)
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                name = ".".join(p for p in (base, node.module) if p)
            else:
                name = node.module
            out.append((node.lineno, name))
            if node.module is None or node.level:  # ``from . import x``: x may be a module
                out += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
    return out


def violations(module: str, source: str, is_package: bool = False) -> list[str]:
    """Imports in ``source`` (the text of ``module``) that break the floor order; empty when it keeps it."""
    floor = module.split(".")[0]
    allowed = set(FLOORS[: FLOORS.index(floor) + 1])
    forbidden_external = FORBIDDEN_EXTERNAL.get(floor, ())
    out = []
    for line, name in imported_modules(ast.parse(source), module, is_package):
        top = name.split(".")[0]
        if (top in FLOORS and top not in allowed) or top in forbidden_external:
            out.append(
                f"{module}:{line} imports {name} ({floor} may import only {', '.join(sorted(allowed))}"
                f"{'; never ' + ', '.join(forbidden_external) if forbidden_external else ''})"
            )
    return out


def _modules() -> list[tuple[str, Path]]:
    mods = []
    for floor in FLOORS:
        for path in sorted((REPO / floor).rglob("*.py")):
            rel = path.relative_to(REPO).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            mods.append((".".join(parts), path))
    return mods


def test_imports_only_go_down_the_floors():
    found = []
    for module, path in _modules():
        found += violations(module, path.read_text(), is_package=path.name == "__init__.py")
    assert not found, "imports against the floor order:\n" + "\n".join(found)


def test_every_package_has_a_floor():
    with open(REPO / "pyproject.toml", "rb") as f:
        packages = tomllib.load(f)["tool"]["setuptools"]["packages"]
    assert set(packages) <= set(FLOORS), f"give {sorted(set(packages) - set(FLOORS))} a place in FLOORS"
    assert len(_modules()) > 20  # the walk found the code (a wrong REPO would pass vacuously)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("models.fake", "import numpy as np\n\ndef f():\n    import ray.data\n"),
        ("models.fake", "from store.schema import KEYPOINT_SCHEMA\n"),
        ("models.fake", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from actors.common import rows_of\n"),
        ("store.fake", "def f():\n    from pipelines.label import build_label_dataset\n"),
        ("store.fake", "import actors.publish as publish_mod\n"),
        ("actors.fake", "import pipelines.decode\n"),
        ("actors.fake", "class A:\n    def f(self):\n        from jobs import label\n"),
        ("pipelines.fake", "from benchmarks.pipeline import main\n"),
        ("jobs.fake", "import benchmarks\n"),
    ],
)
def test_the_check_flags_an_upward_import(module, source):
    assert len(violations(module, source)) == 1


def test_the_check_passes_downward_and_sibling_imports():
    source = (
        "import numpy\nimport ray\nfrom models.poseflow import PoseFlowTracker\nfrom store import schema\n"
        "from . import common\nfrom .common import rows_of\n\ndef f():\n    import actors.sppe\n"
    )
    assert violations("actors.fake", source) == []
    assert violations("models.fake", "from . import poseflow\nimport torch\n") == []


def test_test_files_have_unique_basenames():
    """pytest's default rootdir import mode keys test modules by basename: two ``test_x.py`` in different folders
    abort collection of the whole suite ("import file mismatch"), as CI once did with two ``test_render.py``."""
    seen: dict[str, Path] = {}
    clashes = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        if path.name in ("conftest.py", "__init__.py"):
            continue
        if path.name in seen:
            clashes.append(f"{seen[path.name].relative_to(REPO)} and {path.relative_to(REPO)}")
        seen.setdefault(path.name, path)
    assert not clashes, "test modules share a basename: " + "; ".join(clashes)
