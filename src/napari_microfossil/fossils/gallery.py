"""A picture gallery of fossils: one PNG per fossil and an HTML index page.

Layout written into ``OUTDIR`` (the same folder as an export, see
:mod:`napari_microfossil.fossils.export`)::

    OUTDIR/index.html                     thumbnail grid, summary, size histogram
    OUTDIR/gallery/fossil_NNNN.png        3D rendering + orthogonal views + numbers
    OUTDIR/gallery/size_histogram.png     histogram of equivalent diameters (µm)

The pictures are drawn by :mod:`~napari_microfossil.fossils.picture` (one fossil) and
:mod:`~napari_microfossil.fossils.render` (the histogram).
"""

from __future__ import annotations

import html
import logging
import os
import shutil
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._progress import Progress, drain
from ..atomic import atomic_path
from ..errors import InputError
from .export import fossil_stem
from .picture import MAX_GRID, render_fossil
from .render import fmt_number, render_histogram
from .table import FossilTable

logger = logging.getLogger(__name__)

#: Sub-folder of OUTDIR holding the pictures.
GALLERY_DIR = "gallery"


@dataclass(frozen=True)
class GalleryResult:
    """Paths written by :func:`iter_write_gallery`.

    Parameters
    ----------
    outdir : Path
        The folder holding ``index.html``.
    index : Path
        The HTML index page.
    histogram : Path
        The size histogram picture.
    images : dict of int to Path
        Picture of each fossil id.
    """

    outdir: Path
    index: Path
    histogram: Path
    images: Mapping[int, Path] = field(default_factory=dict)

    @property
    def paths(self) -> tuple[Path, ...]:
        """Every file written."""
        return (self.index, self.histogram, *self.images.values())


# -- the gallery ---------------------------------------------------------------------


def _keep_earlier(gdir: Path, tmp: Path, *, skip: set[str]) -> None:
    """Put the earlier gallery's other files into `tmp` (hard links where possible), so
    that a gallery of some fossils keeps the pictures of the others."""
    if not gdir.is_dir():
        return
    for f in gdir.iterdir():
        if f.name in skip or f.name.startswith("."):
            continue
        if f.is_dir():
            shutil.copytree(f, tmp / f.name)
            continue
        try:
            os.link(f, tmp / f.name)
        except OSError:
            shutil.copy2(f, tmp / f.name)


_CSS = """
body { background: #1c1c1e; color: #e8e8e8; font: 14px/1.4 system-ui, sans-serif; margin: 24px; }
h1 { font-weight: 600; margin: 0 0 4px; }
a { color: #ffb35c; }
.muted { color: #a0a0a6; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(330px, 1fr)); gap: 14px; }
figure { margin: 0; background: #28282c; padding: 6px; border-radius: 6px; }
figure img { width: 100%; height: auto; display: block; border-radius: 3px; }
figcaption { padding: 4px 2px 0; }
"""


def _index_html(
    table: FossilTable,
    ids: Sequence[int],
    outdir: Path,
    images: Mapping[int, Path],
    histogram: Path,
) -> str:
    esc = html.escape
    rows = {int(r["id"]): r for r in table.rows}
    total_volume = sum(float(rows[i]["volume_um3"]) for i in ids)
    spacing = " × ".join(fmt_number(s) for s in table.spacing)
    extra = []
    if (outdir / "fossils.csv").is_file():
        extra.append('<a href="fossils.csv">fossils.csv</a>')
    for name in ("instances.tif", "instances.zarr"):
        if (outdir / name).exists():
            extra.append(f'<a href="{name}">{name}</a>')
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Fossil gallery ({len(ids)} fossils)</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{len(ids)} fossil{'s' if len(ids) != 1 else ''}</h1>",
        f'<p class="muted">voxel size (z × y × x) {esc(spacing)} µm · total volume '
        f"{esc(fmt_number(total_volume))} µm³ · ids ordered by size, largest first"
        + (f" · {' · '.join(extra)}" if extra else "")
        + "</p>",
        f'<p><img src="{esc(histogram.relative_to(outdir).as_posix())}" width="640" '
        'alt="Histogram of equivalent diameters in µm"></p>',
        '<div class="grid">',
    ]
    for fid in ids:
        row = rows[fid]
        src = esc(images[fid].relative_to(outdir).as_posix())
        stem = fossil_stem(fid)
        links = []
        for folder, exts in (("meshes", ("stl", "ply", "obj")), ("crops", ("tif",))):
            for ext in exts:
                f = outdir / folder / f"{stem}.{ext}"
                if f.is_file():
                    links.append(
                        f'<a href="{esc(f.relative_to(outdir).as_posix())}">{folder[:-1] if folder == "meshes" else "crop"} ({ext})</a>'
                    )
        edge = ' · <span class="muted">cut by the edge</span>' if row.get("touches_border") else ""
        parts.append(
            f'<figure id="{stem}"><a href="{src}"><img src="{src}" loading="lazy" '
            f'alt="fossil {fid}"></a><figcaption><b>#{fid}</b> · '
            f"{esc(fmt_number(row['volume_um3']))} µm³ · ⌀ {esc(fmt_number(row['equivalent_diameter_um']))} µm"
            f"{edge}" + (f"<br>{' · '.join(links)}" if links else "") + "</figcaption></figure>"
        )
    parts += ["</div>", "</body></html>", ""]
    return "\n".join(parts)


