"""The ilastik recipe as a baseline: a random forest on multiscale pixel features.

Features per slice: ``skimage.feature.multiscale_basic_features`` (intensity, edges and
texture at Gaussian sigmas 1..16), the pixel classifier a user of ilastik would pick.
The forest (scikit-learn, 100 trees) trains on a random subsample of the labelled
slices' pixels and predicts every other slice, one at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def slice_features(
    image: np.ndarray, *, sigma_min: float = 1.0, sigma_max: float = 16.0
) -> np.ndarray:
    """Multiscale features of every z-slice.

    Parameters
    ----------
    image : ndarray, shape (Z, Y, X)
        Scaled to 0..1 per volume (0.5 / 99.5 percentiles) before the features.

    Returns
    -------
    ndarray of float32, shape (Z, Y, X, F)
        F = 4 features (intensity, edges, two texture eigenvalues) per sigma.
    """
    from skimage.feature import multiscale_basic_features

    lo, hi = np.percentile(image, [0.5, 99.5])
    scaled = np.clip((image.astype(np.float32) - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    planes = [
        multiscale_basic_features(p, sigma_min=sigma_min, sigma_max=sigma_max).astype(np.float32)
        for p in scaled
    ]
    return np.stack(planes)


def forest_segment(
    features: np.ndarray,
    labels: np.ndarray,
    train: Sequence[int],
    predict: Sequence[int],
    *,
    pixels_per_slice: int = 20000,
    trees: int = 100,
    seed: int = 0,
    n_jobs: int = 2,
) -> np.ndarray:
    """Train a forest on slices `train` and label slices `predict`.

    Parameters
    ----------
    features : ndarray, shape (Z, Y, X, F)
        From :func:`slice_features`.
    labels : ndarray, shape (Z, Y, X)
        Class ids; only the `train` slices are read.
    train, predict : sequence of int
        z-slices.
    pixels_per_slice : int
        Random training pixels drawn from each training slice (stratified by nothing:
        the classes' shares are as in the slice).

    Returns
    -------
    ndarray of uint8, shape (len(predict), Y, X)
    """
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for z in train:
        f = features[z].reshape(-1, features.shape[-1])
        lab = labels[z].reshape(-1)
        pick = rng.choice(lab.size, size=min(pixels_per_slice, lab.size), replace=False)
        xs.append(f[pick])
        ys.append(lab[pick])
    forest = RandomForestClassifier(n_estimators=trees, n_jobs=n_jobs, random_state=seed)
    forest.fit(np.concatenate(xs), np.concatenate(ys))
    out = np.empty((len(predict), *labels.shape[1:]), dtype=np.uint8)
    for i, z in enumerate(predict):
        f = features[z].reshape(-1, features.shape[-1])
        out[i] = forest.predict(f).reshape(labels.shape[1:])
    return out
