"""training/ is grouped by job and imports only downward; the documented entry points import.

Layers, lowest first: ``data`` < ``inference`` < ``evaluation`` < ``fitting`` < ``finetuning``
< ``commands`` / ``cli``. A module may import its own layer and the ones below it, never one
above, and nothing in ``training`` imports napari, Qt or ``napari_l2gnet`` (docs/design.md,
"Packages and the direction of imports"). Imports are read with ``ast``, including the ones
inside functions, so a lazy import cannot hide an upward one.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TRAINING = REPO / "training"
LAYERS = ["data", "inference", "evaluation", "fitting", "finetuning", "commands", "cli"]
FORBIDDEN_TOP = {"napari", "napari_l2gnet", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6",
                 "magicgui", "superqt"}

ENTRY_POINTS = {
    "training.inference": ["predict_volume", "iter_predict_volume", "SliceInferer",
                           "InferenceSettings", "VolumePrediction", "Explanation",
                           "PredictionCancelled", "SliceForward", "OutOfMemoryFallback",
                           "load_for_inference", "resolve_device", "open_model"],
    "training.evaluation": ["evaluate", "format_table", "score_case", "summarize",
                            "class_volumes", "cardiac_indices", "choose_largest_component"],
    "training.fitting": ["prepare_run", "Trainer", "TrainConfig", "fit", "FitResult"],
    "training.finetuning": ["run_finetune", "FinetuneSettings", "FinetuneReport",
                            "CorrectedVolume", "FinetuneProcess"],
    "training.data": ["Case", "Slice", "SliceDataset", "IntensityNormalization", "normalize",
                      "make_phantom"],
    "training.data.specs": ["load_cases", "load_slices"],
    "training.evaluation.measure": ["class_volumes", "cardiac_indices", "scan_voxel_ml"],
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """Absolute names of every module ``path`` imports (relative imports resolved); ``source``
    stands in for the file's text."""
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            # ``from . import x`` / ``from .pkg import mod``: x may be a module
            found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
    return found


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "training" or parts[1] not in LAYERS:
        return None
    return LAYERS.index(parts[1])


def _sources() -> list[Path]:
    return sorted(TRAINING.rglob("*.py"))


def test_every_module_sits_in_a_layer() -> None:
    """No flat module is left beside the sub-packages (the folder says what each part does)."""
    loose = [p.name for p in TRAINING.glob("*.py") if p.stem not in ("__init__", "cli")]
    assert loose == []
    assert sorted(p.name for p in TRAINING.iterdir()
                  if p.is_dir() and (p / "__init__.py").exists()) == sorted(LAYERS[:-1])


def test_training_never_imports_napari_or_qt() -> None:
    bad = [f"{p.relative_to(REPO)}:{line} imports {name}"
           for p in _sources() for line, name in _imports(p)
           if name.split(".")[0] in FORBIDDEN_TOP]
    assert bad == []


def test_imports_go_only_downward() -> None:
    checked = 0
    upward = []
    for path in _sources():
        own = _layer(_module_name(path))
        if own is None:  # training/__init__.py
            continue
        for line, name in _imports(path):
            target = _layer(name)
            if target is None:
                continue
            checked += 1
            if target > own:
                upward.append(f"{path.relative_to(REPO)}:{line} ({LAYERS[own]}) imports "
                              f"{name} ({LAYERS[target]})")
    assert checked > 50  # the walk saw the package's imports
    assert upward == []


def test_the_layer_check_catches_an_upward_import() -> None:
    """The parser resolves relative imports: an inference module importing fitting is caught."""
    fake = TRAINING / "inference" / "predict.py"
    found = [name for _line, name in
             _imports(fake, "def f():\n    from ..fitting.trainer import Trainer\n")]
    assert "training.fitting.trainer" in found
    assert _layer("training.fitting.trainer") > _layer(_module_name(fake))


@pytest.mark.parametrize("module", sorted(ENTRY_POINTS))
def test_documented_entry_points_import(module: str) -> None:
    mod = importlib.import_module(module)
    missing = [name for name in ENTRY_POINTS[module] if not hasattr(mod, name)]
    assert missing == []
    assert callable(getattr(mod, ENTRY_POINTS[module][0]))


def test_torch_free_modules_import_without_torch() -> None:
    """The panels import these on the main thread: the sub-packages' re-exports stay lazy."""
    light = ["training.data.phantom", "training.data.normalization",
             "training.inference.fit_check", "training.inference.shipped_models",
             "training.inference.uncertainty", "training.evaluation.measure",
             "training.fitting.new_classes", "training.finetuning.class_outcomes",
             "training.finetuning.store_volumes", "training.finetuning.finetune"]
    code = ("import importlib, sys\n"
            f"for m in {light!r}:\n"
            "    importlib.import_module(m)\n"
            "print(sorted(k for k in sys.modules if k.split('.')[0] == 'torch')[:3])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=300, env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
