"""Classes of a model and of its labels: names for new label ids, the id check, and a
new head for new classes."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import InputError
from ..metrics import IGNORE_INDEX
from ..model import ModelSpec
from .slices import SliceSet

if TYPE_CHECKING:
    import torch


def class_names_for_labels(
    class_names: Sequence[str],
    max_label: int,
    *,
    label_class_names: Sequence[str] | None = None,
) -> tuple[str, ...]:
    """The model's class names, extended to cover label ids up to ``max_label``.

    Ids the model already has keep its names; each new id takes its name from
    ``label_class_names`` (e.g. a label file's metadata) when given, else ``class_<id>``.
    """
    names = list(class_names)
    extra = list(label_class_names or ())
    for i in range(len(names), int(max_label) + 1):
        name = extra[i] if i < len(extra) and extra[i] else f"class_{i}"
        while name in names:  # a name the model uses for another id
            name = f"{name}_{i}"
        names.append(name)
    return tuple(names)


def max_label_id(data: SliceSet) -> int:
    """The largest class id in ``data``'s labels (255 = unlabelled is ignored)."""
    return max((int(lab[lab != IGNORE_INDEX].max(initial=0)) for lab in data.labels), default=0)


def check_label_ids(data: SliceSet, spec: ModelSpec) -> None:
    n_cls = spec.num_classes
    found = max_label_id(data)
    if found >= n_cls:
        raise InputError(
            f"labels: found class ids >= {n_cls} (up to {found}), but the model has classes "
            f"{list(spec.class_names)}; give the model a new head first with expand_classes() "
            "(microfossil train --classes)"
        )


def expand_classes(
    network: torch.nn.Module,
    spec: ModelSpec,
    class_names: Sequence[str],
    *,
    model_name: str | None = None,
    seed: int = 0,
) -> tuple[torch.nn.Module, ModelSpec]:
    """A network whose head predicts ``class_names``, reusing everything it can.

    Encoder and decoder weights (and batch-norm statistics) are copied unchanged; so is
    the head's output channel of every class whose name the model already has (matched
    by name, so a class may move to another id). Channels of new classes start from the
    architecture's initialisation. The old classes' logits of the new network therefore
    equal the old network's. Warns once (``UserWarning``) when there are new classes.

    Parameters
    ----------
    network : torch.nn.Module
        The trained network for ``spec`` (left unchanged).
    spec : ModelSpec
    class_names : sequence of str
        All classes of the new model in id order, background first (at least 2, unique).
    model_name : str, optional
        How to name the model in the warning (default: its base or "the model").
    seed : int
        Seeds the initial weights of the new classes' channels.

    Returns
    -------
    network, spec
        ``network`` and ``spec`` themselves when the classes are the same; otherwise a
        new network (on ``network``'s device, in its train/eval mode) and a spec with the
        new classes, no metrics, and ``provenance["classes_from"]`` the old class names.

    Raises
    ------
    InputError
        If ``class_names`` has fewer than 2 or repeated names.
    """
    import torch

    from ..model import build_network

    new_names = tuple(str(n) for n in class_names)
    old_names = tuple(spec.class_names)
    if len(new_names) < 2:
        raise InputError(f"class_names: expected at least 2 classes, got {list(new_names)}")
    if len(set(new_names)) != len(new_names):
        dupes = sorted({n for n in new_names if new_names.count(n) > 1})
        raise InputError(f"class_names: expected unique names, got {dupes} more than once")
    if new_names == old_names:
        return network, spec
    added = [n for n in new_names if n not in old_names]
    prov = dict(spec.provenance)
    prov["classes_from"] = list(old_names)
    new_spec = spec.with_updates(class_names=new_names, metrics={}, provenance=prov)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        new_net = build_network(new_spec)
    old_state = network.state_dict()
    state = new_net.state_dict()
    n_old, n_new = len(old_names), len(new_names)
    head_keys = 0
    for name, value in state.items():
        src = old_state.get(name)
        if src is None:
            raise InputError(f"expand_classes: the network has no weight {name!r}")
        if tuple(src.shape) == tuple(value.shape) and not (
            name.startswith("segmentation_head.") and n_old == n_new
        ):
            value.copy_(src)
            continue
        # A head tensor: output channels along the first axis.
        if not name.startswith("segmentation_head.") or src.shape[0] != n_old:
            raise InputError(
                f"expand_classes: cannot map weight {name!r} of shape {tuple(src.shape)} "
                f"onto {tuple(value.shape)}"
            )
        head_keys += 1
        with torch.no_grad():
            for i, cls in enumerate(new_names):
                if cls in old_names:
                    value[i].copy_(src[old_names.index(cls)])
    if head_keys == 0:
        raise InputError("expand_classes: found no class head (segmentation_head) to rebuild")
    torch.nn.Module.load_state_dict(new_net, state, strict=True)
    first = next(network.parameters(), None)
    if first is not None:
        new_net = new_net.to(first.device)
    new_net.train(network.training)
    who = model_name or str(spec.provenance.get("base") or "the model")
    what = (
        f"new head for classes {added}" if added else "new head (classes renamed, moved or dropped)"
    )
    warnings.warn(
        f"model {who} has classes {list(old_names)}; labels have {n_new} classes: {what}",
        UserWarning,
        stacklevel=2,
    )
    return new_net, new_spec
