"""Train or fine-tune a model: the one training path of ``microfossil train``, the
Fine-tune panel, the benchmarks and the default-model script.

A :class:`TrainRequest` is checked when it is built (output, slices, classes,
smoothing, device); :func:`iter_run_training` then owns the rules:

- slices: the given ones, or every z-slice with labels (not the validation ones);
- validation: the given ``val_slices``, or a random quarter of the slices (at least
  one) when there are :data:`~napari_microfossil.training.finetune.MIN_SLICES_FOR_VALIDATION`
  or more, else none (all train);
- base model: ``"default"`` or a file (its normalisation kept, its validation score
  taken first), ``"scratch"`` or ``"imagenet"`` (a new network);
- classes: label ids the base model lacks get a new head (named by ``classes``, the
  label file's names, or ``class_N``), with a warning; what cannot work (fewer class
  names than the labels' ids) is refused;
- optionally the learning-rate finder on the training slices first;
- torchrun: one process group for the run (see :mod:`~napari_microfossil.training.distributed`);
- cancel: the best model so far stays in the output (:func:`cancel_report` says what
  was kept); however the run ends, the network is dropped and GPU memory released.
"""

from .report import (
    CancelReport,
    cancel_report,
    lr_find_report,
    lr_find_summary,
    output_stamp,
    rounds_report,
    run_report,
)
from .request import (
    DEFAULT_LR,
    NEW_HEADS,
    NEW_NETWORK_BASES,
    Notice,
    TrainRequest,
    TrainRun,
    check_class_count,
    labelled_z_slices,
    split_for_training,
)
from .run import iter_find_lr, iter_run_training, iter_train_slices

__all__ = [
    "DEFAULT_LR",
    "NEW_HEADS",
    "NEW_NETWORK_BASES",
    "CancelReport",
    "Notice",
    "TrainRequest",
    "TrainRun",
    "cancel_report",
    "check_class_count",
    "iter_find_lr",
    "iter_run_training",
    "iter_train_slices",
    "labelled_z_slices",
    "lr_find_report",
    "lr_find_summary",
    "output_stamp",
    "rounds_report",
    "run_report",
    "split_for_training",
]
