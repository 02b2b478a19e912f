"""The checks of the fossils requests (:mod:`.fossils`): class, numbers, flags, folder."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..classes import PHANTOM_CLASS_NAMES, class_index
from ..errors import InputError


def fossil_class(class_names: Sequence[str], which: str | int) -> tuple[int, str]:
    """The class whose bodies are fossils, as ``(id, name)``.

    Parameters
    ----------
    class_names : sequence of str
        The labels' class names (index = id); empty when the file has none, in which
        case names are those of the sample (:data:`~napari_microfossil.classes.PHANTOM_CLASS_NAMES`)
        and any id 1..255 is accepted.
    which : str or int
        A class name (case-insensitive) or id.

    Raises
    ------
    InputError
        For an unknown name or id (suggesting the closest name), or the background (0).
    """
    names = [str(n) for n in class_names]
    text = str(which).strip()
    if not names and text.isdigit():
        cid = int(text)
        if not 0 <= cid <= 255:
            raise InputError(f"class: expected an id in 1..255, got {which!r}")
    else:
        cid = class_index(names or list(PHANTOM_CLASS_NAMES), text)
    if cid == 0:
        raise InputError("class: expected a foreground class, got the background (0)")
    known = names or list(PHANTOM_CLASS_NAMES)
    return cid, known[cid] if cid < len(known) else str(cid)


def whole(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"{name}: expected an integer >= 0, got {value!r}")
    return value


def flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{name}: expected True or False, got {value!r}")
    return value


def check_min_volume(value: Any) -> None:
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (math.isfinite(value) and value >= 0)
    ):
        raise InputError(f"min_volume_um3: expected a number >= 0 or None, got {value!r}")


def check_neck_ratio(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise InputError(f"split_neck_ratio: expected a number between 0 and 1, got {value!r}")


def check_folder(outdir: Path) -> None:
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"outdir: {outdir} exists and is not a folder")
