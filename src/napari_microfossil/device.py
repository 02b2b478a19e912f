"""Resolve the compute device in one place."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from .errors import InputError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def available_devices() -> list[str]:
    """Devices this machine can run on, best first (``"cpu"`` always last)."""
    import torch

    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    found.append("cpu")
    return found


def resolve_device(device: str | None = None) -> torch.device:
    """Turn ``None | "auto" | "cpu" | "cuda" | "cuda:N" | "mps"`` into a torch device.

    ``None`` and ``"auto"`` pick CUDA, then MPS, then the CPU.

    Raises
    ------
    InputError
        If the name is unknown, or names a device this machine does not have.
    """
    import torch

    name = "auto" if device is None else str(device).strip().lower()
    base = name.split(":", 1)[0]
    if base not in DEVICE_CHOICES:
        close = difflib.get_close_matches(base, DEVICE_CHOICES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError(
            f"device: expected one of {', '.join(DEVICE_CHOICES)}, got {device!r}{hint}"
        )
    if base == "auto":
        return torch.device(available_devices()[0])
    if base == "cuda" and not torch.cuda.is_available():
        raise InputError(
            "device: 'cuda' was asked for but this machine has no usable CUDA GPU; use --device cpu or auto"
        )
    if base == "mps" and "mps" not in available_devices():
        raise InputError(
            "device: 'mps' was asked for but this machine has no Apple GPU; use --device cpu or auto"
        )
    return torch.device(name)
