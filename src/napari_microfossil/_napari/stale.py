"""Telling a panel that the layer its result came from has changed since."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: Layer events after which a result made from the layer no longer describes it: the
#: data replaced (Segment again) or painted / filled / erased.
_EVENTS = ("data", "paint")


class SourceWatch:
    """Calls ``on_stale(layer_name)`` once, the first time the followed layer changes.

    ``follow(layer)`` starts over with a new source (the old one is let go); ``follow(None)``
    stops. The result's owner shows a note such as "out of date: extract again".
    """

    def __init__(self, on_stale: Callable[[str], None]) -> None:
        self._on_stale = on_stale
        self._layer: Any = None
        self.stale = False

    def follow(self, layer: Any) -> None:
        self._disconnect()
        self._layer, self.stale = layer, False
        for name in _EVENTS:
            emitter = getattr(getattr(layer, "events", None), name, None)
            if emitter is not None:
                emitter.connect(self._changed)

    def _disconnect(self) -> None:
        for name in _EVENTS:
            emitter = getattr(getattr(self._layer, "events", None), name, None)
            if emitter is not None:
                emitter.disconnect(self._changed)

    def _changed(self, event: Any = None) -> None:
        if not self.stale and self._layer is not None:
            self.stale = True
            self._on_stale(str(self._layer.name))


def stale_note(name: str, result: str = "these fossils were extracted") -> str:
    """The note a panel shows in place of its summary once its source changed."""
    return f"⚠ {name!r} has changed since {result}: Extract again to update the table"
