"""Train or fine-tune a slice-wise U-Net on labelled slices.

The recipe follows the project's origin (see BRIEF.md): random crops that over-sample the
rare classes, geometric and CT-specific intensity augmentation, Dice + cross-entropy
with class weights, AdamW with a one-cycle schedule, optionally progressive resolution
(1/4 -> 1/2 -> full) and a frozen-encoder phase followed by discriminative learning
rates. Validation on held-out slices each epoch; the best model is kept (and written to
disk as it improves, so a cancelled run leaves a loadable model).

One module per ingredient: :mod:`.config` (the recipe), :mod:`.slices` (training planes
and the split), :mod:`.augment` (crops and augmentation), :mod:`.loss`,
:mod:`.evaluate`, :mod:`.schedule` (parameter groups, one-cycle), :mod:`.loop` (the
training generator), :mod:`.lr_find`, :mod:`.classes` (new classes, a new head), :mod:`.head` (the
new head fitted in closed form),
:mod:`.finetune` (reviewed slices, output path) and :mod:`.distributed` (torchrun).
Which of them a training run uses, and how, is decided once in
:mod:`napari_microfossil.workflows.train`.
"""

from .augment import CropSampler, augment_batch
from .classes import class_names_for_labels, expand_classes, max_label_id
from .config import AUGMENT_MODES, TIME_CLOCKS, TrainConfig
from .evaluate import evaluate
from .head import add_pixel_features, decoder_features, fit_head
from .loop import TrainResult, iter_train, train
from .loss import auto_class_weights, dice_ce_loss
from .lr_find import LRFindResult, iter_lr_find, lr_find, suggest_lr
from .schedule import one_cycle
from .slices import SliceSet, parse_slices, slices_from_volume, split_slices

__all__ = [
    "AUGMENT_MODES",
    "TIME_CLOCKS",
    "CropSampler",
    "LRFindResult",
    "SliceSet",
    "TrainConfig",
    "TrainResult",
    "add_pixel_features",
    "augment_batch",
    "auto_class_weights",
    "class_names_for_labels",
    "decoder_features",
    "dice_ce_loss",
    "evaluate",
    "expand_classes",
    "fit_head",
    "iter_lr_find",
    "iter_train",
    "lr_find",
    "max_label_id",
    "one_cycle",
    "parse_slices",
    "slices_from_volume",
    "split_slices",
    "suggest_lr",
    "train",
]
