"""Multiscale pixel features in the class head: the features, the hybrid network, its
model file, and training that adds them."""

from __future__ import annotations

import numpy as np
import pytest

from napari_microfossil._progress import drain
from napari_microfossil.errors import InputError


def test_features_are_scipy_gaussians_and_their_derivatives():
    import torch
    from scipy import ndimage

    from napari_microfossil.model.pixel_features import MultiscaleFeatures

    img = np.random.default_rng(0).standard_normal((48, 40)).astype(np.float32)
    feats = MultiscaleFeatures([1.0, 2.0])(torch.from_numpy(img)[None, None])[0].numpy()
    assert feats.shape == (8, 48, 40)
    for k, s in enumerate([1.0, 2.0]):
        g = ndimage.gaussian_filter(img.astype(np.float64), s, mode="nearest", truncate=4.0)
        assert np.allclose(feats[4 * k], g, atol=1e-4)
        gy, gx = np.gradient(g)
        inner = (slice(2, -2), slice(2, -2))
        assert np.allclose(feats[4 * k + 1][inner], np.hypot(gy, gx)[inner] * s, atol=1e-4)
        # eigenvalues, larger first, sum = Laplacian * s^2
        lap = ndimage.laplace(g) * s**2
        assert np.all(feats[4 * k + 2] >= feats[4 * k + 3] - 1e-6)
        assert np.allclose((feats[4 * k + 2] + feats[4 * k + 3])[inner], lap[inner], atol=1e-3)


def test_adding_features_keeps_the_prediction_and_survives_a_model_file(tmp_path, tiny_model):
    import torch

    from napari_microfossil.model import load_model, save_model
    from napari_microfossil.training import add_pixel_features

    x = torch.from_numpy(np.random.default_rng(1).standard_normal((1, 1, 64, 64)).astype("f4"))
    net, spec = add_pixel_features(tiny_model.network, tiny_model.spec, [1, 4])
    assert spec.arch_kwargs["pixel_features"] == [1.0, 4.0]
    assert net.segmentation_head[0].in_channels == 8 + 8
    with torch.no_grad():
        assert torch.allclose(net(x), tiny_model.network(x), atol=1e-5)
        torch.nn.init.normal_(net.segmentation_head[0].weight)
        want = net(x)
    again = load_model(save_model(tmp_path / "h.safetensors", net, spec, half=False))
    with torch.no_grad():
        assert torch.allclose(again.network(x), want, atol=1e-4)
    assert add_pixel_features(net, spec, [1, 4]) == (net, spec)
    with pytest.raises(ValueError, match="already"):
        add_pixel_features(net, spec, [2])


def test_training_with_pixel_features_fits_the_head_first(tmp_path, model_file):
    from napari_microfossil.model import load_model
    from napari_microfossil.phantom import make_phantom
    from napari_microfossil.training import TrainConfig
    from napari_microfossil.workflows.train import TrainRequest, iter_run_training

    ph = make_phantom((16, 64, 64), seed=3)
    cfg = TrainConfig(epochs=1, steps_per_epoch=1, batch_size=1, crop_size=64)
    out = tmp_path / "f.safetensors"
    kw = {"slices": {"z": [3]}, "config": cfg, "device": "cpu"}
    stages: list[str] = []
    req = TrainRequest(ph.image, ph.labels, out, base=model_file, pixel_features=[1, 2], **kw)
    drain(iter_run_training(req), lambda p: stages.append(p.stage))
    assert "fit head" in stages
    assert load_model(out).spec.arch_kwargs["pixel_features"] == [1.0, 2.0]
    # A second round from that model: the same features, no new head to fit.
    stages.clear()
    req = TrainRequest(ph.image, ph.labels, tmp_path / "g.safetensors", base=out, **kw)
    drain(iter_run_training(req), lambda p: stages.append(p.stage))
    assert "fit head" not in stages
    with pytest.raises(InputError, match="pixel_features"):
        TrainRequest(
            ph.image,
            ph.labels,
            tmp_path / "h.safetensors",
            base=model_file,
            pixel_features=[0],
            **kw,
        )
