"""The Fine-tune panel's training options: the recipe (:class:`TrainConfig`) and the
request's own options, built here so the panel only lays them out.

:class:`TrainOptions` owns the fields of the Advanced section (steps, batch, crop,
learning rate, augmentation, device, pixel features) and the "Train on every reviewed
slice" box; :meth:`TrainOptions.request_options` gives the ``TrainRequest`` keywords
they set. One more engine option is one more field here and one more entry there.
"""

from __future__ import annotations

from typing import Any

from qtpy import QtWidgets as qw

from ..errors import InputError
from ..training import TrainConfig
from ..workflows import train as workflow
from .forms import button, fill_devices, form, row, spin

#: Epochs in a time-limited run: the time limit ends it (and shapes the LR schedule).
TIME_MODE_EPOCHS = 10_000
AUGMENT_CHOICES = {"light": "light (this scan)", "full": "full (other scans too)", "off": "off"}
#: What the Pixel features field proposes (ilastik's sigmas, the forest's of issue 12).
PIXEL_SIGMAS_HINT = "e.g. 1, 2, 4, 8, 16"
#: The Pixel features field's option name in messages.
PIXEL_OPTION = "pixel features"

ALL_TRAIN_TIP = (
    "Train on every reviewed slice, none held out for validation. The new model is then "
    "compared with its base on the slices it learned from (which says whether it got "
    "worse there, not how well it does elsewhere)."
)
#: The Method choices: what a run makes.
METHODS = {
    "network": "U-Net (fine-tune the base model)",
    "forest": "Pixel forest (ilastik-like, for multi-phase rock)",
}
METHOD_TIP = (
    "U-Net: fine-tune the base model on the reviewed slices. Pixel forest: fit a random "
    "forest on multiscale pixel features with auto-context (ilastik's recipe), in minutes on "
    "a CPU; on real multi-phase rock with few labelled slices it is usually the better "
    "model (sandstone, 5 slices: mean IoU 0.94 against the U-Net's 0.83-0.85). Base model "
    "and budget are not used by the forest."
)
PIXEL_TIP = (
    "Sigmas (pixels) of multiscale pixel features (intensity, edges, texture, as "
    "ilastik's) fed into the class head beside the network's own; they help thin, "
    "faint phases such as clay. Empty: none (the base model's head as it is)."
)


def pixel_sigmas(text: str) -> tuple[float, ...] | None:
    """The Pixel features field: sigmas separated by commas or spaces; None when empty.

    Raises
    ------
    InputError
        Naming the field, for a value that is not a number.
    """
    parts = text.replace(",", " ").split()
    if not parts:
        return None
    try:
        return tuple(float(p) for p in parts)
    except ValueError:
        raise InputError(
            f"{PIXEL_OPTION}: expected sigmas in pixels separated by commas "
            f"({PIXEL_SIGMAS_HINT}), got {text.strip()!r}"
        ) from None


class TrainOptions:
    """The option fields of the Fine-tune panel (children of `parent`), and the recipe
    and request keywords they give.

    ``advanced`` is the Advanced section's widget (hidden until asked for);
    ``all_train`` the "Train on every reviewed slice" box, laid out by the panel.
    """

    def __init__(self, parent: qw.QWidget) -> None:
        self.method = qw.QComboBox(parent)
        for key, text in METHODS.items():
            self.method.addItem(text, key)
        self.method.setToolTip(METHOD_TIP)
        self.all_train = qw.QCheckBox("Train on every reviewed slice (no validation)", parent)
        self.all_train.setToolTip(ALL_TRAIN_TIP)
        self.advanced = adv = qw.QWidget(parent)
        self.steps_per_epoch = spin(adv, 1, 10_000, 25)
        self.batch_size = spin(adv, 1, 256, 8)
        tip = "Edge of the random training crops, a multiple of 32"
        self.crop_size = spin(adv, 32, 2048, 128, tip, step=32, suffix=" px")
        tip = "Peak learning rate (one-cycle schedule)"
        self.lr = spin(adv, 1e-6, 1.0, workflow.DEFAULT_LR, tip, decimals=6, step=1e-4)
        tip = "LR finder: a step at each of 100 rates from 1e-6 to 1 on the training slices; "
        self.find_lr = button(adv, "Find", tip + "takes a tenth of the lowest-loss rate")
        self.augment = qw.QComboBox(adv)
        for key, text in AUGMENT_CHOICES.items():
            self.augment.addItem(text, key)
        tip = "light: 90° turns, flips and gain, for this very scan; full: also rotations, "
        self.augment.setToolTip(tip + "shear, zoom, noise and blur, for other scans too")
        self.pixel_features = qw.QLineEdit(adv)
        self.pixel_features.setPlaceholderText(f"none ({PIXEL_SIGMAS_HINT})")
        self.pixel_features.setToolTip(PIXEL_TIP)
        self.device = qw.QComboBox(adv)
        fill_devices(self.device)
        form(
            adv,
            ("Steps per epoch", self.steps_per_epoch),
            ("Batch size", self.batch_size),
            ("Crop size", self.crop_size),
            ("Learning rate", row(self.lr, self.find_lr)),
            ("Augmentation", self.augment),
            ("Pixel features", self.pixel_features),
            ("Device", self.device),
        )
        adv.setVisible(False)

    def config(self, *, minutes: float | None, epochs: int) -> TrainConfig:
        """The recipe: a time budget of `minutes` (None: `epochs` epochs)."""
        return TrainConfig(
            epochs=TIME_MODE_EPOCHS if minutes is not None else int(epochs),
            steps_per_epoch=int(self.steps_per_epoch.value()),
            batch_size=int(self.batch_size.value()),
            crop_size=int(self.crop_size.value()),
            lr=float(self.lr.value()),
            augment=str(self.augment.currentData()),
            time_limit_s=float(minutes) * 60.0 if minutes is not None else None,
        )

    def request_options(self) -> dict[str, Any]:
        """The ``TrainRequest`` keywords these fields set (the request checks them).

        Raises
        ------
        InputError
            For a malformed Pixel features field.
        """
        from ..training.forest import ForestRecipe

        method = str(self.method.currentData())
        return {
            "method": method,
            "forest": ForestRecipe() if method == "forest" else None,
            "hold_out": not self.all_train.isChecked(),
            "pixel_features": pixel_sigmas(self.pixel_features.text()),
            "device": str(self.device.currentData()),
            "option_names": {"pixel_features": PIXEL_OPTION, "hold_out": "train on every slice"},
        }


def names_written_back(layer: Any, names: tuple[str, ...]) -> str:
    """Give the labels layer Fine-tune trained on the new model's class names (its ids
    mean them now), so Review's class picker and the status bar name them; returns a
    line for the panel, empty when they were its names already."""
    from . import layers

    if layer is None or tuple(layers.class_names_of(layer)) == tuple(names):
        return ""
    layers.show_class_names(layer, names)
    return f"Class names on {layer.name!r}: {', '.join(names)}."
