"""Progress records yielded by the engine's long operations.

Every long operation is a generator that yields :class:`Progress` and *returns* its
result. A caller that wants the result and no progress uses :func:`drain`; the command
line wraps the generator in tqdm; the napari layer runs it in a ``thread_worker`` and
cancels it by no longer iterating (``worker.quit()``).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """One step of a long operation.

    Parameters
    ----------
    stage : str
        What is being done, e.g. ``"segment z"`` or ``"export"``.
    done, total : int
        Units finished so far and units in all, for this stage.
    info : dict
        Optional live values (loss, IoU, ...), for display only.
    """

    stage: str
    done: int
    total: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


ProgressGen = Generator[Progress, None, T]


def drain(
    gen: Generator[Progress, None, T], callback: Callable[[Progress], Any] | None = None
) -> T:
    """Run a progress generator to the end and return its result.

    Parameters
    ----------
    gen : generator
        A generator yielding :class:`Progress` and returning a result.
    callback : callable, optional
        Called with each progress record.
    """
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        if callback is not None:
            callback(p)
