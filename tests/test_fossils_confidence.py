"""The per-object confidence limit (issue 12): given the segmentation's confidence, the
fossils the model was unsure of are dropped, the same in memory, block by block and
from the command line, which says how many and how to keep them."""

from __future__ import annotations

import numpy as np
import pytest

from napari_microfossil import cli
from napari_microfossil.errors import InputError
from napari_microfossil.fossils import DEFAULT_MIN_CONFIDENCE, extract_fossils
from napari_microfossil.fossils.blockwise import extract_fossils_blockwise
from napari_microfossil.fossils.defaults import confidence_note
from napari_microfossil.io import read_labels, write_tiff

NAMES = ("background", "fossil", "pore")


def _volumes():
    """Three balls about 9 voxels across (373 voxels, above the size limit): a sure one, an unsure one (mean 65 %)
    and one just at the limit; confidence 99 % elsewhere."""
    lab = np.zeros((20, 24, 48), np.uint8)
    conf = np.full(lab.shape, 99, np.uint8)
    z, y, x = np.ogrid[:20, :24, :48]
    for cx, c in ((8, 95), (24, 65), (40, int(DEFAULT_MIN_CONFIDENCE))):
        ball = (z - 10) ** 2 + (y - 12) ** 2 + (x - cx) ** 2 <= 20
        lab[ball] = 1
        conf[ball] = c
    conf[10, 12, 24] = 99  # one sure voxel does not save the unsure ball
    return lab, conf


def test_unsure_objects_are_dropped_and_counted():
    lab, conf = _volumes()
    table = extract_fossils(lab, confidence=conf, min_confidence=DEFAULT_MIN_CONFIDENCE)
    assert len(table) == 2 and table.dropped_unsure == 1
    assert {round(r["centroid_x"]) for r in table.rows} == {8, 40}  # at the limit: kept
    assert not table.instances[8:13, 10:15, 22:27].any()  # the unsure ball's voxels: 0
    for kept_all in (
        extract_fossils(lab, confidence=conf, min_confidence=0),
        extract_fossils(lab),  # no confidence: nothing to judge by
    ):
        assert len(kept_all) == 3 and kept_all.dropped_unsure == 0


def test_blockwise_drops_the_same_objects(tmp_path):
    lab, conf = _volumes()
    mem = extract_fossils(lab, split=True, confidence=conf, min_confidence=80)
    blk = extract_fossils_blockwise(
        lab, tmp_path / "i.zarr", block=8, split=True, confidence=conf, min_confidence=80
    )
    assert blk.dropped_unsure == mem.dropped_unsure == 1
    assert blk.rows == mem.rows
    np.testing.assert_array_equal(np.asarray(blk.instances[...]), mem.instances)


def test_bad_confidence_or_limit_is_refused(tmp_path):
    lab, conf = _volumes()
    with pytest.raises(InputError, match="confidence: expected the labels' shape"):
        extract_fossils(lab, confidence=conf[1:])
    with pytest.raises(InputError, match="min_confidence: expected a percentage"):
        extract_fossils(lab, confidence=conf, min_confidence=120)
    with pytest.raises(InputError, match="confidence: expected the labels' shape"):
        extract_fossils_blockwise(lab, tmp_path / "i.zarr", confidence=conf[:, 1:])


def test_the_notes_say_what_was_dropped_and_how_to_keep_it():
    assert confidence_note(3).startswith(f"confidence limit {DEFAULT_MIN_CONFIDENCE:g} %")
    assert "3 objects the model was less sure of dropped; --min-confidence 0 keeps them" in (
        confidence_note(3)
    )
    assert "1 object the" in confidence_note(1)
    assert "--confidence CONF" in confidence_note(None)
    assert confidence_note(5, limit=0) == "no confidence limit: every object kept"


def _run(argv, capsys):
    assert cli.main(["fossils", *argv, "--mesh", "none", "--quiet"]) == 0
    return capsys.readouterr().out


def test_cli_takes_the_confidence_and_says_what_it_dropped(tmp_path, capsys):
    lab, conf = _volumes()
    write_tiff(tmp_path / "l.tif", lab, spacing=2.0, class_names=NAMES)
    write_tiff(tmp_path / "c.tif", conf, spacing=2.0)
    said = _run([str(tmp_path / "l.tif"), "-o", str(tmp_path / "a")], capsys)
    assert "Found 3 fossil objects" in said and "no confidence map" in said
    assert "--confidence CONF" in said
    said = _run(
        [
            str(tmp_path / "l.tif"),
            "-o",
            str(tmp_path / "b"),
            "--confidence",
            str(tmp_path / "c.tif"),
        ],
        capsys,
    )
    assert "Found 2 fossil objects" in said
    assert "1 object the model was less sure of dropped; --min-confidence 0 keeps them" in said
    inst = np.asarray(read_labels(tmp_path / "b" / "instances.tif").load())
    assert inst.max() == 2 and not inst[8:13, 10:15, 22:27].any()
    said = _run(
        [
            str(tmp_path / "l.tif"),
            "-o",
            str(tmp_path / "c"),
            "--confidence",
            str(tmp_path / "c.tif"),
            "--min-confidence",
            "0",
        ],
        capsys,
    )
    assert "Found 3 fossil objects" in said and "every object kept" in said