def iter_write_gallery(
    table: FossilTable,
    outdir: str | Path,
    *,
    image: Any = None,
    ids: Sequence[int] | None = None,
    overwrite: bool = False,
    size: int = 320,
    max_grid: int = MAX_GRID,
) -> Generator[Progress, None, GalleryResult]:
    """Write a picture of every fossil and an HTML index page, yielding progress.

    Parameters
    ----------
    table : FossilTable
        Fossils from :func:`~napari_microfossil.fossils.extract_fossils`.
    outdir : path
        Folder for ``index.html`` (pictures go to ``OUTDIR/gallery/``); created if
        missing. Use the export folder so the page links each fossil's mesh and crop.
    image : (Z, Y, X) array-like, optional
        The scan, same shape as ``table.instances``, for the orthogonal slices; only
        each fossil's crop is read (works on lazy arrays).
    ids : sequence of int, optional
        Only these fossils (in this order). Default: all, in id order.
    overwrite : bool
        Replace existing files; otherwise an existing output file is an error raised
        before anything is written.
    size : int
        Picture height in pixels (width is twice that).
    max_grid : int
        See :func:`render_fossil`.

    Yields
    ------
    Progress
        Stage ``"gallery"``, one per fossil; then ``"gallery index"``.

    Returns
    -------
    GalleryResult

    Raises
    ------
    InputError
        On unknown ``ids``, an ``image`` of another shape, a bad ``size``, or existing
        files without ``overwrite`` -- when called, before anything is written; the
        pictures are made as the generator is iterated.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 64:
        raise InputError(f"size: expected an integer >= 64 (pixels), got {size!r}")
    if image is not None and tuple(getattr(image, "shape", ())) != table.instances.shape:
        raise InputError(
            f"image: expected the shape of the instances {table.instances.shape}, "
            f"got {tuple(getattr(image, 'shape', ()))}"
        )
    all_ids = table.ids
    if ids is None:
        selected = list(all_ids)
    else:
        known = set(all_ids)
        selected = list(dict.fromkeys(int(i) for i in ids))
        unknown = [i for i in selected if i not in known]
        if unknown:
            raise InputError(
                f"ids: expected fossil ids of the table (1..{max(all_ids, default=0)}), "
                f"got unknown {unknown[:5]}"
            )
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise InputError(f"outdir: expected a folder, got the file {str(out)!r}")
    gdir = out / GALLERY_DIR
    index = out / "index.html"
    histogram = gdir / "size_histogram.png"
    images = {fid: gdir / f"{fossil_stem(fid)}.png" for fid in selected}
    if not overwrite:
        existing = [p for p in (index, histogram, *images.values()) if p.exists()]
        if existing:
            raise InputError(
                f"outdir: {str(existing[0])!r} already exists"
                f"{f' (and {len(existing) - 1} more)' if len(existing) > 1 else ''}; "
                "choose another folder or pass overwrite=True"
            )
    return _write_gallery(
        table, out, image=image, selected=selected, size=int(size), max_grid=max_grid
    )


def _write_gallery(
    table: FossilTable,
    out: Path,
    *,
    image: Any,
    selected: list[int],
    size: int,
    max_grid: int,
) -> Generator[Progress, None, GalleryResult]:
    gdir = out / GALLERY_DIR
    index = out / "index.html"
    histogram = gdir / "size_histogram.png"
    images = {fid: gdir / f"{fossil_stem(fid)}.png" for fid in selected}

    # The pictures are drawn into a hidden folder renamed over gallery/ only when all
    # of them and the histogram are done: a failure (or a cancel) part-way leaves the
    # earlier gallery and index.html as they were, never a half gallery.
    total = len(selected)
    with atomic_path(gdir) as tmp:
        tmp.mkdir()
        _keep_earlier(gdir, tmp, skip={p.name for p in (histogram, *images.values())})
        yield Progress("gallery", 0, total)
        for done, fid in enumerate(selected, start=1):
            pic = render_fossil(table, fid, image=image, size=size, max_grid=max_grid)
            pic.save(tmp / images[fid].name, format="PNG", optimize=False)
            yield Progress("gallery", done, total)

        yield Progress("gallery index", 0, 1)
        diameters = [float(table.row(fid)["equivalent_diameter_um"]) for fid in selected]
        render_histogram(diameters, label="equivalent diameter (µm)").save(
            tmp / histogram.name, format="PNG", optimize=False
        )
        page = _index_html(table, selected, out, images, histogram)
    with atomic_path(index) as tmp_index:
        tmp_index.write_text(page, encoding="utf-8")
    yield Progress("gallery index", 1, 1)
    logger.info("gallery of %d fossils written to %s", total, index)
    return GalleryResult(outdir=out, index=index, histogram=histogram, images=images)


def write_gallery(table: FossilTable, outdir: str | Path, **kwargs: Any) -> GalleryResult:
    """Write the fossil gallery; see :func:`iter_write_gallery` for parameters."""
    return drain(iter_write_gallery(table, outdir, **kwargs))
