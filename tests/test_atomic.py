"""Atomic writes, and the leftovers of writes that were killed."""

from __future__ import annotations

import os
import time

import pytest

from napari_microfossil.atomic import STALE_TEMP_S, atomic_path, remove_stale_temps


def _age(path, seconds):
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_killed_write_is_cleaned_up_by_the_next_write_into_that_folder(tmp_path):
    """Whatever file the next write makes: a killed `-o a.tif` is cleaned up by a later
    `-o b.tif` in the same folder (issue 13, case 9)."""
    target = tmp_path / "labels.tif"
    old_file = tmp_path / ".labels.1a2b3c4d.tmp.tif"  # what kill -9 left mid-write
    old_file.write_bytes(b"half")
    old_dir = tmp_path / ".labels.5e6f7a8b.tmp.tif"
    old_dir.mkdir()
    (old_dir / "part").write_bytes(b"x")
    for p in (old_dir / "part", old_dir, old_file):
        _age(p, STALE_TEMP_S + 60)
    fresh = tmp_path / ".labels.99999999.tmp.tif"  # another write still going on
    fresh.write_bytes(b"busy")
    other = tmp_path / ".scan.1a2b3c4d.tmp.tif"  # another file's killed write: ours too
    other.write_bytes(b"x")
    _age(other, STALE_TEMP_S + 60)
    model = tmp_path / ".m.0badcafe.tmp.safetensors"
    model.write_bytes(b"x")
    _age(model, STALE_TEMP_S + 60)
    lookalikes = [tmp_path / ".scan.tmp.tif", tmp_path / ".x.notahex0.tmp.tif"]
    for p in lookalikes:  # not names this tool makes: the user's
        p.write_bytes(b"keep")
        _age(p, STALE_TEMP_S + 60)
    mine = tmp_path / "notes.txt"
    mine.write_text("the user's")

    with atomic_path(target) as tmp:
        tmp.write_bytes(b"done")

    assert target.read_bytes() == b"done"
    assert not old_file.exists() and not old_dir.exists()
    assert not other.exists() and not model.exists()
    assert fresh.exists() and mine.read_text() == "the user's"
    assert all(p.read_bytes() == b"keep" for p in lookalikes)


def test_remove_stale_temps_reports_what_went(tmp_path):
    target = tmp_path / "m.safetensors"
    stale = tmp_path / ".m.00000000.tmp.safetensors"
    stale.write_bytes(b"")
    assert remove_stale_temps(target) == []
    _age(stale, STALE_TEMP_S + 1)
    assert remove_stale_temps(target) == [stale] and not stale.exists()


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "t.tif"
    target.write_bytes(b"old")
    with pytest.raises(OSError), atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
        raise OSError(28, "No space left on device")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.tif"]


def test_work_dir_clears_what_killed_jobs_of_this_machine_left(tmp_path):
    """Issue 13, case 9: a killed segment leaves a memory-mapped accumulator (GBs) and a
    killed fossils run its label file; the next job's work_dir removes them, not the
    folders of running processes or of other machines."""
    import socket
    import subprocess
    import sys

    from napari_microfossil.atomic import work_dir

    host = socket.gethostname().replace("-", "_")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    killed = tmp_path / f"job-{host}-{dead_pid}-abc"
    killed.mkdir()
    (killed / "probabilities.u16").write_bytes(b"x" * 100)
    running = tmp_path / f"job-{host}-{os.getpid()}-def"
    running.mkdir()
    elsewhere = tmp_path / f"job-otherhost-{dead_pid}-ghi"
    elsewhere.mkdir()
    mine = tmp_path / "job-notes"
    mine.mkdir()
    new = work_dir("job-", tmp_path)
    assert new.is_dir() and new.name.startswith(f"job-{host}-{os.getpid()}-")
    assert not killed.exists()
    assert running.exists() and elsewhere.exists() and mine.exists()
