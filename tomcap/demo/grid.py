"""The demo report's picture: a few test images with the full model's caption, the nearest caption and
one reference under each, as one PNG.

The images are fixed by the split, not by the results: the first ``n`` images of the split's COCO
annotation file (its ``images`` list order). The PNG is a pure function of those images and captions
(PIL only, Pillow's bundled default font, no timestamp or other metadata chunk), so a rebuilt report
has the same bytes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..errors import InputDataError
from ..world.export import SplitPaths
from ..world.splits import TEST_STREAM

GRID_FILE = "captions_grid.png"
CELL_PX = 192
"""Side of an upscaled 64x64 world image: big enough to see each object's colour and shape."""
COLUMNS = 4
PAD = 8
FONT_PX = 13
LINE_GAP = 2
BACKGROUND = (255, 255, 255)
ROWS = (("full", "full", (20, 60, 170)), ("nearest", "nearest_caption", (20, 120, 40)), ("ref", None, (90, 90, 90)))
"""(label, results key or None for the first reference, text colour) of the lines under each image."""
GRID_ROWS = tuple(key for _, key, _ in ROWS if key is not None)
"""Report rows (generation results) the grid needs from its split."""


@dataclass(frozen=True)
class GridCell:
    image_id: int
    image: Path
    lines: tuple[tuple[str, str], ...]
    """(label, caption) per row of ``ROWS``."""


def grid_cells(annotations: Path, images_dir: Path, results: dict[str, list[dict]], n: int) -> list[GridCell]:
    """One cell per fixed image: its file and, per row of ``ROWS``, the caption (``-`` where a results
    list lacks the image). ``results``: results key (``full``, ``nearest_caption``) -> COCO results."""
    coco = json.loads(Path(annotations).read_text(encoding="utf-8"))
    refs: dict[int, str] = {}
    for a in coco["annotations"]:  # the first reference of each image, in file order
        refs.setdefault(int(a["image_id"]), a["caption"])
    by_key = {k: {int(r["image_id"]): r["caption"] for r in rs} for k, rs in results.items()}
    cells = []
    for im in coco["images"][:n]:
        image_id, path = int(im["id"]), Path(images_dir) / im["file_name"]
        if not path.is_file():
            raise InputDataError(f"test image {im['file_name']} (id {image_id}) is missing", path=path,
                                 fix="regenerate the world artifact (its image folder is incomplete)")
        lines = tuple((label, refs.get(image_id, "-") if key is None else by_key.get(key, {}).get(image_id, "-"))
                      for label, key, _ in ROWS)
        cells.append(GridCell(image_id=image_id, image=path, lines=lines))
    return cells


def grid_split(rows: dict[str, set[str]]) -> str | None:
    """The split the grid shows, given each split's report rows: test where it has every row of
    ``GRID_ROWS``, else the first split that has them (``demo.splits: [val]``), else None (no grid)."""
    both = [split for split, names in rows.items() if set(GRID_ROWS) <= names]
    return TEST_STREAM if TEST_STREAM in both else next(iter(both), None)


def write_grid(sp: SplitPaths, split: str, results: dict[str, list[dict]], n: int, out: Path) -> dict:
    """Draw the first ``n`` images of split ``sp`` with their captions into the PNG ``out``; returns what it
    shows (file, split, image ids, size), for metrics.json and report.md."""
    cells = grid_cells(sp.annotations, sp.images_dir, results, n)
    title = f"split {split}: full = the full model's caption, nearest = the nearest caption, ref = the first reference"
    size = render_grid(cells, title, out)
    return {"file": out.name, "split": split, "image_ids": [c.image_id for c in cells], "size": list(size)}


def grid_markdown(grid: dict) -> list[str]:
    """report.md's section for the grid ``write_grid`` described."""
    n, split, ids = len(grid["image_ids"]), grid["split"], ", ".join(map(str, grid["image_ids"]))
    return [f"## Captions of {n} `{split}` images", "",
            f"The first {n} images of the `{split}` split's annotation file (ids {ids}; fixed, not chosen by "
            "results). Under each: the full model's caption (blue), the nearest caption (green) and the first "
            "reference (grey).", "", f"![caption grid]({grid['file']})"]


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=FONT_PX)


def _wrap(text: str, font, width: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels (a word longer than a line gets a line of its own)."""
    lines: list[str] = []
    for word in " ".join(text.split()).split(" "):
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def _cell_text(cell: GridCell, font) -> list[tuple[str, tuple[int, int, int]]]:
    out = [(f"id {cell.image_id}", (0, 0, 0))]
    for (label, caption), (_, _, colour) in zip(cell.lines, ROWS):
        out += [(line, colour) for line in _wrap(f"{label}: {caption}", font, CELL_PX)]
    return out


def render_grid(cells: list[GridCell], title: str, out: Path) -> tuple[int, int]:
    """Draw ``cells`` (COLUMNS per grid row, captions wrapped under each image) into the PNG ``out``;
    returns its (width, height)."""
    font = _font()
    line_px = FONT_PX + LINE_GAP
    texts = [_cell_text(c, font) for c in cells]
    grid_rows = [list(range(i, min(i + COLUMNS, len(cells)))) for i in range(0, len(cells), COLUMNS)]
    heights = [CELL_PX + PAD + max(len(texts[i]) for i in r) * line_px + PAD for r in grid_rows]
    width = PAD + min(COLUMNS, len(cells)) * (CELL_PX + PAD)
    title_lines = _wrap(title, font, width - 2 * PAD)
    header = PAD + len(title_lines) * line_px
    canvas = Image.new("RGB", (width, header + sum(heights)), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for k, line in enumerate(title_lines):
        draw.text((PAD, PAD // 2 + k * line_px), line, fill=(0, 0, 0), font=font)
    y = header
    for r, h in zip(grid_rows, heights):
        for col, i in enumerate(r):
            x = PAD + col * (CELL_PX + PAD)
            with Image.open(cells[i].image) as im:
                # nearest-neighbour: the world's shapes keep hard edges, no invented colours at the borders
                canvas.paste(im.convert("RGB").resize((CELL_PX, CELL_PX), Image.Resampling.NEAREST), (x, y))
            ty = y + CELL_PX + PAD // 2
            for line, colour in texts[i]:
                draw.text((x, ty), line, fill=colour, font=font)
                ty += line_px
        y += h
    # No pnginfo, fixed compression: the bytes depend on the pixels only.
    canvas.save(out, format="PNG", optimize=False, compress_level=9)
    return canvas.size


__all__ = ["GRID_FILE", "GRID_ROWS", "GridCell", "grid_cells", "grid_markdown", "grid_split", "render_grid",
           "write_grid"]
