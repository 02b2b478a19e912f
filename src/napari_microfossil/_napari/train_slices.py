"""Which labels layer and which of its slices Fine-tune trains on.

Labelled planes are known from the layer's review record only, never from its values:
0 is a class like any other (the sandstone's pores), so an all-0 plane may be labelled
or not. The record holds the planes the user painted or marked reviewed in Review &
correct, and the planes placed from a folder of label slices (:mod:`.place`). The
Fine-tune panel's Slices field may name slices instead: a subset of the reviewed ones
(to hold some out), or, on a layer without a record (a label volume opened from a
file), the planes that hold labels.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import InputError
from ..training import parse_slices
from ..training.finetune import describe_slices, describe_split
from . import layers
from .layers import PLACED

Slices = dict[str, list[int]]

#: The Slices field's option name in messages.
OPTION = "slices"


def is_corrected(layer: Any) -> bool:
    """A class-labels layer with reviewed slices (painted, marked or placed), or a
    Segment result."""
    if layers.is_instance_layer(layer):
        return False
    return bool(layers.reviewed_slices_of(layer)) or layers.is_segment_result(layer)


def default_labels(reviewing: Any, candidates: Iterable[Any]) -> Any:
    """The layer the user most likely corrected: the one under review if it has
    reviewed slices, else the last with some, else the one under review, else the last
    Segment result (None if none)."""
    found = [lyr for lyr in candidates if not layers.is_instance_layer(lyr)]
    ranked = [reviewing if layers.reviewed_slices_of(reviewing) else None]
    ranked += [*[lyr for lyr in found if layers.reviewed_slices_of(lyr)][::-1], reviewing]
    ranked += [lyr for lyr in found if layers.is_segment_result(lyr)][::-1]
    return next((lyr for lyr in ranked if lyr is not None), None)


def typed_slices(text: str) -> Slices | None:
    """The Slices field: ``"z:0,2,4"`` (or ``"0,2,4"``, z-slices); None when empty.

    Raises
    ------
    InputError
        Naming the field, on a malformed spec.
    """
    text = text.strip()
    if not text:
        return None
    if ":" not in text:
        text = f"z:{text}"
    return {a: sorted(set(idx)) for a, idx in parse_slices(text, OPTION).items()}


def slices_to_train(layer: Any, text: str) -> Slices:
    """The slices Fine-tune trains on (validation included): the Slices field's if it
    names any, else the layer's reviewed slices.

    Raises
    ------
    InputError
        When there are none, or the field names a slice the layer's record says is
        not reviewed (its plane may be unlabelled: 0 there would train as class 0).
    """
    reviewed = layers.reviewed_slices_of(layer)
    typed = typed_slices(text)
    if typed is None:
        if not reviewed:
            raise InputError(
                f"no reviewed slices on {layer.name!r}: in Review & correct, paint your "
                "corrections or press 'Mark slice reviewed' on the slices you checked, or "
                "name the labelled slices in Slices (e.g. z:0,10,20); Fine-tune learns from "
                "those slices only"
            )
        return reviewed
    if layers.meta(layer).get(layers.REVIEW) is not None and reviewed:
        outside = [
            f"{a}={i}" for a, idx in typed.items() for i in idx if i not in reviewed.get(a, [])
        ]
        if outside:
            raise InputError(
                f"{OPTION}: {', '.join(outside[:5])} not reviewed on {layer.name!r} (an "
                "unreviewed plane may hold no labels, and 0 would train as class 0); mark it "
                "reviewed in Review & correct, or leave it out"
            )
    return typed


def describe(layer: Any, text: str, *, hold_out: bool = True) -> str:
    """What Fine-tune will train on, for the line under the Labels chooser; with
    `hold_out` False (every reviewed slice trains), says that none is held out."""
    if layer is None:
        return "Choose the Labels layer you corrected"
    try:
        slices = slices_to_train(layer, text)
    except InputError as exc:
        if text.strip():
            return str(exc)  # a malformed Slices field, or slices not reviewed
        if layers.meta(layer).get(layers.REVIEW) is None:
            return (
                f"{layer.name!r} has no review record: name its labelled slices in Slices "
                "(e.g. z:0,10,20), or mark them reviewed in Review & correct"
            )
        return (
            "no reviewed slices — mark slices reviewed (or paint in them) in Review & "
            "correct, or name the labelled slices in Slices"
        )
    found = describe_split(slices) if hold_out else f"{describe_slices(slices)}; all train"
    if not hold_out:
        found += ", none held out (the new model is compared with its base on them)"
    if text.strip():
        return found.replace("reviewed slice", "chosen slice", 1)
    placed = layers.meta(layer).get(PLACED)
    if isinstance(placed, dict) and placed.get("numbers"):
        numbers = ", ".join(map(str, placed["numbers"][:6]))
        more = ", ..." if len(placed["numbers"]) > 6 else ""
        found += f"; placed from the label slices numbered {numbers}{more}"
    return found