def test_cli_uses_the_confidence_the_labels_name_by_default(tmp_path, capsys):
    """`segment --confidence` names the map in the labels: a first `fossils` run uses it
    without a flag, says so, and --min-confidence 0 or a moved map leaves it out."""
    lab, conf = _volumes()
    (tmp_path / "maps").mkdir()
    named = {"confidence": "maps/c.tif"}
    write_tiff(tmp_path / "l.tif", lab, spacing=2.0, class_names=NAMES, metadata=named)
    write_tiff(tmp_path / "maps" / "c.tif", conf, spacing=2.0)
    said = _run([str(tmp_path / "l.tif"), "-o", str(tmp_path / "a")], capsys)
    assert "Found 2 fossil objects" in said
    assert f"confidence map {tmp_path / 'maps' / 'c.tif'}, named by the labels" in said
    assert "1 object the model was less sure of dropped" in said
    said = _run(
        [str(tmp_path / "l.tif"), "-o", str(tmp_path / "b"), "--min-confidence", "0"], capsys
    )
    assert "Found 3 fossil objects" in said and "named by the labels" not in said
    (tmp_path / "maps" / "c.tif").unlink()
    said = _run([str(tmp_path / "l.tif"), "-o", str(tmp_path / "c")], capsys)
    assert "Found 3 fossil objects" in said and "no confidence map" in said


def test_a_map_in_a_sibling_folder_is_named_without_dots(tmp_path, capsys):
    """Labels in one folder naming a map in another (recorded as ``../maps/c.tif``): the
    summary prints the map's own path, not ``labels/../maps/c.tif``."""
    lab, conf = _volumes()
    (tmp_path / "maps").mkdir()
    (tmp_path / "labels").mkdir()
    named = {"confidence": "../maps/c.tif"}
    write_tiff(tmp_path / "labels" / "l.tif", lab, spacing=2.0, class_names=NAMES, metadata=named)
    write_tiff(tmp_path / "maps" / "c.tif", conf, spacing=2.0)
    said = _run([str(tmp_path / "labels" / "l.tif"), "-o", str(tmp_path / "a")], capsys)
    where = (tmp_path / "maps" / "c.tif").resolve()
    assert f"confidence map {where}, named by the labels" in said
    assert ".." not in said.split("confidence map ")[1].split(",")[0]
    assert "1 object the model was less sure of dropped" in said


def test_cli_refuses_a_confidence_of_another_shape(tmp_path, capsys):
    lab, conf = _volumes()
    write_tiff(tmp_path / "l.tif", lab, class_names=NAMES)
    write_tiff(tmp_path / "c.tif", conf[2:])
    argv = [str(tmp_path / "l.tif"), "-o", str(tmp_path / "o"), "--confidence"]
    assert cli.main(["fossils", *argv, str(tmp_path / "c.tif")]) != 0
    assert "confidence: expected the labels' shape" in capsys.readouterr().err
    assert cli.main(["fossils", *argv, str(tmp_path / "nope.tif")]) != 0
    assert "--confidence" in capsys.readouterr().err


def test_the_store_path_drops_the_same_objects(tmp_path, capsys):
    from napari_microfossil.io.store import create_output

    lab, conf = _volumes()
    for name, data, names in (("l.zarr", lab, NAMES), ("c.zarr", conf, None)):
        out = create_output(
            tmp_path / name, data.shape, data.dtype, chunks=(8, 8, 16), class_names=names
        )
        for z0, z1 in out.todo():
            out.write(z0, data[z0:z1])
        out.finish()
    argv = [str(tmp_path / "l.zarr"), "-o", str(tmp_path / "o"), "--confidence"]
    said = _run([*argv, str(tmp_path / "c.zarr")], capsys)
    assert "Found 2 fossil objects" in said and "1 object the model" in said
    inst = read_labels(tmp_path / "o" / "instances.zarr").data[...]
    assert inst.max() == 2 and not inst[8:13, 10:15, 22:27].any()
