"""Shared fixtures: tiny networks and small synthetic volumes from seeded rngs."""

from __future__ import annotations

import os

import pytest

# The tests use at most the two cores CI has, and never a GPU unless marked.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True)
def _torch_threads():
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    torch.set_num_threads(2)
    yield


@pytest.fixture
def tiny_spec():
    from napari_microfossil.classes import PHANTOM_CLASS_NAMES
    from napari_microfossil.model import ModelSpec

    return ModelSpec(
        class_names=PHANTOM_CLASS_NAMES,
        encoder="resnet18",
        arch_kwargs={"encoder_depth": 3, "decoder_channels": (32, 16, 8)},
        tile_size=64,
    )


@pytest.fixture
def tiny_model(tiny_spec):
    import torch

    from napari_microfossil.model import LoadedModel, build_network

    torch.manual_seed(0)
    net = build_network(tiny_spec).eval()
    return LoadedModel(spec=tiny_spec, network=net)
