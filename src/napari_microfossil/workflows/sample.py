"""Write the synthetic sample: a MicroCT-like phantom scan with its exact ground truth.

What ``microfossil sample`` runs (``make demo`` starts with it); the napari sample
shows the same phantom without writing files.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from .._progress import Progress, ProgressGen
from ..errors import InputError
from .outputs import check_disk_space, check_memory, check_writable_folder, expected_bytes

#: Files a sample folder holds, in the order they are written.
SAMPLE_FILES = ("scan.tif", "truth.tif", "truth_instances.tif")


@dataclass(frozen=True)
class SampleRequest:
    """A sample to write into `outdir`; checked when built, before any work.

    Parameters
    ----------
    outdir : Path
        Folder for ``scan.tif``, ``truth.tif`` and ``truth_instances.tif`` (created).
    shape : (Z, Y, X)
        Voxels of the phantom.
    seed : int
        Seeds the phantom (the same seed gives the same scan).
    overwrite : bool
        Replace existing files.

    Raises
    ------
    InputError
        If `outdir` is a file or not writable, a target exists without `overwrite`,
        `shape` is not three positive sizes, or the phantom would need more memory
        than the machine has available or more disk space than `outdir` has free.
    """

    outdir: Path
    shape: tuple[int, int, int] = (128, 256, 256)
    seed: int = 0
    overwrite: bool = False

    def __post_init__(self) -> None:
        from ..phantom.make import phantom_peak_bytes, validate_shape

        object.__setattr__(self, "outdir", Path(self.outdir))
        if self.outdir.exists() and not self.outdir.is_dir():
            raise InputError(f"OUTDIR: {self.outdir} exists and is not a folder")
        for target in self.targets:
            if target.exists() and not self.overwrite:
                raise InputError(f"OUTDIR: {target} already exists; pass --overwrite to replace it")
        check_writable_folder(self.outdir, "OUTDIR")
        shape = validate_shape(self.shape)
        object.__setattr__(self, "shape", shape)
        what = f"a {'x'.join(map(str, shape))} phantom"
        check_memory(phantom_peak_bytes(shape), "--shape", what)
        voxels = shape[0] * shape[1] * shape[2]
        check_disk_space(
            self.outdir, expected_bytes(voxels, "scan", "labels", "instances"), "OUTDIR", what
        )

    @property
    def targets(self) -> tuple[Path, Path, Path]:
        """The scan, class-label truth and fossil-instance truth files."""
        scan, truth, instances = (self.outdir / name for name in SAMPLE_FILES)
        return scan, truth, instances


def _missing_folders(folder: Path) -> list[Path]:
    """The folders ``folder.mkdir(parents=True)`` would make, innermost first."""
    out = []
    while not folder.exists() and folder != folder.parent:
        out.append(folder)
        folder = folder.parent
    return out


@dataclass(frozen=True)
class SampleResult:
    """What :func:`iter_write_sample` wrote."""

    scan: Path
    truth: Path
    instances: Path
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    class_names: tuple[str, ...]
    n_fossils: int


def iter_write_sample(request: SampleRequest) -> ProgressGen[SampleResult]:
    """Make the phantom and write its three volumes atomically (voxel size kept).

    A failed write (a full disk) removes the files this run wrote, and the folder if
    this run made it: a sample is written whole or not at all.

    Yields
    ------
    Progress
        ``"sample"``: one step for the phantom, one per file written.
    """
    from ..io import write_tiff
    from ..phantom import make_phantom

    scan, truth, instances = request.targets
    yield Progress("sample", 0, 4)
    ph = make_phantom(request.shape, seed=request.seed)
    yield Progress("sample", 1, 4)
    made = _missing_folders(request.outdir)
    request.outdir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    volumes = (
        (scan, ph.image, None),
        (truth, ph.labels, ph.class_names),
        (instances, ph.instances, None),
    )
    try:
        for i, (target, data, names) in enumerate(volumes):
            write_tiff(
                target, data, spacing=ph.spacing, class_names=names, overwrite=request.overwrite
            )
            written.append(target)
            yield Progress("sample", 2 + i, 4)
    except BaseException:
        for target in written:
            target.unlink(missing_ok=True)
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: never what a user put there
        raise
    return SampleResult(
        scan=scan,
        truth=truth,
        instances=instances,
        shape=request.shape,
        spacing=tuple(ph.spacing),  # type: ignore[arg-type]
        class_names=tuple(ph.class_names),
        n_fossils=len(ph.fossils),
    )
