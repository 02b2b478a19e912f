"""Multi-process training under torchrun: two CPU processes with gloo, in step."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from napari_microfossil.cli import main
from napari_microfossil.errors import InputError
from napari_microfossil.model import load_model, save_model
from napari_microfossil.training.distributed import (
    all_reduce_float,
    broadcast_object,
    distributed_session,
    launcher_env,
)

# Runs `microfossil train` as each rank, and records a hash of the final weights the
# engine returns on that rank, plus the first training loss (different crops per rank).
RUNNER = textwrap.dedent(
    """
    import hashlib, json, os, sys

    import napari_microfossil.training as training
    from napari_microfossil.cli import main

    real = training.iter_train

    def recorded(*args, **kw):
        gen = real(*args, **kw)
        first = None
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                result = stop.value
                break
            if first is None and p.stage == "train":
                first = p.info["loss"]
            yield p
        h = hashlib.sha256()
        for k, v in sorted(result.network.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        with open(os.path.join(sys.argv[1], f"rank{os.environ['RANK']}.json"), "w") as fh:
            json.dump({"hash": h.hexdigest(), "first_loss": first, "epochs": len(result.history),
                       "best_epoch": result.best_epoch, "stopped": result.stopped}, fh)
        return result

    training.iter_train = recorded
    sys.exit(main(sys.argv[2:]))
    """
)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_launcher_env():
    assert launcher_env({}) is None
    assert launcher_env({"WORLD_SIZE": "2", "RANK": "1"}) is None  # LOCAL_RANK missing
    assert launcher_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == (3, 1, 4)
    with pytest.raises(InputError, match="RANK"):
        launcher_env({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0"})
    with pytest.raises(InputError, match="integer"):
        launcher_env({"WORLD_SIZE": "two", "RANK": "0", "LOCAL_RANK": "0"})


def test_without_torchrun_everything_is_single_process():
    with distributed_session("cpu", environ={}) as ctx:
        assert not ctx.active and ctx.is_main and ctx.world_size == 1 and ctx.device is None
        assert broadcast_object({"a": 1}) == {"a": 1}
        assert all_reduce_float(2.5, op="mean", device=torch.device("cpu")) == 2.5


def _torchrun(tmp_path, tiny_model, *, nproc, device, extra=()):
    sample = tmp_path / "sample"
    assert main(["sample", str(sample), "--shape", "16", "64", "64", "--seed", "5"]) == 0
    base = save_model(tmp_path / "tiny.safetensors", tiny_model.network, tiny_model.spec)
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    (tmp_path / "out").mkdir()
    (tmp_path / "report").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc_per_node",
        str(nproc),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        str(runner),
        str(tmp_path / "report"),
        "train",
        "--image",
        str(sample / "scan.tif"),
        "--labels",
        str(sample / "truth.tif"),
        "--slices",
        "z:2,5,8,11,14",
        "--base",
        str(base),
        "-o",
        str(tmp_path / "out" / "m.safetensors"),
        "--frozen-epochs",
        "1",
        "--steps-per-epoch",
        "4",
        "--batch-size",
        "2",
        "--crop-size",
        "64",
        "--device",
        device,
        "--quiet",
        *extra,
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    reports = [
        json.loads((tmp_path / "report" / f"rank{i}.json").read_text()) for i in range(nproc)
    ]
    return r, reports


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_one_model_in_step(tmp_path, tiny_model):
    # A time limit that ends the run: the ranks must agree on the schedule and on when
    # to stop (or they would hang, or drift apart); the frozen phase makes DDP re-wrap.
    r, (rank0, rank1) = _torchrun(
        tmp_path, tiny_model, nproc=2, device="cpu", extra=["--epochs", "200", "--time-limit", "4"]
    )
    assert rank0["hash"] == rank1["hash"]  # DDP kept the weights identical
    assert rank0["first_loss"] != rank1["first_loss"]  # each rank trained on its own crops
    assert rank0["epochs"] == rank1["epochs"] < 201 and rank0["stopped"] == "time-limit"
    assert rank0["best_epoch"] == rank1["best_epoch"]
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["m.safetensors"]  # one model, written by rank 0, no temp files
    model = load_model(tmp_path / "out" / "m.safetensors")
    assert model.spec.provenance["world_size"] == 2
    assert model.spec.provenance["epochs_run"] == rank0["epochs"]
    assert r.stdout.count("model written to") == 1  # only rank 0 reports


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_torchrun_on_gpus_with_nccl(tmp_path, tiny_model):
    n = min(torch.cuda.device_count(), 2)
    _, reports = _torchrun(
        tmp_path, tiny_model, nproc=n, device="cuda", extra=["--epochs", "2", "--lr-find"]
    )
    assert len({rep["hash"] for rep in reports}) == 1
    assert load_model(tmp_path / "out" / "m.safetensors").spec.provenance["world_size"] == n
