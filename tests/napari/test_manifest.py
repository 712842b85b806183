"""The npe2 manifest: valid, the one that is installed, and every contribution importable."""

from __future__ import annotations

from pathlib import Path

import npe2
import pytest
from npe2 import PluginManifest

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "napari.yaml"
PLUGIN = "napari-l2gnet"
COMMANDS = PluginManifest.from_file(MANIFEST).contributions.commands or []


def _module_file_exists(module: str) -> bool:
    base = REPO.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


@pytest.fixture(scope="module")
def plugin_manager() -> npe2.PluginManager:
    pm = npe2.PluginManager.instance()
    pm.discover()
    if PLUGIN not in {m.name for m in pm.iter_manifests()}:
        pytest.fail(f"{PLUGIN} is not installed: run `pip install -e .` (the Makefile's setup)")
    return pm


def test_installed_manifest_is_the_repository_one(plugin_manager) -> None:
    installed = plugin_manager.get_manifest(PLUGIN)
    assert installed == PluginManifest.from_file(MANIFEST)
    assert (REPO / "napari_l2gnet" / "napari.yaml").resolve().read_text() == MANIFEST.read_text()


def test_manifest_categories_are_npe2_ones() -> None:
    from npe2.manifest.schema import Category

    manifest = PluginManifest.from_file(MANIFEST)
    valid = {c.value for c in Category}
    assert set(manifest.categories) <= valid


@pytest.mark.parametrize("command", COMMANDS, ids=[c.id for c in COMMANDS])
def test_every_command_imports(plugin_manager, command) -> None:
    module = command.python_name.split(":")[0]
    assert _module_file_exists(module), f"{command.python_name}: no module file for {module}"
    target = plugin_manager.commands.get(command.id)
    assert callable(target), command.python_name


def test_reader_is_offered_any_name_and_declines_what_it_does_not_read(plugin_manager,
                                                                        tmp_path) -> None:
    """DICOM is recognised by content, not name (issue 27): the manifest offers the reader
    every file, and ``get_reader`` declines (None) what is neither NIfTI nor DICOM."""
    from napari_l2gnet._reader import get_reader

    for name in ("a/scan.nii.gz", "s.nii", "IM00001", "CT.1.2.840.1", "a/picture.png"):
        assert PLUGIN in {r.plugin_name for r in plugin_manager.iter_compatible_readers([name])}
    png = tmp_path / "picture.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(300))
    assert get_reader(str(png)) is None


@pytest.mark.parametrize(
    ("layer_type", "command"), [("labels", "write_labels"), ("image", "write_image")]
)
def test_writers_are_offered_for_nifti(plugin_manager, layer_type, command) -> None:
    writers = list(plugin_manager.iter_compatible_writers([layer_type]))
    ours = [w for w in writers if w.command == f"{PLUGIN}.{command}"]
    assert ours and ".nii.gz" in ours[0].filename_extensions
