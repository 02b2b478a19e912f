import json

import numpy as np
import pytest
import torch

from napari_microfossil.errors import InputError
from napari_microfossil.model import (
    ModelSpec,
    default_model_path,
    describe,
    load_model,
    make_predictor,
    read_spec,
    save_model,
)
from napari_microfossil.normalise import Normalisation


def test_save_load_round_trip_keeps_spec_and_outputs(tmp_path, tiny_model):
    spec = tiny_model.spec.with_updates(
        provenance={"base": "scratch"}, metrics={"iou_fossil": 0.91}, spacing_um=(2.0, 1.5, 1.5)
    )
    path = save_model(tmp_path / "m.safetensors", tiny_model.network, spec, half=False)
    back = load_model(path, device="cpu")
    assert back.spec == spec
    x = torch.randn(2, 1, 64, 64)
    with torch.inference_mode():
        np.testing.assert_allclose(
            back.network(x).numpy(), tiny_model.network(x).numpy(), atol=1e-5
        )


def test_half_precision_file_is_smaller_and_close(tmp_path, tiny_model):
    full = save_model(tmp_path / "f.safetensors", tiny_model.network, tiny_model.spec, half=False)
    half = save_model(tmp_path / "h.safetensors", tiny_model.network, tiny_model.spec, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    back = load_model(half)
    assert next(back.network.parameters()).dtype == torch.float32
    x = torch.randn(1, 1, 64, 64)
    with torch.inference_mode():
        a, b = back.network(x), tiny_model.network(x)
    assert torch.allclose(a.softmax(1), b.softmax(1), atol=0.02)


def test_model_file_is_plain_safetensors_with_json_metadata(tmp_path, tiny_model):
    path = save_model(tmp_path / "m.safetensors", tiny_model.network, tiny_model.spec)
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["napari_microfossil"])
    assert meta["class_names"] == ["background", "fossil", "pore"]
    assert meta["encoder"] == "resnet18"
    assert read_spec(path) == tiny_model.spec


def test_save_is_atomic_and_refuses_overwrite(tmp_path, tiny_model):
    path = save_model(tmp_path / "m.safetensors", tiny_model.network, tiny_model.spec)
    with pytest.raises(InputError, match="overwrite"):
        save_model(path, tiny_model.network, tiny_model.spec, overwrite=False)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "not a readable"),
        (b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ", "not a readable"),
    ],
)
def test_bad_model_files_give_clear_errors(tmp_path, content, match):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(content)
    with pytest.raises(InputError, match=match):
        load_model(p)


def test_missing_model_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_model(tmp_path / "nope.safetensors")


def test_foreign_safetensors_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    p = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, str(p))
    with pytest.raises(InputError, match="not a napari-microfossil model"):
        read_spec(p)


def test_weights_that_do_not_fit_the_spec_are_refused(tmp_path, tiny_model):
    path = save_model(tmp_path / "m.safetensors", tiny_model.network, tiny_model.spec)
    other = ModelSpec(
        class_names=("a", "b", "c", "d"), arch_kwargs=tiny_model.spec.arch_kwargs, tile_size=64
    )
    from safetensors.torch import load_file, save_file

    save_file(
        load_file(str(path)),
        str(tmp_path / "x.safetensors"),
        metadata={"napari_microfossil": json.dumps(other.to_dict())},
    )
    with pytest.raises(InputError, match="do not fit"):
        load_model(tmp_path / "x.safetensors")


def test_newer_format_version_is_refused():
    d = ModelSpec(class_names=("a", "b")).to_dict()
    d["format_version"] = 99
    with pytest.raises(InputError, match="upgrade"):
        ModelSpec.from_dict(d)


def test_spec_validation():
    with pytest.raises(InputError, match="class_names"):
        ModelSpec(class_names=("only",))
    with pytest.raises(InputError, match="tile_size"):
        ModelSpec(class_names=("a", "b"), tile_size=100)
    with pytest.raises(InputError, match="percentiles"):
        Normalisation(low=60, high=40)


def test_predictor_returns_probabilities(tiny_model):
    pred = make_predictor(tiny_model.network, "cpu")
    out = pred(np.random.default_rng(0).normal(size=(3, 1, 64, 96)).astype(np.float32))
    assert out.shape == (3, 3, 64, 96)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)


def test_default_model_is_bundled_small_and_described():
    path = default_model_path()
    assert path.is_file()
    assert path.stat().st_size < 40e6
    spec = read_spec("default")
    assert spec.class_names == ("background", "fossil", "pore")
    assert spec.metrics.get("iou_fossil", 0) >= 0.85
    text = describe(spec)
    assert "resnet" in text and "fossil" in text
