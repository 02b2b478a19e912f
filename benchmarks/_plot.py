"""A small line plot drawn with Pillow (matplotlib is not in the environment)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

COLOURS = [
    (31, 119, 180),
    (214, 39, 40),
    (44, 160, 44),
    (148, 103, 189),
    (255, 127, 14),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]


def line_plot(
    path: Path,
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    size: tuple[int, int] = (720, 460),
) -> Path:
    """Draw each series (name -> [(x, y), ...]) as a line with dots; write a PNG.

    The y range is the data's, padded by 0.02; x ticks at every x that occurs.
    """
    from PIL import Image, ImageDraw

    w, h = size
    left, right, top, bottom = 70, 190, 44, 60
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    pts = [p for s in series.values() for p in s]
    xs = sorted({p[0] for p in pts})
    y0 = min(p[1] for p in pts) - 0.02
    y1 = max(p[1] for p in pts) + 0.02
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1

    def at(x: float, y: float) -> tuple[float, float]:
        px = left + (x - x0) / (x1 - x0) * (w - left - right)
        py = h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom)
        return px, py

    d.rectangle([left, top, w - right, h - bottom], outline="black")
    for x in xs:
        px, _ = at(x, y0)
        d.line([px, h - bottom, px, h - bottom + 5], fill="black")
        d.text((px - 6, h - bottom + 8), f"{x:g}", fill="black")
    for i in range(6):
        y = y0 + (y1 - y0) * i / 5
        _, py = at(x0, y)
        d.line([left - 5, py, left, py], fill="black")
        d.line([left, py, w - right, py], fill=(225, 225, 225))
        d.text((left - 45, py - 6), f"{y:.3f}", fill="black")
    for k, (name, s) in enumerate(series.items()):
        c = COLOURS[k % len(COLOURS)]
        line = [at(x, y) for x, y in sorted(s)]
        if len(line) > 1:
            d.line(line, fill=c, width=2)
        for px, py in line:
            d.ellipse([px - 3, py - 3, px + 3, py + 3], fill=c)
        d.line(
            [w - right + 12, top + 12 + 18 * k, w - right + 32, top + 12 + 18 * k], fill=c, width=3
        )
        d.text((w - right + 38, top + 6 + 18 * k), name, fill="black")
    d.text((left, 4), title, fill="black")
    d.text(((left + w - right) / 2 - 40, h - 25), xlabel, fill="black")
    d.text((8, top - 16), ylabel, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
