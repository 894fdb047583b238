"""Markdown for people reading results in a browser: inlined PNGs, rounded numbers, small tables.

The Prefect UI shows markdown artifacts but cannot load files next to them (a relative link 404s,
``file://`` is blocked), while a PNG inlined as a ``data:`` URI renders. Images are downscaled so an
artifact stays small enough for the UI and the server database. Presentation only: full precision stays
in the artifact files (``metrics.json``, manifests).
"""
from __future__ import annotations

import base64
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

MAX_IMAGE_PX = 900
"""Longest side of an inlined figure; larger PNGs are downscaled (aspect kept)."""
MAX_IMAGE_BYTES = 160_000
"""Inlined PNGs above this are shrunk further until they fit (base64 adds a third)."""
THUMBNAIL_PX = 96
"""Longest side of a sample image beside its caption."""
READ_DIGITS = 4
"""Significant digits of numbers shown for reading."""

_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")


def _png_bytes(image, max_px: int) -> bytes:
    img = image.copy()
    img.thumbnail((max_px, max_px))
    if img.mode not in ("RGB", "RGBA", "L", "LA", "P"):
        img = img.convert("RGBA")
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def png_data_uri(source: Path | bytes, max_px: int = MAX_IMAGE_PX, max_bytes: int = MAX_IMAGE_BYTES) -> str:
    """``data:image/png;base64,...`` of an image file (any format PIL reads) or PNG bytes, at most ``max_px`` on
    its longest side and (shrinking further in steps) about ``max_bytes`` of PNG."""
    from PIL import Image

    raw = source if isinstance(source, bytes) else Path(source).read_bytes()
    with Image.open(io.BytesIO(raw)) as img:
        img.load()
        data = raw if img.format == "PNG" and max(img.size) <= max_px and len(raw) <= max_bytes else None
        side = min(max_px, max(img.size))
        while data is None or len(data) > max_bytes:
            data = _png_bytes(img, side)
            if side <= 64:
                break
            side = int(side * 0.75)
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def inline_images(markdown: str, folder: Path, files: Iterable[str] | None = None) -> str:
    """Replace ``![alt](name.png)`` links to files in ``folder`` (restricted to ``files`` if given) by data URIs."""
    allowed = None if files is None else set(files)

    def repl(m: re.Match) -> str:
        name = m.group(2)
        path = folder / name
        if (allowed is not None and name not in allowed) or "/" in name or not path.is_file():
            return m.group(0)
        return f"![{m.group(1)}]({png_data_uri(path)})"

    return _MD_IMAGE.sub(repl, markdown)


def image_md(alt: str, source: Path | bytes, max_px: int = MAX_IMAGE_PX) -> str:
    return f"![{alt}]({png_data_uri(source, max_px=max_px)})"


def for_reading(value: Any, digits: int = READ_DIGITS) -> Any:
    """Floats rounded to ``digits`` significant digits (integers, strings, None unchanged; NaN/inf kept)."""
    if isinstance(value, bool) or not isinstance(value, float) or not math.isfinite(value) or value == 0.0:
        return value
    decimals = max(digits - 1 - int(math.floor(math.log10(abs(value)))), 0)
    return round(value, decimals)


def rounded_rows(rows: Iterable[Mapping[str, Any]], digits: int = READ_DIGITS) -> list[dict[str, Any]]:
    return [{k: for_reading(v, digits) for k, v in r.items()} for r in rows]


def md_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A markdown table of ``rows`` (numbers rounded for reading; '|' in cells escaped)."""
    cols = list(columns) if columns is not None else list(dict.fromkeys(k for r in rows for k in r))
    if not cols:
        return ""

    def cell(v: Any) -> str:
        return "-" if v is None else str(for_reading(v)).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def curve_png(points: Sequence[tuple[float, float]], *, title: str, x_label: str, y_label: str) -> bytes:
    """A line plot of (x, y) points as PNG bytes (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
    try:
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        ax.plot(xs, ys, marker="o", markersize=3)
        ax.set_title(title)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return buf.getvalue()
