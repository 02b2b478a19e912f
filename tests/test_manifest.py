"""The npe2 manifest: valid, the fixed widget names, and every command importable."""

import importlib
from pathlib import Path

import pytest

import napari_microfossil

npe2 = pytest.importorskip("npe2")

MANIFEST = Path(napari_microfossil.__file__).parent / "napari.yaml"


def test_manifest_is_valid_and_names_the_fixed_widgets():
    pm = npe2.PluginManifest.from_file(MANIFEST)
    assert pm.name == "napari-microfossil"
    names = [w.display_name for w in pm.contributions.widgets]
    assert names[:3] == ["Segment", "Review & correct", "Fossils"]
    assert "Fine-tune" in names
    assert [s.display_name for s in pm.contributions.sample_data] == [
        "Microfossil sample (synthetic MicroCT)"
    ]


def test_every_command_points_at_something_importable():
    pm = npe2.PluginManifest.from_file(MANIFEST)
    for cmd in pm.contributions.commands:
        module, _, attr = cmd.python_name.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), cmd.python_name


def test_installed_entry_point_finds_the_manifest():
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points(group="napari.manifest") if ep.name == "napari-microfossil"]
    assert eps and eps[0].value == "napari_microfossil:napari.yaml"
