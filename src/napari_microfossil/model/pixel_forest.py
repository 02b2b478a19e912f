"""A random forest on multiscale pixel features, with auto-context, as a model file.

On the real sandstone MicroCT the ilastik recipe (a random forest on Gaussian
intensity, edge and Hessian features at sigmas 1..16) beats the U-Net fine-tuned on the
same five slices, and a second forest that also sees the first one's class
probabilities, smoothed at several scales (ilastik's "auto-context"), beats it again:
mean IoU 0.927 -> 0.938 and the thin clay-like phase 0.77 -> 0.81
(``docs/correction_loop.md``). :class:`PixelForestNet` is such a classifier as a torch
module: the trees are tensors (node feature, threshold, children, class shares), so a
forest is saved in the same ``.safetensors`` model file as a network, loaded with
:func:`~napari_microfossil.model.load_model` and run by ``segment`` tile by tile, on the
CPU or a GPU, along any axis. It is trained by
:func:`napari_microfossil.training.forest.iter_fit_forest`, not by gradient descent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .pixel_features import MultiscaleFeatures, blur, gaussian

#: ``ModelSpec.architecture`` of a pixel forest.
ARCHITECTURE = "PixelForest"
#: Default sigmas of the context features (pixels).
DEFAULT_CONTEXT_SIGMAS = (1.0, 2.0, 4.0, 8.0)
#: Tile edge a forest is run with: a forest has no size limit, and every tile edge
#: repeats pixels for the blurs (sigma 16 reaches 64 pixels), so tiles are large.
FOREST_TILE = 1024
#: Pixels scikit-learn walks at once (bounds its per-tree outputs).
_SKLEARN_CHUNK = 1 << 18
#: Pixels whose trees are walked at once (bounds the working memory of a tile).
_CHUNK = 1 << 16


def context_features(probs: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    """Auto-context: class probabilities ``(B, C, H, W)`` and their Gaussian blurs at
    each sigma, ``(B, C * (1 + len(sigmas)), H, W)``."""
    return torch.cat([probs, *(blur(probs, gaussian(s).to(probs)) for s in sigmas)], dim=1)


class PixelForestNet(nn.Module):
    """Stages of random forests on pixel features; each later stage also sees the
    previous stage's probabilities (:func:`context_features`).

    Parameters
    ----------
    num_classes : int
    sigmas : sequence of float
        Sigmas of the pixel features (:class:`MultiscaleFeatures`).
    context_sigmas : sequence of float
        Sigmas of the blurred probabilities fed to stages after the first.
    nodes : sequence of int
        Number of tree nodes of each stage (all its trees together).
    trees : sequence of int
        Number of trees of each stage.
    depth : sequence of int
        Depth of each stage's deepest tree (how many steps a pixel walks).

    The buffers ``stage{k}_{feature,threshold,left,right,value,roots}`` hold the trees;
    a leaf points to itself, so every pixel walks ``depth`` steps. ``forward`` maps
    ``(B, 1, H, W)`` to log class probabilities, so the softmax of ``segment`` gives
    back the forest's own probabilities.
    """

    def __init__(
        self,
        num_classes: int,
        sigmas: Sequence[float],
        context_sigmas: Sequence[float],
        nodes: Sequence[int],
        trees: Sequence[int],
        depth: Sequence[int],
    ) -> None:
        super().__init__()
        if not (len(nodes) == len(trees) == len(depth) >= 1):
            raise ValueError(
                f"pixel forest: expected as many node counts, tree counts and depths "
                f"(>= 1 stage), got {len(nodes)}, {len(trees)} and {len(depth)}"
            )
        self.num_classes = int(num_classes)
        self.pixel_features = MultiscaleFeatures(sigmas)
        self.context_sigmas = tuple(float(s) for s in context_sigmas)
        self.depth = [int(d) for d in depth]
        #: What a spec must hold to rebuild this network (:func:`build_forest`).
        self.arch_kwargs: dict[str, Any] = {
            "sigmas": list(self.pixel_features.sigmas),
            "context_sigmas": list(self.context_sigmas),
            "nodes": [int(n) for n in nodes],
            "trees": [int(t) for t in trees],
            "depth": list(self.depth),
        }
        for k, (n, t) in enumerate(zip(nodes, trees, strict=True)):
            n, t = int(n), int(t)
            self.register_buffer(f"stage{k}_feature", torch.zeros(n, dtype=torch.int32))
            self.register_buffer(f"stage{k}_threshold", torch.zeros(n, dtype=torch.float32))
            self.register_buffer(f"stage{k}_left", torch.zeros(n, dtype=torch.int32))
            self.register_buffer(f"stage{k}_right", torch.zeros(n, dtype=torch.int32))
            self.register_buffer(
                f"stage{k}_value", torch.zeros(n, self.num_classes, dtype=torch.float16)
            )
            self.register_buffer(f"stage{k}_roots", torch.zeros(t, dtype=torch.int32))

    @property
    def stages(self) -> int:
        return len(self.depth)

    def stage_inputs(self, features: torch.Tensor, probs: torch.Tensor | None) -> torch.Tensor:
        """What a stage sees: the pixel features, and after the first stage the
        previous probabilities with their blurs."""
        if probs is None:
            return features
        return torch.cat([features, context_features(probs, self.context_sigmas)], dim=1)

    def stage_probs(self, k: int, inputs: torch.Tensor) -> torch.Tensor:
        """Stage `k`'s class probabilities ``(B, C, H, W)`` of inputs ``(B, F, H, W)``.

        On the CPU the trees are walked by scikit-learn's compiled code (its ``Tree``
        rebuilt from the buffers, in threads); elsewhere, or if that fails, in torch.
        """
        b, f, h, w = inputs.shape
        x = inputs.permute(0, 2, 3, 1).reshape(-1, f).float()
        out = None
        if x.device.type == "cpu":
            out = self._sklearn_probs(k, x)
        if out is None:
            out = self._torch_probs(k, x)
        return out.reshape(b, h, w, self.num_classes).permute(0, 3, 1, 2)

    def _buffers_of(self, k: int) -> tuple[torch.Tensor, ...]:
        return tuple(
            getattr(self, f"stage{k}_{n}")
            for n in ("feature", "threshold", "left", "right", "value", "roots")
        )

    def _torch_probs(self, k: int, x: torch.Tensor) -> torch.Tensor:
        feature, threshold, left, right, value, roots = self._buffers_of(k)
        feature, left, right = feature.long(), left.long(), right.long()
        out = torch.empty(x.shape[0], self.num_classes, dtype=torch.float32, device=x.device)
        for a in range(0, x.shape[0], _CHUNK):
            part = x[a : a + _CHUNK]
            node = roots.long().expand(part.shape[0], -1)  # (pixels, trees)
            for _ in range(self.depth[k]):
                v = torch.gather(part, 1, feature[node])
                node = torch.where(v <= threshold[node], left[node], right[node])
            out[a : a + _CHUNK] = value[node].float().mean(dim=1)
        return out

    def _sklearn_probs(self, k: int, x: torch.Tensor) -> torch.Tensor | None:
        from concurrent.futures import ThreadPoolExecutor

        trees = self._sklearn_trees(k)
        if trees is None:
            return None
        data = np.ascontiguousarray(x.numpy(), dtype=np.float32)
        c = self.num_classes
        out = np.empty((data.shape[0], c), np.float32)
        workers = max(1, min(torch.get_num_threads(), len(trees)))
        groups = [trees[i::workers] for i in range(workers)]
        with ThreadPoolExecutor(workers) as pool:  # scikit-learn walks without the GIL
            for a in range(0, data.shape[0], _SKLEARN_CHUNK):
                part = data[a : a + _SKLEARN_CHUNK]

                def walk(group: list[Any], part: np.ndarray = part) -> np.ndarray:
                    acc = np.zeros((part.shape[0], c), np.float64)
                    for tree in group:
                        acc += tree.predict(part).reshape(part.shape[0], -1)[:, :c]
                    return acc

                total = np.sum(list(pool.map(walk, groups)), axis=0)
                out[a : a + _SKLEARN_CHUNK] = total / len(trees)
        return torch.from_numpy(out)

    def _sklearn_trees(self, k: int) -> list[Any] | None:
        """Stage `k`'s trees as scikit-learn ``Tree`` objects, made once per weights
        (None if this scikit-learn cannot take them: the torch walk is used)."""
        feature, threshold, left, right, value, roots = self._buffers_of(k)
        key = (k, feature.data_ptr(), feature._version, threshold._version, value._version)
        cache: dict[int, tuple[Any, list[Any] | None]] = self.__dict__.setdefault("_trees", {})
        if k in cache and cache[k][0] == key:
            return cache[k][1]
        try:
            trees = _sklearn_trees(
                *(t.numpy() for t in (feature, threshold, left, right, value, roots)),
                features=int(self._inputs_of(k)),
            )
        except Exception:  # a scikit-learn whose private Tree layout changed
            trees = None
        cache[k] = (key, trees)
        return trees

    def _inputs_of(self, k: int) -> int:
        n = self.pixel_features.channels
        return n if k == 0 else n + self.num_classes * (1 + len(self.context_sigmas))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for one in x.split(1):  # tile by tile: a tile's inputs are 40 floats a pixel
            features = self.pixel_features(one)
            probs = None
            for k in range(self.stages):
                probs = self.stage_probs(k, self.stage_inputs(features, probs))
            assert probs is not None
            outs.append(torch.log(probs.clamp_min(1e-6)))
        return torch.cat(outs)


def _sklearn_trees(
    feature: np.ndarray,
    threshold: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    value: np.ndarray,
    roots: np.ndarray,
    *,
    features: int,
) -> list[Any]:
    """scikit-learn ``Tree`` objects of one stage's buffers (its pickling state)."""
    from sklearn.tree._tree import NODE_DTYPE, Tree

    c = value.shape[1]
    ends = [*roots[1:].tolist(), len(feature)]
    trees = []
    for a, b in zip(roots.tolist(), ends, strict=True):
        n = b - a
        idx = np.arange(n)
        lo, hi = left[a:b].astype(np.int64) - a, right[a:b].astype(np.int64) - a
        leaf = lo == idx
        nodes = np.zeros(n, dtype=NODE_DTYPE)
        nodes["left_child"] = np.where(leaf, -1, lo)
        nodes["right_child"] = np.where(leaf, -1, hi)
        nodes["feature"] = np.where(leaf, -2, feature[a:b])
        nodes["threshold"] = np.where(leaf, -2.0, threshold[a:b].astype(np.float64))
        nodes["n_node_samples"] = 1
        nodes["weighted_n_node_samples"] = 1.0
        tree = Tree(features, np.array([c], dtype=np.intp), 1)
        tree.__setstate__(
            {
                "max_depth": int(n),
                "node_count": n,
                "nodes": nodes,
                "values": value[a:b].astype(np.float64)[:, None, :],
            }
        )
        trees.append(tree)
    return trees


