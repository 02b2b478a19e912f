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
FRONT_ENDS = {"cli.py"}


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
    engine = [
        p
        for p in PKG.rglob("*.py")
        if p.relative_to(PKG).as_posix() not in FRONT_ENDS and "_napari" not in p.parts
    ]
    assert len(engine) >= 10
    for path in engine:
        bad = _imports(path) & set(FORBIDDEN)
        assert not bad, f"{path.relative_to(PKG)} imports {bad}"


def test_cli_imports_no_napari():
    assert not (_imports(PKG / "cli.py") & {"napari", "qtpy", "magicgui"})


def test_import_package_and_reader_without_torch():
    code = (
        "import sys, napari_microfossil, napari_microfossil.io, napari_microfossil.fossils, "
        "napari_microfossil.fossils.export, napari_microfossil._napari.reader;"
        "assert 'torch' not in sys.modules, 'torch imported';"
        "assert 'napari' not in sys.modules or True"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
