"""``segment`` and ``fossils`` on a Dask cluster give the single-process result, bit for bit.

One LocalCluster of 2 worker processes serves the module (its address is given as
``--scheduler``); the command-line tests start their own with ``--workers 2``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("distributed")

from napari_microfossil._progress import drain
from napari_microfossil.errors import InputError

SHAPE = (10, 40, 48)


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        scheduler_kwargs={"dashboard": False},
    ) as local:
        yield local


def request(scan, model_file, out, conf=None, options=None, **kw):
    from napari_microfossil.workflows.segment import SegmentOptions, SegmentRequest

    options = SegmentOptions(device="cpu", **(options or {}))
    return SegmentRequest(scan, out, confidence=conf, model=str(model_file), options=options, **kw)


def read(path):
    from napari_microfossil.io import read_volume

    return np.asarray(read_volume(path).data)


@pytest.mark.parametrize(
    "options", [{}, pytest.param({"axes": "zx", "smooth": 0.7}, marks=pytest.mark.slow)]
)
def test_segment_on_a_cluster_equals_one_process(
    tmp_path, scan, model_file, small_chunks, cluster, options
):
    from napari_microfossil.io.store import incomplete
    from napari_microfossil.workflows.segment import iter_segment_scan

    one = drain(
        iter_segment_scan(
            request(scan, model_file, tmp_path / "a.zarr", tmp_path / "ac.zarr", options)
        )
    )
    stages = []
    out, conf = tmp_path / "b.zarr", tmp_path / "bc.zarr"
    many = drain(
        iter_segment_scan(
            request(scan, model_file, out, conf, options, scheduler=cluster.scheduler_address)
        ),
        stages.append,
    )
    assert incomplete(out) is None and incomplete(conf) is None
    np.testing.assert_array_equal(read(out), read(tmp_path / "a.zarr"))
    np.testing.assert_array_equal(read(conf), read(tmp_path / "ac.zarr"))
    assert len(np.unique(read(conf))) > 3  # the confidence tells runs apart
    assert many.counts == one.counts == tuple(np.bincount(read(out).ravel(), minlength=3))
    assert stages[-1].done == stages[-1].total == SHAPE[0]
    assert len({p.done for p in stages}) == 6  # 0, then as each of the 5 slabs completes


def test_a_run_resumed_on_a_cluster_equals_an_uninterrupted_one(
    tmp_path, scan, model_file, small_chunks, cluster
):
    from napari_microfossil.io.store import incomplete
    from napari_microfossil.workflows.segment import iter_segment_scan

    drain(iter_segment_scan(request(scan, model_file, tmp_path / "full.zarr")))
    out = tmp_path / "l.zarr"
    gen = iter_segment_scan(request(scan, model_file, out))
    for _ in gen:
        state = incomplete(out)
        if state is not None and state.planes_done >= 4:
            break
    gen.close()
    stages = []
    resumed = request(scan, model_file, out, resume=True, scheduler=cluster.scheduler_address)
    drain(iter_segment_scan(resumed), stages.append)
    assert stages[-1].total == SHAPE[0] - 4  # only the missing slabs
    assert incomplete(out) is None
    np.testing.assert_array_equal(read(out), read(tmp_path / "full.zarr"))


def fossil_labels() -> np.ndarray:
    """Balls (some hollow, some touching) across the faces of 8³ blocks."""
    rng = np.random.default_rng(3)
    lab = np.zeros((24, 28, 30), np.uint8)
    z, y, x = np.ogrid[:24, :28, :30]
    for k in range(14):
        c = rng.uniform(2, 26, 3)
        r = rng.uniform(1.5, 4.5)
        d = (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2
        lab[d <= r * r] = 1
        if k % 4 == 0 and r > 3:
            lab[d <= (r - 1.5) ** 2] = 0  # a cavity to fill
    lab[0, 0, 0] = 2
    return lab


def test_fossils_measured_on_a_cluster_equal_one_process(tmp_path, cluster):
    from distributed import Client

    from napari_microfossil.fossils.blockwise import iter_extract_fossils_blockwise

    lab = fossil_labels()
    image = np.random.default_rng(1).integers(0, 60000, lab.shape).astype(np.uint16)
    kw = {"block": 8, "spacing": (2.0, 1.0, 1.0), "min_voxels": 3, "split": True, "image": image}
    one = drain(iter_extract_fossils_blockwise(lab, tmp_path / "a.zarr", workers=1, **kw))
    with Client(cluster, set_as_default=False) as client:
        gen = iter_extract_fossils_blockwise(
            lab, tmp_path / "b.zarr", workers=2, executor=client.get_executor(), **kw
        )
        many = drain(gen)
    assert len(one) >= 5
    assert json.dumps(many.rows) == json.dumps(one.rows)  # every float, bit for bit
    np.testing.assert_array_equal(np.asarray(many.instances), np.asarray(one.instances))


def test_scheduler_that_does_not_answer_is_one_line(tmp_path, scan, model_file, monkeypatch):
    import napari_microfossil.workflows.cluster as cluster_mod
    from napari_microfossil.workflows.segment import iter_segment_scan

    monkeypatch.setattr(cluster_mod, "CONNECT_TIMEOUT_S", 0.5)
    gone = request(scan, model_file, tmp_path / "l.zarr", scheduler="tcp://127.0.0.1:9")
    with pytest.raises(InputError, match=r"^--scheduler: no Dask scheduler answers at") as err:
        drain(iter_segment_scan(gone))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "l.zarr").exists()  # refused before anything was made
    with pytest.raises(InputError, match="--scheduler: no Dask scheduler answers"):
        drain(iter_segment_scan(request(scan, model_file, tmp_path / "m.zarr", scheduler="x")))


def test_cluster_options_are_checked_up_front(tmp_path, scan, model_file):
    from napari_microfossil.workflows.cluster import ClusterOptions
    from napari_microfossil.workflows.fossils_cluster import FossilsClusterRequest

    with pytest.raises(InputError, match="--workers: cannot be combined with --scheduler"):
        ClusterOptions(workers=2, scheduler="tcp://h:8786")
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(InputError, match="--workers: expected an integer >= 1"):
            ClusterOptions(workers=bad)
    with pytest.raises(InputError, match="--scheduler: expected a scheduler address"):
        ClusterOptions(scheduler=" ")
    assert ClusterOptions(workers=2).torch_threads >= 1
    assert not ClusterOptions().wanted
    out = tmp_path / "l.zarr"
    with pytest.raises(InputError, match="--workers: cannot be combined"):
        request(scan, model_file, out, workers=2, scheduler="tcp://h:8786")
    with pytest.raises(InputError, match=r"--workers: a cluster writes \.zarr outputs"):
        request(scan, model_file, tmp_path / "l.tif", workers=2)
    with pytest.raises(InputError, match=r"--scheduler: .*--confidence .*c\.tif is a TIFF"):
        request(scan, model_file, out, tmp_path / "c.tif", scheduler="tcp://h:1")
    with pytest.raises(InputError, match=r"--workers: a cluster works on \.zarr labels"):
        FossilsClusterRequest(labels=scan, outdir=tmp_path / "out", workers=2)
    with pytest.raises(InputError, match="--workers: cannot be combined"):
        FossilsClusterRequest(labels=scan, outdir=tmp_path / "o", workers=1, scheduler="h:1")


def test_cli_refuses_workers_with_scheduler(tmp_path, scan, capsys):
    from napari_microfossil.cli import main

    for command in (
        ["segment", str(scan), "-o", str(tmp_path / "l.zarr")],
        ["fossils", str(scan), "-o", str(tmp_path)],
    ):
        with pytest.raises(SystemExit) as stop:
            main([*command, "--workers", "2", "--scheduler", "tcp://h:8786"])
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert "not allowed with argument" in err and err.count("\n") == 1


@pytest.mark.slow  # starts two local clusters
def test_cli_segment_and_fossils_with_two_local_workers(tmp_path, scan, model_file, capsys):
    from napari_microfossil.cli import main
    from napari_microfossil.io.store import create_output

    base = ["--model", str(model_file), "--device", "cpu", "--quiet"]
    assert main(["segment", str(scan), "-o", str(tmp_path / "a.zarr"), *base]) == 0
    assert (
        main(["segment", str(scan), "-o", str(tmp_path / "b.zarr"), *base, "--workers", "2"]) == 0
    )
    said = capsys.readouterr().out
    assert said.startswith("Segmented 10x40x48 voxels along z in ")
    np.testing.assert_array_equal(read(tmp_path / "b.zarr"), read(tmp_path / "a.zarr"))

    lab = fossil_labels()
    store = create_output(
        tmp_path / "lab.zarr", lab.shape, np.uint8, class_names=("b", "fossil", "p")
    )
    store.write(0, lab)
    store.finish()
    fossils = ["fossils", str(tmp_path / "lab.zarr"), "--min-voxels", "3", "--mesh", "none"]
    assert main([*fossils, "-o", str(tmp_path / "one"), "--quiet"]) == 0
    assert main([*fossils, "-o", str(tmp_path / "two"), "--quiet", "--workers", "2"]) == 0
    assert "Found " in capsys.readouterr().out
    one, two = (tmp_path / d / "fossils.csv" for d in ("one", "two"))
    assert two.read_text() == one.read_text() and one.read_text().count("\n") > 5
    np.testing.assert_array_equal(
        read(tmp_path / "two" / "instances.zarr"), read(tmp_path / "one" / "instances.zarr")
    )


def test_the_one_process_path_never_imports_distributed():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from napari_microfossil.cli import build_parser\n"
        "import napari_microfossil.workflows.segment, napari_microfossil.workflows.fossils\n"
        "import napari_microfossil.workflows.fossils_cluster\n"
        "build_parser()\n"
        "print('distributed' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


@pytest.mark.slow  # starts a local cluster in a new process
def test_cli_with_workers_prints_no_dask_chatter(tmp_path, scan, model_file):
    """Dask logs every step of a cluster's life at INFO; a user sees the command's lines."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    run = subprocess.run(
        [sys.executable, "-m", "napari_microfossil.cli", "segment", str(scan), "-o",
         str(tmp_path / "a.zarr"), "--model", str(model_file), "--device", "cpu",
         "--workers", "2", "--quiet"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("Segmented 10x40x48 voxels along z in ")
    assert " info: " not in run.stderr and "Scheduler" not in run.stderr, run.stderr