def arch_kwargs_of(
    forests: Sequence[Any], sigmas: Sequence[float], context_sigmas: Sequence[float]
) -> dict[str, Any]:
    """The spec's ``arch_kwargs`` of fitted scikit-learn forests, one a stage."""
    return {
        "sigmas": [float(s) for s in sigmas],
        "context_sigmas": [float(s) for s in context_sigmas],
        "nodes": [int(sum(t.tree_.node_count for t in f.estimators_)) for f in forests],
        "trees": [len(f.estimators_) for f in forests],
        "depth": [int(max(t.tree_.max_depth for t in f.estimators_)) for f in forests],
    }


def state_of(forests: Sequence[Any], num_classes: int) -> dict[str, torch.Tensor]:
    """The buffers of :class:`PixelForestNet` for fitted scikit-learn forests.

    A forest that never saw some class (no training pixel of it) gives it probability 0.
    Thresholds are rounded to float32 (the features are float32, as scikit-learn's
    trees see them), class shares to float16: a model file holds about 24 bytes a node.
    """
    state: dict[str, torch.Tensor] = {}
    for k, forest in enumerate(forests):
        classes = np.asarray(forest.classes_, dtype=np.int64)
        feats, thrs, lefts, rights, values, roots = [], [], [], [], [], []
        offset = 0
        for est in forest.estimators_:
            t = est.tree_
            n = t.node_count
            idx = np.arange(n, dtype=np.int64)
            leaf = t.children_left < 0
            feats.append(np.where(leaf, 0, t.feature).astype(np.int64))
            thrs.append(np.where(leaf, np.inf, t.threshold))
            lefts.append(np.where(leaf, idx, t.children_left) + offset)
            rights.append(np.where(leaf, idx, t.children_right) + offset)
            v = t.value[:, 0, :].astype(np.float64)
            v = v / np.maximum(v.sum(axis=1, keepdims=True), 1e-12)
            full = np.zeros((n, num_classes), np.float32)
            full[:, classes] = v
            values.append(full)
            roots.append(offset)
            offset += n
        if offset >= 2**31:
            raise ValueError(f"pixel forest: {offset} nodes in a stage is too many")
        state[f"stage{k}_feature"] = torch.from_numpy(np.concatenate(feats).astype(np.int32))
        state[f"stage{k}_threshold"] = torch.from_numpy(np.concatenate(thrs).astype(np.float32))
        state[f"stage{k}_left"] = torch.from_numpy(np.concatenate(lefts).astype(np.int32))
        state[f"stage{k}_right"] = torch.from_numpy(np.concatenate(rights).astype(np.int32))
        state[f"stage{k}_value"] = torch.from_numpy(np.concatenate(values).astype(np.float16))
        state[f"stage{k}_roots"] = torch.tensor(roots, dtype=torch.int32)
    return state


def build_forest(num_classes: int, arch_kwargs: dict[str, Any]) -> PixelForestNet:
    """An empty :class:`PixelForestNet` shaped as ``arch_kwargs`` says."""
    try:
        return PixelForestNet(
            num_classes,
            arch_kwargs["sigmas"],
            arch_kwargs.get("context_sigmas", DEFAULT_CONTEXT_SIGMAS),
            arch_kwargs["nodes"],
            arch_kwargs["trees"],
            arch_kwargs["depth"],
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"pixel forest: incomplete arch_kwargs ({exc})") from None
