"""The blockwise loop finds pieces in a pool, ahead of the component it applies, and
still gives the serial result: the dependency rule and the equality with two workers."""

from __future__ import annotations

import numpy as np
import pytest

from napari_microfossil.fossils import extract_fossils
from napari_microfossil.fossils.blockwise import extract_fossils_blockwise
from napari_microfossil.fossils.pipeline import overlap_dependencies
from test_blockwise_fossils import _assert_same, _ball, random_labels


def _brute(start, stop, active):
    n = len(start) - 1
    out = np.zeros(n + 1, dtype=np.int64)
    for j in range(1, n + 1):
        if active[j]:
            for i in range(1, j):
                if active[i] and np.all((start[i] < stop[j]) & (start[j] < stop[i])):
                    out[j] = i
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dependencies_are_the_last_overlapping_earlier_box(seed):
    rng = np.random.default_rng(seed)
    n = 300
    start = rng.integers(0, 200, (n + 1, 3))
    size = np.where(rng.random((n + 1, 1)) < 0.05, rng.integers(50, 150, (n + 1, 3)), 1)
    stop = start + size + rng.integers(1, 12, (n + 1, 3))
    active = rng.random(n + 1) < 0.8
    active[0] = False
    got = overlap_dependencies(start, stop, active)
    np.testing.assert_array_equal(got, _brute(start, stop, active))
    assert (got > 0).sum() > 10  # overlaps happen: the test tests something


def test_nested_and_crowded_components_with_two_workers(tmp_path):
    """Shells with components in their cavities, touching twins to split and specks,
    packed so that boxes overlap: the pool's order never changes the result."""
    lab = random_labels(11, (48, 48, 48))
    for c in [(12, 12, 12), (12, 36, 30), (34, 20, 24)]:
        shell = _ball(lab.shape, c, (9, 9, 9)) & ~_ball(lab.shape, c, (6, 6, 6))
        lab[shell] = 1
        lab[_ball(lab.shape, c, (2, 2, 2))] = 1  # a fossil inside the cavity
    options = {"split": True, "min_voxels": 4}
    mem = extract_fossils(lab, **options)
    blk = extract_fossils_blockwise(lab, tmp_path / "i.zarr", block=16, workers=2, **options)
    assert len(mem) > 10
    _assert_same(mem, blk)


def test_blocks_labelled_in_processes_merge_like_blocks_labelled_here(tmp_path):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from napari_microfossil._progress import drain
    from napari_microfossil.fossils.blocks import iter_label_blocks

    lab = random_labels(12, (40, 36, 44))
    got = []
    pools = [None, ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))]
    for k, pool in enumerate(pools):
        (tmp_path / str(k)).mkdir()
        comps = drain(
            iter_label_blocks(
                lab, 1, connectivity=26, block=(16, 8, 16), workdir=tmp_path / str(k), pool=pool
            )
        )
        got.append((comps, np.asarray(comps.atoms[:, :, :])))
        if pool is not None:
            pool.shutdown()
    (a, atoms_a), (b, atoms_b) = got
    assert a.n > 20
    np.testing.assert_array_equal(atoms_a, atoms_b)
    for name in ("rank_of", "count", "start", "stop"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_finished_jobs_are_not_kept_to_the_end(tmp_path, monkeypatch):
    """A finished job's part masks are dropped once applied: at 2048³ keeping every job
    (to cancel the unfinished ones on an error) held gigabytes to the end of the loop."""
    import gc
    import weakref

    from napari_microfossil.fossils import blockwise

    made: list[weakref.ref] = []
    real = blockwise._pieces

    def pieces(code, sp, options):
        found = real(code, sp, options)
        made.extend(weakref.ref(mask) for _, mask in found[2])
        return found

    monkeypatch.setattr(blockwise, "_pieces", pieces)
    lab = random_labels(5, (40, 40, 40))
    run = blockwise.iter_extract_fossils_blockwise(
        lab, tmp_path / "i.zarr", block=16, workers=1, split=True
    )
    for step in run:
        if step.stage == "write":
            break
    gc.collect()
    assert len(made) > 40
    assert sum(ref() is not None for ref in made) == 0
    run.close()
