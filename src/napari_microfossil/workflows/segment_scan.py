"""``microfossil segment``'s use case: a scan file in, label (and confidence) files out.

:class:`SegmentRequest` checks every argument and path up front; :func:`iter_segment_scan`
segments the scan slab by slab and writes each slab at once (TIFF atomically, ``.zarr``
resumably: see :mod:`.segment_outputs`). Both are re-exported by
:mod:`napari_microfossil.workflows.segment`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._progress import ProgressGen
from ..errors import InputError
from ..segmentation import (
    Slab,
    SmoothingSuggestion,
    estimate_intensity_range,
    iter_slabs,
    iter_suggest_smoothing,
)
from .cluster import ClusterOptions
from .keep import check_kept, keep_in_slab
from .outputs import same_file
from .segment import SegmentOptions, _check_volume, _model_file, _model_spec, check_finite
from .segment_outputs import (
    abort_outputs,
    check_resume,
    check_segment_output,
    count_labels,
    is_zarr,
    job_record,
    open_outputs,
    slabs_to_do,
)


@dataclass(frozen=True)
class SegmentRequest:
    """Segment a scan file and write its labels (and confidence), TIFF or ``.zarr``.

    Every argument and path is checked when the request is built, before the scan is
    read or the model loaded.

    Parameters
    ----------
    scan : path
        ``.tif``/``.tiff`` file, folder of slices or ``.zarr`` store.
    output : path
        Labels to write (uint8 class ids, the scan's voxel size, class names): a
        ``.tif``/``.tiff`` file, or a ``.zarr`` store written slab by slab and
        resumable (see :mod:`.segment_outputs`).
    confidence : path, optional
        Confidence to write (uint8, percent), TIFF or ``.zarr``; not `output`.
    model : str or path
        ``"default"`` or a ``.safetensors`` model file.
    options : SegmentOptions
    voxel_size : float or (z, y, x), optional
        Voxel size in µm, overriding the scan's.
    overwrite : bool
        Replace existing outputs.
    resume : bool
        Continue the incomplete ``.zarr`` outputs of an interrupted run of the same
        job (scan, model file, options); only the missing slabs are segmented.
    keep : path, optional
        Corrected labels of the same scan (TIFF or ``.zarr``): the planes `keep_slices`
        are copied from it into the output verbatim (:mod:`.keep`), so a new
        segmentation leaves the user's corrections as they were.
    keep_slices : str or dict, optional
        ``"z:20,48,76"`` (any axis, as ``--slices`` elsewhere); needed with `keep`.
    workers : int, optional
        Segment on a local Dask cluster of this many worker processes
        (:mod:`.cluster`, :mod:`.segment_cluster`); the outputs must be ``.zarr``.
    scheduler : str, optional
        Segment on the running Dask cluster at this address instead; the scan, the
        model file and the outputs must be at the same paths on every worker.

    Raises
    ------
    InputError
        Naming the option: ``-o``/``--confidence`` (exists without `overwrite` or
        `resume`, folder missing or read-only, not ``.tif``/``.tiff``/``.zarr``, the
        same file as the scan, the model or each other), ``voxel_size``, ``scan``
        (missing), ``model`` (missing or not a model file), ``--resume`` (a TIFF
        output, nothing to resume, another job's store, with `overwrite`).
    """

    scan: Path
    output: Path
    confidence: Path | None = None
    model: str = "default"
    options: SegmentOptions = field(default_factory=SegmentOptions)
    voxel_size: tuple[float, float, float] | None = None
    overwrite: bool = False
    resume: bool = False
    keep: Path | None = None
    keep_slices: Any = None
    workers: int | None = None
    scheduler: str | None = None

    def __post_init__(self) -> None:
        from ..io import parse_spacing

        self._check_keep()
        cluster = self.cluster  # checks workers and scheduler
        object.__setattr__(self, "workers", cluster.workers)
        object.__setattr__(self, "scheduler", cluster.scheduler)
        if not isinstance(self.options, SegmentOptions):
            raise InputError(f"options: expected SegmentOptions, got {type(self.options).__name__}")
        if not isinstance(self.resume, (bool, np.bool_)):
            raise InputError(f"resume: expected True or False, got {self.resume!r}")
        scan, out = Path(self.scan), Path(self.output)
        conf = None if self.confidence is None else Path(self.confidence)
        object.__setattr__(self, "scan", scan)
        object.__setattr__(self, "output", out)
        object.__setattr__(self, "confidence", conf)
        if conf is not None and same_file(conf, out):
            raise InputError(
                f"--confidence: {conf} is the labels output (-o) too; name another file"
            )
        for path, option in self.outputs:
            if same_file(path, scan):
                raise InputError(f"{option}: {path} is the scan itself; name another file")
            check_segment_output(
                path,
                overwrite=self.overwrite,
                resume=bool(self.resume),
                option=option,
                inputs=(scan, _model_file(self.model)),
            )
            if cluster.wanted and not is_zarr(path):
                what = "--workers" if cluster.workers is not None else "--scheduler"
                raise InputError(
                    f"{what}: a cluster writes .zarr outputs (each worker writes its own "
                    f"slabs); {option} {path} is a TIFF: name a .zarr store instead"
                )
        if self.voxel_size is not None:
            object.__setattr__(self, "voxel_size", parse_spacing(self.voxel_size))
        if not scan.exists():
            raise InputError(f"scan: {scan}: no such file or folder")
        _model_spec(self.model)
        if self.resume:
            check_resume(self.outputs, overwrite=self.overwrite, job=self.job())

    def _check_keep(self) -> None:
        if (self.keep is None) != (self.keep_slices is None):
            given, missing = (
                ("--keep", "--keep-slices") if self.keep else ("--keep-slices", "--keep")
            )
            raise InputError(f"{missing}: needed with {given} (which planes of which labels)")
        if self.keep is None:
            return
        from ..training.slices import parse_slices

        keep = Path(self.keep)
        object.__setattr__(self, "keep", keep)
        if not keep.exists():
            raise InputError(f"--keep: {keep}: no such file or folder")
        slices = self.keep_slices
        if not isinstance(slices, dict):
            slices = parse_slices(str(slices), "--keep-slices")
        object.__setattr__(self, "keep_slices", {k: sorted(set(v)) for k, v in slices.items()})
        for path, option in self.outputs:
            if same_file(path, keep):
                raise InputError(f"{option}: {path} is the --keep labels; name another file")

    @property
    def cluster(self) -> ClusterOptions:
        """Where the slabs are segmented (:class:`~.cluster.ClusterOptions`)."""
        return ClusterOptions(workers=self.workers, scheduler=self.scheduler)

    @property
    def outputs(self) -> list[tuple[Path, str]]:
        """``(path, option)`` of the labels output and the confidence output, if any."""
        out = [(self.output, "-o")]
        return out if self.confidence is None else [*out, (self.confidence, "--confidence")]

    def job(self) -> dict[str, Any]:
        """What a ``.zarr`` output records about this job (see :func:`job_record`);
        reads the model file to hash it."""
        job = job_record(
            self.scan,
            self.model,
            self.options.record(),
            confidence=self.confidence is not None,
        )
        if self.keep is not None:
            job["keep"] = {"labels": str(self.keep.resolve()), "slices": self.keep_slices}
        return job


@dataclass(frozen=True)
class SegmentResult:
    """What :func:`iter_segment_scan` did, for a summary line.

    Attributes
    ----------
    labels_path, confidence_path : Path, Path or None
        The files written.
    shape : (int, int, int)
        ``(Z, Y, X)`` of the labels.
    axes : str
        Axes the scan was sliced along.
    class_names : tuple of str
    counts : tuple of int
        Voxels of each class (index = class id).
    seconds : float
        Wall time of the segmentation, smoothing suggestion included (not the reading,
        the model loading or the writing).
    read_seconds, load_seconds, write_seconds : float
        Wall time of the other steps.
    smoothing : SmoothingSuggestion or None
        The suggestion, when ``smooth="auto"``.
    """

    labels_path: Path
    confidence_path: Path | None
    shape: tuple[int, int, int]
    axes: str
    class_names: tuple[str, ...]
    counts: tuple[int, ...]
    seconds: float
    read_seconds: float = 0.0
    load_seconds: float = 0.0
    write_seconds: float = 0.0
    smoothing: SmoothingSuggestion | None = None

    @property
    def voxels(self) -> int:
        return int(np.prod(self.shape))

    @property
    def shares(self) -> dict[str, float]:
        """Class name -> fraction of the voxels (0..1)."""
        n = max(1, self.voxels)
        return {name: c / n for name, c in zip(self.class_names, self.counts, strict=False)}


def iter_segment_scan(request: SegmentRequest) -> ProgressGen[SegmentResult]:
    """Read the scan, load the model, segment slab by slab, write each slab.

    The scan is read a slab at a time and each slab of labels (and confidence) goes
    to its output at once (:func:`~napari_microfossil.segmentation.iter_slabs`), so
    memory does not grow with the scan. A TIFF output is written atomically: a cancel
    (closing the generator) or an error leaves nothing. A ``.zarr`` output keeps the
    slabs finished so far, marked incomplete, for ``resume``; with ``resume`` only the
    missing slabs are segmented and the result equals an uninterrupted run's. The
    class shares are counted slab by slab (and from the stored slabs on resume).

    With ``workers`` or ``scheduler`` the slabs are segmented on a Dask cluster
    (:mod:`.segment_cluster`), each worker writing its slabs into the stores; the
    result is the same, bit for bit.

    Yields
    ------
    Progress
        ``"suggest smoothing"`` (with ``smooth="auto"``), then ``"segment <axes>"``
        (``"smooth"``, ``"segment y"``, ``"fuse"``... when one slab holds the scan and
        no cluster is used): see :func:`~napari_microfossil.segmentation.iter_slabs`.

    Returns
    -------
    SegmentResult

    Raises
    ------
    InputError
        ``--scheduler`` when no scheduler answers at its address.
    """
    if not request.cluster.wanted:
        return (yield from _segment_scan(request, None))
    from .cluster import connect

    with connect(request.cluster) as client:
        return (yield from _segment_scan(request, client))


def _segment_scan(request: SegmentRequest, client: Any) -> ProgressGen[SegmentResult]:
    """:func:`iter_segment_scan` in this process (`client` None) or on a cluster."""
    from ..io import read_volume
    from ..model import load_model

    t0 = time.perf_counter()
    vol = read_volume(request.scan, spacing=request.voxel_size)
    check_finite(vol.data, "scan")
    kept = _kept_labels(request, _check_volume(vol.data, "scan"))  # before the model loads
    _check_space(request, int(np.prod(vol.data.shape)))
    t1 = time.perf_counter()
    found = None
    sigma = request.options.smooth
    # On a cluster the workers load the model; here only to suggest a smoothing.
    model = None
    if client is None or request.options.auto_smooth:
        model = load_model(request.model, device=request.options.device)
    t2 = time.perf_counter()
    if request.options.auto_smooth:
        assert model is not None
        found = yield from iter_suggest_smoothing(vol.data, model, device=request.options.device)
        sigma = found.sigma
    assert not isinstance(sigma, str)  # "auto" was replaced just above
    spec = _model_spec(request.model) if model is None else model.spec
    sigma = spec.normalisation.smooth if sigma is None else float(sigma)
    lo, hi = estimate_intensity_range(vol.data, spec.normalisation, smooth=sigma)
    shape = _check_volume(vol.data, "scan")
    record = {**request.job(), "sigma": sigma, "intensity_range": [lo, hi]}
    paths = [p for p, _ in request.outputs]
    outputs, slab = open_outputs(
        paths,
        shape,
        spacing=vol.spacing,
        class_names=spec.class_names,
        overwrite=request.overwrite,
        resume=request.resume,
        record=record,
        scan=Path(request.scan),
    )
    todo = slabs_to_do(outputs, shape[0], slab)
    done = [r for r in _slabs(shape[0], slab) if r not in todo]
    counts = count_labels(getattr(outputs[0], "array", None), done, spec.num_classes)
    written = 0.0
    options = {
        "confidence": request.confidence is not None,
        "intensity_range": (lo, hi),
        **request.options.engine_options(sigma),
    }
    try:
        if client is not None:
            from .segment_cluster import iter_request_on_cluster

            outputs, part = yield from iter_request_on_cluster(
                request, client, outputs, todo, options, spec.num_classes
            )
            counts += part
        else:
            assert model is not None
            slabs = iter_slabs(vol.data, model, slab=slab, todo=todo, **options)
            for item in slabs:
                if not isinstance(item, Slab):
                    yield item
                    continue
                if kept is not None:
                    keep_in_slab(item.labels, item.z0, kept, request.keep_slices)
                tw = time.perf_counter()
                outputs[0].write(item.z0, item.labels)
                if item.confidence is not None:
                    outputs[1].write(item.z0, item.confidence)
                written += time.perf_counter() - tw
                counts += count_labels(item.labels, [(0, len(item.labels))], spec.num_classes)
        t3 = time.perf_counter()
        for o in outputs:  # every TIFF complete in its temp file before any is renamed
            flush = getattr(o, "flush", None)
            if flush is not None:
                flush()
        for o in outputs:
            o.finish()
    except BaseException:
        abort_outputs(outputs)
        raise
    t4 = time.perf_counter()
    return SegmentResult(
        labels_path=request.output,
        confidence_path=request.confidence,
        shape=shape,
        axes=request.options.axes,
        class_names=tuple(spec.class_names),
        counts=tuple(int(c) for c in counts),
        seconds=t3 - t2 - written,
        read_seconds=t1 - t0,
        load_seconds=t2 - t1,
        write_seconds=written + t4 - t3,
        smoothing=found,
    )


def _check_space(request: SegmentRequest, voxels: int) -> None:
    """Refuse outputs that surely do not fit their disks (a lower bound, see
    :func:`~.outputs.expected_bytes`); a resumed run needs only what is left."""
    from .outputs import check_disk_space, expected_bytes

    if request.resume:
        return
    for (path, option), kind in zip(request.outputs, ("labels", "confidence"), strict=False):
        what = f"the {kind} of {voxels / 1e9:.3g} G voxels"
        check_disk_space(path.parent, expected_bytes(voxels, kind), option, what)


def _kept_labels(request: SegmentRequest, shape: tuple[int, int, int]) -> Any:
    """The `keep` labels, lazily, checked against the scan's shape (None without)."""
    if request.keep is None:
        return None
    from ..io import read_labels

    data = read_labels(request.keep, lazy=True).data
    if tuple(int(n) for n in data.shape) != shape:
        raise InputError(
            f"--keep: {request.keep} holds {tuple(data.shape)} voxels, the scan {shape}"
        )
    check_kept(request.keep_slices, shape)
    return data


def _slabs(nz: int, slab: int) -> list[tuple[int, int]]:
    return [(a, min(a + slab, nz)) for a in range(0, nz, slab)]
