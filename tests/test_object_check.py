"""The object check (issue 12): a 3D network judges each extracted object, and the
look-alikes it rejects are dropped and counted, in the engine, the workflow and the
command line, which turns it on by itself when the labels name their scan and
confidence (as ``segment --confidence`` writes them)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_microfossil import cli
from napari_microfossil.errors import InputError
from napari_microfossil.fossils import extract_fossils, extract_fossils_blockwise
from napari_microfossil.fossils.objectcheck import (
    CROP,
    ObjectCheck,
    build_network,
    bundled_object_check,
    fossil_evidence,
    fossil_probability,
    load_object_check,
    object_inputs,
    save_object_check,
)
from napari_microfossil.io import read_labels, write_tiff
from napari_microfossil.workflows.fossils import ExtractRequest

NAMES = ("background", "fossil", "pore")


def _scene():
    """Three balls (about 9 voxels across) in a 20 x 24 x 64 scan, one at the edge."""
    lab = np.zeros((20, 24, 64), np.uint8)
    z, y, x = np.ogrid[:20, :24, :64]
    for cx in (2, 24, 48):
        lab[(z - 10) ** 2 + (y - 12) ** 2 + (x - cx) ** 2 <= 20] = 1
    rng = np.random.default_rng(0)
    scan = (20000 + 5000.0 * lab + rng.normal(0, 300, lab.shape)).astype(np.uint16)
    conf = np.where(lab == 1, 90, 97).astype(np.uint8)
    return scan, lab, conf


def _check(threshold: float) -> ObjectCheck:
    import torch

    torch.manual_seed(0)
    net = build_network()
    net.eval()
    return ObjectCheck(net, threshold)


def test_inputs_are_a_cube_centred_on_the_object_padded_outside_the_scan():
    scan, lab, conf = _scene()
    ball = lab == 1
    ball[:, :, 12:] = False  # the ball at x = 2, cut by the scan's edge
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(ball))
    crops, scalars = object_inputs(
        scan, lab, conf, [(box, ball[box])], class_id=1, intensity=(20000.0, 25000.0)
    )
    assert crops.shape == (1, 3, CROP, CROP, CROP) and crops.dtype == np.float16
    image, mask, evidence = (crops[0, c].astype(np.float32) for c in range(3))
    # centre of mass (10, 12, ~2) sits at the cube's centre (16, 16, 16): x < 14 is outside
    assert (image[:, :, :14] == -1).all() and (evidence[:, :, :14] == -1).all()
    assert mask[:, :, :14].sum() == 0 and int(mask.sum()) == int(ball.sum())
    assert mask[16, 16, 16] == 1
    # inside the scan: the ball maps near +1, the matrix near -1; evidence = 90 % on the ball
    assert image[16, 16, 16] > 0.6 and image[16, 4, 24] < -0.6
    np.testing.assert_allclose(evidence[mask > 0], 0.8, atol=1e-3)
    assert scalars[0, 0] == pytest.approx(np.log(ball.sum()))
    assert scalars[0, 1] == pytest.approx(0.8, abs=1e-6)


def test_evidence_is_the_confidence_for_the_class_and_its_complement_elsewhere():
    lab = np.array([[[1, 0, 2]]], np.uint8)
    conf = np.array([[[90, 70, 100]]], np.uint8)
    np.testing.assert_allclose(fossil_evidence(lab, conf, 1), [[[0.8, -0.4, -1.0]]], atol=1e-6)


def test_threshold_decides_what_is_dropped_and_the_table_counts_it():
    scan, lab, conf = _scene()
    plain = extract_fossils(lab, min_voxels=50)
    kept = extract_fossils(
        lab, min_voxels=50, image=scan, confidence=conf, object_check=_check(0.0)
    )
    assert len(plain) == len(kept) == 3 and kept.dropped_lookalikes == 0
    np.testing.assert_array_equal(kept.instances, plain.instances)
    none = extract_fossils(
        lab, min_voxels=50, image=scan, confidence=conf, object_check=_check(1.01)
    )
    assert len(none) == 0 and none.dropped_lookalikes == 3 and not none.instances.any()


def test_the_check_needs_the_scan_and_the_confidence():
    scan, lab, conf = _scene()
    with pytest.raises(InputError, match="object_check: needs the scan"):
        extract_fossils(lab, confidence=conf, object_check=_check(0.5))
    with pytest.raises(InputError, match="no confidence"):
        extract_fossils(lab, image=scan, object_check=_check(0.5))
    with pytest.raises(InputError, match="object_check: needs the scan and the confidence"):
        ExtractRequest(lab, class_names=NAMES, image=scan, object_check=True)


def test_a_saved_check_loads_with_its_threshold_and_gives_the_same_answers(tmp_path):
    scan, lab, conf = _scene()
    check = _check(0.37)
    save_object_check(tmp_path / "c.safetensors", check.network, 0.37, {"seeds": "test"})
    back = load_object_check(tmp_path / "c.safetensors")
    assert back.threshold == pytest.approx(0.37) and back.provenance == {"seeds": "test"}
    box = (slice(5, 16), slice(7, 18), slice(19, 30))
    crops, scalars = object_inputs(
        scan, lab, conf, [(box, lab[box] == 1)], class_id=1, intensity=(20000.0, 25000.0)
    )
    p0, p1 = fossil_probability(check, crops, scalars), fossil_probability(back, crops, scalars)
    np.testing.assert_allclose(p0, p1, atol=2e-3)  # float16 weights
    assert 0.0 <= p0[0] <= 1.0


def test_a_file_that_is_no_check_is_refused(tmp_path):
    from napari_microfossil.model import default_model_path

    with pytest.raises(InputError, match="not an object check"):
        load_object_check(default_model_path())
    with pytest.raises(InputError, match="not found"):
        load_object_check(tmp_path / "nope.safetensors")


def test_the_bundled_check_is_small_and_records_how_it_was_trained():
    check = bundled_object_check()
    assert 0.0 < check.threshold < 1.0
    assert check.provenance["trained_by"] == "scripts/train_object_check.py"
    assert (
        check.provenance["validation_object_f1"]
        > check.provenance["validation_object_f1_confidence_limit"]
    )
    from pathlib import Path

    assert Path(check.path).stat().st_size < 1_000_000


def _run(argv, capsys):
    code = cli.main(["fossils", *argv, "--mesh", "none"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def test_cli_runs_the_check_when_the_labels_name_scan_and_confidence(tmp_path, capsys):
    scan, lab, conf = _scene()
    named = {"confidence": "c.tif", "scan": "s.tif"}
    write_tiff(tmp_path / "l.tif", lab, spacing=2.0, class_names=NAMES, metadata=named)
    write_tiff(tmp_path / "c.tif", conf, spacing=2.0)
    write_tiff(tmp_path / "s.tif", scan, spacing=2.0)
    said = _run([str(tmp_path / "l.tif"), "-o", str(tmp_path / "a"), "--min-voxels", "50"], capsys)
    found = int(said.split("Found ")[1].split()[0])
    dropped = int(said.split("object check: ")[1].split()[0])
    assert found + dropped == 3 and "--no-object-check keeps them" in said
    assert f"scan {tmp_path / 's.tif'}, named by the labels" in said
    assert "confidence limit" not in said  # the check replaces the limit by default
    inst = np.asarray(read_labels(tmp_path / "a" / "instances.tif").load())
    assert inst.max() == found
    said = _run(
        [
            str(tmp_path / "l.tif"),
            "-o",
            str(tmp_path / "b"),
            "--min-voxels",
            "50",
            "--no-object-check",
        ],
        capsys,
    )
    assert "Found 3 fossil objects" in said and "object check" not in said
    assert "confidence limit 85 %" in said
    # it knows fossils only: another class is not judged by it
    said = _run([str(tmp_path / "l.tif"), "-o", str(tmp_path / "c"), "--class", "pore"], capsys)
    assert "object check" not in said


def test_cli_asked_for_the_check_without_a_scan_says_what_is_missing(tmp_path, capsys):
    _, lab, conf = _scene()
    write_tiff(tmp_path / "l.tif", lab, class_names=NAMES)
    write_tiff(tmp_path / "c.tif", conf)
    argv = ["fossils", str(tmp_path / "l.tif"), "-o", str(tmp_path / "o"), "--object-check"]
    assert cli.main([*argv, "--confidence", str(tmp_path / "c.tif")]) != 0
    err = capsys.readouterr().err
    assert "object check: needs the scan (--image) and the confidence map" in err
    assert "got no scan" in err
    assert "Traceback" not in err


def _store(path, lab, **meta):
    from napari_microfossil.io.store import create_output

    out = create_output(path, lab.shape, lab.dtype, chunks=(8, 8, 16), **meta)
    for z0, z1 in out.todo():
        out.write(z0, lab[z0:z1])
    out.finish()


def test_a_store_is_judged_block_by_block_as_the_cli_judges_a_tiff(tmp_path, capsys):
    """``fossils LABELS.zarr`` (block by block) turns the check on by itself from what
    the labels name, and drops and keeps what the TIFF run drops and keeps."""
    scan, lab, conf = _scene()
    named = {"confidence": "c.zarr", "scan": "s.tif"}
    _store(tmp_path / "l.zarr", lab, class_names=NAMES, metadata=named)
    write_tiff(tmp_path / "l.tif", lab, class_names=NAMES, metadata=named)
    _store(tmp_path / "c.zarr", conf)
    write_tiff(tmp_path / "s.tif", scan)
    said = {}
    for name in ("l.tif", "l.zarr"):
        argv = [str(tmp_path / name), "-o", str(tmp_path / f"o_{name}"), "--min-voxels", "50"]
        said[name] = _run([*argv, "--mesh", "none"], capsys)
        assert "object check: " in said[name] and "confidence limit" not in said[name]
    found = {k: int(v.split("Found ")[1].split()[0]) for k, v in said.items()}
    dropped = {k: int(v.split("object check: ")[1].split()[0]) for k, v in said.items()}
    assert found["l.zarr"] == found["l.tif"] and dropped["l.zarr"] == dropped["l.tif"]
    assert found["l.zarr"] + dropped["l.zarr"] == 3
    tif = np.asarray(read_labels(tmp_path / "o_l.tif" / "instances.tif").load())
    zarr = np.asarray(read_labels(tmp_path / "o_l.zarr" / "instances.zarr").load())
    np.testing.assert_array_equal(zarr, tif)


class _BySize:
    """A stand-in network: a fossil when the object has at least `voxels` voxels
    (the check's first scalar is log size), with a sharp logit."""

    def __init__(self, voxels: float) -> None:
        self.log_size = float(np.log(voxels))

    def __call__(self, crops, scalars):
        return (scalars[:, 0] - self.log_size) * 50.0


def _dumbbell():
    """Two balls of radius 6 whose centres are 10 voxels apart: a neck too wide for the
    front ends' split (0.6) but not for a finer one (0.9)."""
    lab = np.zeros((20, 24, 48), np.uint8)
    z, y, x = np.ogrid[:20, :24, :48]
    for cx in (18, 28):
        lab[(z - 10) ** 2 + (y - 12) ** 2 + (x - cx) ** 2 <= 36] = 1
    scan = (20000 + 5000.0 * lab).astype(np.uint16)
    return scan, lab, np.full(lab.shape, 95, np.uint8)


def test_the_check_splits_a_kept_object_when_it_judges_every_piece_a_fossil():
    scan, lab, conf = _dumbbell()
    common = {"split": True, "split_neck_ratio": 0.6, "image": scan, "confidence": conf}
    whole = extract_fossils(lab, **common, object_check=ObjectCheck(_BySize(400), 0.5))
    assert len(whole) == 1 and whole.split_by_check == 0  # no second split asked for
    size = int(whole.rows[0]["voxels"])

    # pieces of about half the object: the check says each is a fossil, so they replace it
    finer = ObjectCheck(_BySize(400), 0.5, split_neck_ratio=0.9, split_threshold=0.5)
    table = extract_fossils(lab, **common, object_check=finer)
    assert len(table) == 2 and table.split_by_check == 1
    assert sum(int(r["voxels"]) for r in table.rows) == size
    # ... unless it judges the pieces too small to be fossils (a chamber alone)
    strict = ObjectCheck(_BySize(size - 1), 0.5, split_neck_ratio=0.9, split_threshold=0.5)
    table = extract_fossils(lab, **common, object_check=strict)
    assert len(table) == 1 and table.split_by_check == 0
    # ... and never when the user asked for no splitting
    no_split = {**common, "split": False}
    assert len(extract_fossils(lab, **no_split, object_check=finer)) == 1


def test_a_saved_check_keeps_its_second_split(tmp_path):
    check = _check(0.3)
    save_object_check(tmp_path / "c.safetensors", check.network, 0.3, {}, split=(0.7, 0.9))
    back = load_object_check(tmp_path / "c.safetensors")
    assert (back.split_neck_ratio, back.split_threshold) == (0.7, 0.9)
    save_object_check(tmp_path / "d.safetensors", check.network, 0.3, {})
    assert load_object_check(tmp_path / "d.safetensors").split_neck_ratio is None


def test_reviewed_slices_are_sure_along_any_axis_and_the_rest_is_kept():
    from napari_microfossil.fossils.evidence import sure_where_reviewed

    conf = np.full((4, 5, 6), 40, np.uint8)
    out = sure_where_reviewed(conf, {"z": [1], "x": [0, 5], "y": []})
    assert np.all(out[1] == 100) and np.all(out[:, :, [0, 5]] == 100)
    assert np.all(out[[0, 2, 3]][:, :, 1:5] == 40) and np.all(conf == 40)
    assert out.dtype == conf.dtype


@pytest.mark.parametrize("batch", [1, 16])
def test_block_by_block_the_check_drops_and_splits_as_in_memory(tmp_path, monkeypatch, batch):
    """Tiny blocks cut the objects; the block-wise loop judges the objects a batch at
    a time (1: each as the loop makes it; 16: all at the end here) and gives the
    in-memory fossils, ids, rows and counts, with the second split (new atoms for its
    pieces) and a look-alike dropped."""
    from napari_microfossil.fossils import blockjudge

    monkeypatch.setattr(blockjudge, "BATCH", batch)
    scan, lab, conf = _dumbbell()
    lab = np.concatenate([lab, np.zeros_like(lab)], axis=2)
    z, y, x = np.ogrid[: lab.shape[0], : lab.shape[1], : lab.shape[2]]
    lab[(z - 10) ** 2 + (y - 12) ** 2 + (x - 70) ** 2 <= 36] = 1  # a ball like the pieces
    lab[(z - 10) ** 2 + (y - 12) ** 2 + (x - 86) ** 2 <= 9] = 1  # too small: a look-alike
    scan = (20000 + 5000.0 * lab).astype(np.uint16)
    conf = np.full(lab.shape, 95, np.uint8)
    finer = ObjectCheck(_BySize(400), 0.5, split_neck_ratio=0.9, split_threshold=0.5)
    common = {"split": True, "split_neck_ratio": 0.6, "image": scan, "confidence": conf}
    want = extract_fossils(lab, **common, min_voxels=20, object_check=finer)
    assert len(want) == 3 and want.split_by_check == 1 and want.dropped_lookalikes == 1
    got = extract_fossils_blockwise(
        lab, tmp_path / "i.zarr", **common, min_voxels=20, object_check=finer, block=8
    )
    np.testing.assert_array_equal(np.asarray(got.instances), want.instances)
    assert [dict(r) for r in got.rows] == [dict(r) for r in want.rows]
    assert (got.dropped_lookalikes, got.split_by_check) == (1, 1)
    # measured elsewhere (a cluster's executor): judged here, the same result
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as executor:
        far = extract_fossils_blockwise(
            lab,
            tmp_path / "k.zarr",
            **common,
            min_voxels=20,
            object_check=finer,
            block=8,
            executor=executor,
        )
    np.testing.assert_array_equal(np.asarray(far.instances), want.instances)
    assert [dict(r) for r in far.rows] == [dict(r) for r in want.rows]
    with pytest.raises(InputError, match="object_check: needs the scan"):
        extract_fossils_blockwise(lab, tmp_path / "j.zarr", confidence=conf, object_check=finer)


@settings(max_examples=60, deadline=None)
@given(
    key=st.tuples(
        *(
            st.one_of(
                st.integers(0, n - 1),
                st.builds(slice, st.none() | st.integers(0, n), st.none() | st.integers(0, n)),
                st.builds(slice, st.integers(0, n), st.integers(0, n), st.integers(1, 3)),
            )
            for n in (4, 5, 6)
        )
    )
)
def test_a_store_confidence_reads_sure_where_reviewed_as_the_copy_does(key):
    """For a confidence not in memory the reviewed slices are set as it is read: any
    basic read equals the same read of the in-memory copy."""
    from napari_microfossil.fossils.evidence import SureWhereReviewed, sure_where_reviewed

    conf = np.arange(4 * 5 * 6, dtype=np.uint8).reshape(4, 5, 6) % 90
    reviewed = {"z": [1, 3], "x": [0, 5], "y": [2]}
    lazy = sure_where_reviewed(_NotInMemory(conf), reviewed)
    assert isinstance(lazy, SureWhereReviewed) and lazy.shape == conf.shape
    np.testing.assert_array_equal(lazy[key], sure_where_reviewed(conf, reviewed)[key])
    np.testing.assert_array_equal(np.asarray(lazy), sure_where_reviewed(conf, reviewed))


class _NotInMemory:
    """A stand-in for a store: shape, dtype and basic reads only."""

    def __init__(self, data):
        self.data, self.shape, self.dtype = data, data.shape, data.dtype

    def __getitem__(self, key):
        return self.data[key]
