"""The engine never imports napari, Qt, magicgui or tqdm; the package and its reader don't import torch."""

import ast
import subprocess
import sys
from pathlib import Path

import napari_microfossil

PKG = Path(napari_microfossil.__file__).parent
FORBIDDEN = (
    "napari",
    "qtpy",
    "PyQt5",
    "PyQt6",
    "PySide2",
    "PySide6",
    "magicgui",
    "superqt",
    "tqdm",
    "vispy",
)
# Modules allowed to import front-end libraries: the napari layer and the command line.
FRONT_ENDS = ("cli", "_napari")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_engine_imports_no_ui_libraries():
    engine = [p for p in PKG.rglob("*.py") if p.relative_to(PKG).parts[0] not in FRONT_ENDS]
    assert len(engine) >= 10
    for path in engine:
        bad = _imports(path) & set(FORBIDDEN)
        assert not bad, f"{path.relative_to(PKG)} imports {bad}"


def test_cli_imports_no_napari():
    files = list((PKG / "cli").glob("*.py"))
    assert len(files) >= 5
    for path in files:
        assert not (_imports(path) & {"napari", "qtpy", "magicgui"}), path.name


#: The layers of the package, lowest first. A module imports only from its own
#: package or from a lower layer; the front ends (command line, napari) are on top.
LAYERS: dict[str, float] = {
    # the basics, each above the ones it may use
    "errors": 0,
    "axes": 0.1,
    "atomic": 0.1,
    "cache": 0.1,
    "_progress": 0.1,
    "metrics": 0.1,
    "classes": 0.2,
    "device": 0.2,
    "normalise": 0.3,
    "model": 0.4,
    "phantom": 0.5,
    # the engine
    "io": 1,
    "segmentation": 2,
    "fossils": 2,
    "review": 2,
    "training": 3,
    # use cases, then the front ends
    "workflows": 4,
    "cli": 5,
    "_napari": 5,
}


def _unit(path: Path) -> str:
    """The top-level unit a file belongs to: a subpackage's name or a module's stem."""
    parts = path.relative_to(PKG).parts
    return parts[0] if len(parts) > 1 else Path(parts[0]).stem


def _internal_imports(path: Path) -> set[str]:
    """Top-level units of the package that `path` imports (relative or absolute)."""
    tree = ast.parse(path.read_text())
    here = path.relative_to(PKG).parts[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(here[: len(here) - (node.level - 1)])
                target = base + (node.module.split(".") if node.module else [])
                if target:
                    found.add(target[0])
                else:  # "from .. import name": each name is a unit
                    found.update(a.name for a in node.names)
            elif node.module and node.module.startswith("napari_microfossil."):
                found.add(node.module.split(".")[1])
    return found


def test_layers_only_import_downward():
    problems = []
    for path in PKG.rglob("*.py"):
        unit = _unit(path)
        if unit == "__init__":
            continue
        assert unit in LAYERS, f"{path.relative_to(PKG)}: add {unit!r} to LAYERS"
        for other in _internal_imports(path) - {unit, "__version__"}:
            if other in LAYERS and LAYERS[other] >= LAYERS[unit]:
                problems.append(f"{path.relative_to(PKG)} imports {other}")
    assert not problems, problems


def test_no_panel_imports_another_panel():
    panels = sorted((PKG / "_napari").glob("*_widget.py"))
    assert len(panels) >= 4
    names = {p.stem for p in panels}
    for path in panels:
        text = path.read_text()
        for other in names - {path.stem}:
            assert f".{other} import" not in text, f"{path.name} imports {other}"


def test_import_package_and_reader_without_torch():
    code = (
        "import sys, napari_microfossil, napari_microfossil.io, napari_microfossil.fossils, "
        "napari_microfossil.fossils.export, napari_microfossil._napari.reader;"
        "assert 'torch' not in sys.modules, 'torch imported';"
        "assert 'napari' not in sys.modules or True"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_modules_are_a_size_one_reads_in_a_sitting():
    """No module, panels included, is over 500 lines: one job each, read in a sitting."""
    too_long = {
        str(p.relative_to(PKG)): n
        for p in PKG.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 500
    }
    assert not too_long, too_long
