"""Class names and display colours."""

from __future__ import annotations

#: Classes of the synthetic sample and of the bundled default model.
PHANTOM_CLASS_NAMES: tuple[str, ...] = ("background", "fossil", "pore")

_NAMED_COLOURS = {
    "background": (0.0, 0.0, 0.0, 0.0),
    "fossil": (1.0, 0.55, 0.0, 1.0),
    "pore": (0.15, 0.45, 1.0, 1.0),
}
_CYCLE = [
    (0.2, 0.8, 0.2, 1.0),
    (0.9, 0.2, 0.6, 1.0),
    (0.95, 0.9, 0.1, 1.0),
    (0.5, 0.2, 0.9, 1.0),
    (0.1, 0.8, 0.8, 1.0),
]


def class_colours(
    class_names: tuple[str, ...] | list[str],
) -> dict[int, tuple[float, float, float, float]]:
    """RGBA colour for each class id; background (id 0) is transparent."""
    out: dict[int, tuple[float, float, float, float]] = {}
    k = 0
    for i, name in enumerate(class_names):
        if i == 0:
            out[i] = (0.0, 0.0, 0.0, 0.0)
        elif name.lower() in _NAMED_COLOURS:
            out[i] = _NAMED_COLOURS[name.lower()]
        else:
            out[i] = _CYCLE[k % len(_CYCLE)]
            k += 1
    return out


def class_index(class_names: tuple[str, ...] | list[str], which: str | int) -> int:
    """Class id for a name (case-insensitive) or an id given as int or digit string.

    Raises
    ------
    InputError
        If the name is unknown or the id is out of range.
    """
    import difflib

    from .errors import InputError

    names = list(class_names)
    if isinstance(which, int) or (isinstance(which, str) and which.strip().isdigit()):
        idx = int(which)
        if not 0 <= idx < len(names):
            raise InputError(
                f"class: expected an id in 0..{len(names) - 1} or a name in {names}, got {which!r}"
            )
        return idx
    lowered = [n.lower() for n in names]
    key = str(which).strip().lower()
    if key in lowered:
        return lowered.index(key)
    close = difflib.get_close_matches(key, lowered, n=1)
    hint = f"; did you mean {names[lowered.index(close[0])]!r}?" if close else ""
    raise InputError(f"class: expected one of {names}, got {which!r}{hint}")
