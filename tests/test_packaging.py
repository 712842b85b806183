"""pyproject declares every third-party package the code imports, and the version once."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("napari_l2gnet", "src_model", "training", "scan_io")


def _project() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _imported_top_levels() -> set[str]:
    names: set[str] = set()
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - set(PACKAGES) - {"__future__"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_package_is_declared() -> None:
    declared = {_norm(re.split(r"[<>=!~ \[;]", dep)[0]) for dep in _project()["dependencies"]}
    dists = packages_distributions()
    missing = {}
    for module in sorted(_imported_top_levels()):
        candidates = {_norm(d) for d in dists.get(module, [module])}
        if not candidates & declared:
            missing[module] = sorted(candidates)
    assert not missing, f"imported but not in pyproject dependencies: {missing}"


def test_version_is_written_once() -> None:
    import napari_l2gnet

    version = _project()["version"]
    assert napari_l2gnet.__version__ == version
    init = (REPO / "napari_l2gnet" / "__init__.py").read_text()
    assert version not in init
