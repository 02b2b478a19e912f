"""What a training run reports, in the same words in the command line and the panel:
the cancel report, the run summary, the learning-rate finder."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError
from ...training import LRFindResult
from .request import TrainRun


def output_stamp(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """``(mtime_ns, size)`` of a file, None if absent: tells whether a run wrote it."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


@dataclass(frozen=True)
class CancelReport:
    """What a cancelled run kept: the best model so far, or nothing.

    ``text`` is the full sentence, ``summary`` a short status line.
    """

    path: Path
    written: bool
    best_epoch: int | None = None
    epochs_run: int | None = None

    @property
    def text(self) -> str:
        if not self.written:
            return "cancelled before the first epoch ended; no model was written"
        return (
            f"cancelled; the best model so far (epoch {self.best_epoch} of {self.epochs_run} "
            f"run) is in {self.path}"
        )

    @property
    def summary(self) -> str:
        if not self.written:
            return "cancelled before the first epoch ended; no model written"
        return f"cancelled; the best model (epoch {self.best_epoch}) is kept"


def cancel_report(output: str | os.PathLike[str], before: tuple[int, int] | None) -> CancelReport:
    """What a run cancelled now leaves in `output`; `before` its :func:`output_stamp`
    when the run started."""
    from ...model import read_spec

    path = Path(output)
    now = output_stamp(path)
    if now is None or now == before:
        return CancelReport(path, written=False)
    try:
        prov = read_spec(path).provenance
    except InputError:  # pragma: no cover - the engine writes atomically
        return CancelReport(path, written=True)
    return CancelReport(path, True, prov.get("best_epoch"), prov.get("epochs_run"))


def run_report(run: TrainRun, *, slices: str = "the slices") -> list[str]:
    """What a finished run did: its warnings, the validation score before and after
    (or why there was none; `slices` describes them), how it ended and where the model is."""
    lines = [f"Warning: {w}" for w in run.warnings]
    if run.stopped == "fitted":  # a pixel forest: fitted once, no epochs
        name = run.score_key.removeprefix("iou_")
        if run.after is not None:
            lines.append(f"Pixel forest fitted: validation IoU {name} {run.after:.3f}")
        else:
            score = f" IoU {name} {run.fit_after:.3f}" if run.fit_after is not None else ""
            lines.append(f"Pixel forest fitted on {slices} (no validation; on them{score})")
        lines.append(f"Saved {run.path}.")
        return lines
    if run.before is not None and run.after is not None:
        lines.append(
            f"Validation IoU {run.score_key.removeprefix('iou_')}: {run.before:.3f} (base) → "
            f"{run.after:.3f} (fine-tuned, epoch {run.best_epoch})"
        )
        if not run.improved:
            lines.append(
                "Below the base model on the held-out slices: Segment keeps the model it "
                "had. Review more slices, give more time, or try Smoothing; the new model "
                "is in Segment's list (and Segment again uses it) if you want to see it."
            )
    else:
        lines.append(
            f"No validation: {slices} are too few to hold any out, so all trained (best "
            f"epoch {run.best_epoch} by training loss)"
        )
        if run.fit_before is not None and run.fit_after is not None:
            name = run.score_key.removeprefix("iou_")
            lines.append(
                f"On those slices IoU {name}: {run.fit_before:.3f} (base) → "
                f"{run.fit_after:.3f} (fine-tuned)"
                + ("" if run.improved else "; below the base even on the slices it learned")
            )
            if not run.improved:
                lines.append(
                    "Segment keeps the model it had. Give more time or review more slices "
                    "(from 4, one is held out to validate); the new model is in Segment's list."
                )
    how = {"time-limit": "time budget used", "early-stopping": "stopped early"}.get(
        run.stopped, f"{len(run.history)} epochs"
    )
    lines.append(f"Saved {run.path} ({how}).")
    return lines


def lr_find_report(found: LRFindResult, explicit_lr: float | None) -> list[str]:
    """The LR finder's report: the loss per decade of rates and the suggestion, and
    whether training uses it (`explicit_lr` None) or the rate given."""
    lrs = np.asarray(found.lrs)
    end = "" if found.stopped == "completed" else f", stopped at {lrs[-1]:.1e}: the loss diverged"
    lines = [
        f"LR finder: {len(lrs)} steps from {found.min_lr:.1e} to {found.max_lr:.1e}{end}",
        f"{'lr':>10} {'loss':>8}  (smoothed)",
    ]
    # One row per decade, and the lowest loss.
    rows = {int(np.argmin(np.abs(np.log10(lrs) - d))) for d in range(-20, 21)}
    rows.add(int(np.argmin(found.smoothed)))
    lines += [
        f"{lrs[i]:>10.2e} {found.smoothed[i]:>8.4f}"
        for i in sorted(rows)
        if math.isfinite(found.smoothed[i])
    ]
    lines.append(
        f"Lowest loss at lr {found.min_loss_lr:.2e}; steepest descent at lr {found.steepest_lr:.2e}"
    )
    if found.stopped == "completed" and found.min_loss_lr >= found.lrs[-1]:
        lines.append(
            "Note: the loss was still falling at the end of the sweep; the suggestion is cautious"
        )
    if explicit_lr is None:
        lines.append(f"Suggested lr {found.suggestion:.2e} (lowest-loss lr / 10): training with it")
    else:
        lines.append(
            f"Suggested lr {found.suggestion:.2e} (lowest-loss lr / 10); training with --lr "
            f"{explicit_lr:g} as given"
        )
    return lines


def lr_find_summary(found: LRFindResult) -> str:
    """The LR finder's result in one status line."""
    how = (
        f"; the sweep ended at {found.lrs[-1]:.2g}, where the loss grew past 4x its lowest"
        if found.stopped == "diverged"
        else ""
    )
    return (
        f"learning rate set to {found.suggestion:.2g} (a tenth of {found.min_loss_lr:.2g}, "
        f"the rate with the lowest loss; steepest fall at {found.steepest_lr:.2g}){how}"
    )


def _slices_text(slices: Any) -> str:
    if not isinstance(slices, dict) or not slices:
        return "no slices"
    n = sum(len(v) for v in slices.values())
    spec = "; ".join(f"{a}:{','.join(map(str, v))}" for a, v in sorted(slices.items()) if v)
    return f"{n} slice{'s' if n != 1 else ''} ({spec})"


def rounds_report(spec: Any) -> list[str]:
    """One line per correction round behind a model (its provenance's ``rounds``),
    oldest first; empty for a model that was not fine-tuned by this tool.

    ``"round 2: 3 slices (z:34,62,88) + 1 to validate, from m1.safetensors → IoU fossil 0.91"``
    """
    from ...model import default_score_key

    rounds = spec.provenance.get("rounds")
    if not isinstance(rounds, list):
        return []
    key = default_score_key(spec)
    name = key.removeprefix("iou_").replace("_", " ") if key.startswith("iou_") else "mean IoU"
    lines = []
    for i, r in enumerate(rounds, 1):
        if not isinstance(r, dict):
            continue
        score = spec.metrics.get(key) if i == len(rounds) else r.get("score")
        val = r.get("val_slices") or {}
        n_val = sum(len(v) for v in val.values()) if isinstance(val, dict) else 0
        lines.append(
            f"round {i}: {_slices_text(r.get('train_slices'))}"
            + (f" + {n_val} to validate" if n_val else ", no validation")
            + f", from {r.get('base', '?')}"
            + (f" → IoU {name} {float(score):.3f}" if isinstance(score, (int, float)) else "")
        )
    return lines
