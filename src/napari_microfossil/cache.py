"""Where this tool keeps what it makes for the user when the scan's folder cannot hold
it: review autosaves, scan pyramids."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The user's cache folder of this tool: ``$XDG_CACHE_HOME/napari-microfossil``
    (``~/.cache/napari-microfossil`` when the variable is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "napari-microfossil"
