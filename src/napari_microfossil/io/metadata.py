"""Voxel size and class names from file metadata, and this tool's own JSON record.

Sources, in the order they are trusted: this tool's JSON (in a TIFF description, the
ImageJ 'Info' property or zarr attributes), ImageJ's spacing and unit, OME-XML physical
sizes, then the TIFF resolution tags. Every length is converted to µm.
"""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..model import METADATA_KEY
from .volume import parse_spacing, positive

logger = logging.getLogger(__name__)

#: Key of this tool's own metadata (JSON) inside TIFF descriptions and zarr attributes:
#: the same key as in a model file's header.
META_KEY = METADATA_KEY

# Length units, lower-cased, to micrometres.
_UNIT_TO_UM: dict[str, float] = {
    **dict.fromkeys(
        ("µm", "μm", "um", "micron", "microns", "micrometer", "micrometre", "micrometers"), 1.0
    ),
    "micrometres": 1.0,
    **dict.fromkeys(("nm", "nanometer", "nanometre", "nanometers", "nanometres"), 1e-3),
    **dict.fromkeys(("mm", "millimeter", "millimetre", "millimeters", "millimetres"), 1e3),
    **dict.fromkeys(("cm", "centimeter", "centimetre", "centimeters", "centimetres"), 1e4),
    **dict.fromkeys(("m", "meter", "metre", "meters", "metres"), 1e6),
    **dict.fromkeys(("inch", "inches", "in"), 25400.0),
    **dict.fromkeys(("å", "angstrom", "ångström", "angstroms"), 1e-4),
}
# TIFF ResolutionUnit tag values (4 and 5 are tifffile extensions).
_RESUNIT_TO_UM = {2: 25400.0, 3: 1e4, 4: 1e3, 5: 1.0}
# Resolutions image editors write by default; they say nothing about the voxel size.
_EDITOR_DPI = (72.0, 96.0, 150.0, 300.0)


def unit_factor(unit: Any) -> float | None:
    """Micrometres per `unit`, or None for an unknown or non-physical unit ("pixel")."""
    if not isinstance(unit, str):
        return None
    u = unit.strip().lower().replace("\\u00b5", "µ").replace("\\u03bc", "µ")
    return _UNIT_TO_UM.get(u.replace("μ", "µ"))


@dataclass
class Meta:
    """What a file's metadata says: voxel size ``(z, y, x)`` in µm (None where unknown),
    class names and this tool's extra metadata."""

    spacing: tuple[float | None, float | None, float | None] = (None, None, None)
    class_names: tuple[str, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return self.spacing[1] is not None and self.spacing[2] is not None


def ours(text: Any) -> dict[str, Any] | None:
    """This tool's metadata from a JSON text (TIFF description or ImageJ 'Info')."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not isinstance(text, str) or not text.lstrip().startswith("{"):
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    mine = doc.get(META_KEY) if isinstance(doc, dict) else None
    return mine if isinstance(mine, dict) else None


def ours_document(
    *,
    spacing: tuple[float, float, float],
    unit: str,
    axes: str,
    class_names: Sequence[str] | None,
    metadata: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """This tool's record, ``{META_KEY: {...}}``, as :func:`ours` and
    :func:`meta_from_ours` read it back; `spacing` is ``(z, y, x)`` in `unit`."""
    return {
        META_KEY: {
            "version": 1,
            "spacing": list(spacing),
            "unit": unit,
            "axes": axes,
            "class_names": list(class_names) if class_names is not None else None,
            "metadata": dict(metadata or {}),
        }
    }


def meta_from_ours(mine: Mapping[str, Any]) -> Meta:
    """Voxel size (in µm), class names and extra metadata from this tool's record."""
    meta = Meta()
    names = mine.get("class_names")
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        meta.class_names = tuple(names)
    extra = mine.get("metadata")
    if isinstance(extra, dict):
        meta.extra = extra
    factor = unit_factor(mine.get("unit", "µm"))
    sp = mine.get("spacing")
    if factor is not None and isinstance(sp, list) and len(sp) == 3:
        z, y, x = (positive(v) for v in sp)
        if z and y and x:
            meta.spacing = (z * factor, y * factor, x * factor)
    return meta


def _rational(value: Any) -> float | None:
    try:
        num, den = value
        return positive(num / den)
    except (TypeError, ValueError, ZeroDivisionError):
        return positive(value)


def tiff_meta(tif: Any, path: str) -> Meta:
    """Voxel size and class names from a TIFF: ours, ImageJ, OME-XML, resolution tags."""
    page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
    tags = page.tags
    ij = tif.imagej_metadata if tif.is_imagej else None
    for text in ((ij or {}).get("Info"), page.description):
        mine = ours(text)
        if mine is not None:
            meta = meta_from_ours(mine)
            if meta.found:
                return meta
            break
    else:
        meta = Meta()

    xres = _rational(tags["XResolution"].value) if "XResolution" in tags else None
    yres = _rational(tags["YResolution"].value) if "YResolution" in tags else None

    if ij:
        f = unit_factor(ij.get("unit"))
        if f is not None and xres and yres:
            z = positive(ij.get("spacing"))
            meta.spacing = (z * f if z else None, f / yres, f / xres)
            return meta

    if tif.is_ome and tif.ome_metadata:
        sp = _ome_xml_spacing(tif.ome_metadata)
        if sp is not None:
            meta.spacing = sp
            return meta

    runit = tags["ResolutionUnit"].value if "ResolutionUnit" in tags else 2
    f = _RESUNIT_TO_UM.get(int(runit))
    # (1, 1) is what writers put when they know no resolution
    if f is not None and xres and yres and (xres, yres) != (1.0, 1.0):
        if int(runit) == 2 and xres == yres and xres in _EDITOR_DPI:
            logger.info("%s: ignoring %g dpi, an image editor's default resolution", path, xres)
        else:
            meta.spacing = (None, f / yres, f / xres)
    return meta


def _ome_xml_spacing(xml: str) -> tuple[float | None, float | None, float | None] | None:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] != "Pixels":
            continue
        out: list[float | None] = []
        for ax in "ZYX":
            v = positive(el.get(f"PhysicalSize{ax}"))
            f = unit_factor(el.get(f"PhysicalSize{ax}Unit", "µm"))
            out.append(v * f if v is not None and f is not None else None)
        return (out[0], out[1], out[2]) if out[1] and out[2] else None
    return None


def finish_spacing(meta: Meta, user: Any, path: str) -> tuple[tuple[float, float, float], str]:
    """Voxel size in µm and its source: the user's, the metadata's (z = x when only
    y and x are known) or 1 µm by default, with a warning."""
    if user is not None:
        return parse_spacing(user), "user"
    z, y, x = meta.spacing
    if y is not None and x is not None:
        if z is None:
            logger.info("%s: no z spacing in the metadata; assuming z = x = %g µm", path, x)
            z = x
        return (z, y, x), "metadata"
    logger.warning(
        "%s: no voxel size found in the file; assuming 1 µm. Pass spacing= (CLI: "
        "--voxel-size; napari: the Segment widget's voxel size) to set it.",
        path,
    )
    return (1.0, 1.0, 1.0), "default"
