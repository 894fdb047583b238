"""Readers: one per caption file format, each returning the same three columns.

Every reader yields a polars frame with ``raw`` (the caption as written), ``image_id`` and
``split`` (both nullable strings). Large line-based formats (TSV, CSV, JSONL, Parquet, text) are
scanned lazily so the corpus stage can stream them; JSON formats are parsed whole (their files
are annotation-sized).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from ..errors import InputDataError
from .config import SourceConfig

RAW, IMAGE_ID, SPLIT = "raw", "image_id", "split"
COLUMNS = (RAW, IMAGE_ID, SPLIT)
ROW_OK = "row_ok"
"""Optional boolean column of line-based readers: False marks a malformed row (the stage reports it)."""

_SUFFIX_FORMATS = {
    ".parquet": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "cc3m_tsv",
    ".txt": "text",
}
_TEXT_SEPARATOR = "\x1f"
"""Unit separator: never part of a caption line, so a text file reads as one column."""
CC3M_COLUMNS = 2


def _fail(path: Path, message: str, fix: str) -> InputDataError:
    return InputDataError(message, path=path, fix=fix)


def _load_json(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _fail(path, f"invalid JSON ({err})", "repair the file or set the source's 'format'") from None


def _json_shape(data: Any) -> str | None:
    """Which JSON caption format a parsed document is, or None."""
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        return "coco"
    if isinstance(data, list) and data and isinstance(data[0], dict):
        if "captions" in data[0]:
            return "karpathy"
        if "caption" in data[0]:
            return "nocaps"
    return None


def detect_format(path: Path) -> str:
    """Format of a caption file from its suffix and, for JSON, its shape."""
    suffix = path.suffix.lower()
    if suffix in _SUFFIX_FORMATS:
        return _SUFFIX_FORMATS[suffix]
    if suffix == ".json":
        shape = _json_shape(_load_json(path))
        if shape is None:
            raise _fail(
                path,
                "JSON of an unknown shape: expected COCO annotations {'annotations': [...]}, a Karpathy list "
                "[{'captions': [...]}] or a NoCaps list [{'caption': ...}]",
                "convert it to one of these shapes or to JSONL with a 'caption' field",
            )
        return shape
    raise _fail(path, f"cannot detect the caption format of suffix '{suffix}'",
                "set 'format' on this source (one of coco, karpathy, nocaps, cc3m_tsv, csv, jsonl, parquet, text)")


def _json_type(value: Any) -> str:
    return {bool: "boolean", int: "number", float: "number", list: "list", dict: "object"}.get(type(value), "null") \
        if not isinstance(value, str) else "string"


def _check_captions(path: Path, captions: list[Any], where: str, field: str) -> None:
    """Every caption of a JSON record must be a string (polars would fail on the frame, or stringify it)."""
    bad = next((c for c in captions if not isinstance(c, str)), "")
    if not isinstance(bad, str):
        raise _fail(path, f"{where}: '{field}' holds a {_json_type(bad)} ({json.dumps(bad)[:40]}), "
                          "not a caption string",
                    f"make every '{field}' value a string (or drop that record)")


def _frame(raw: list[Any], image_ids: list[Any], splits: list[Any]) -> pl.LazyFrame:
    return pl.DataFrame(
        {RAW: raw, IMAGE_ID: [None if i is None else str(i) for i in image_ids], SPLIT: splits},
        schema={RAW: pl.String, IMAGE_ID: pl.String, SPLIT: pl.String},
    ).lazy()


def _expect_list(path: Path, data: Any, what: str) -> list[dict]:
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise _fail(path, f"expected a JSON list of objects ({what})", "check the source's 'format'")
    return data


def _read_coco(path: Path, src: SourceConfig) -> pl.LazyFrame:
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise _fail(path, "not a COCO annotation file (no 'annotations' list)", "check the source's 'format'")
    anns = data["annotations"]
    bad = next((i for i, a in enumerate(anns) if not isinstance(a, dict) or "caption" not in a), None)
    if bad is not None:
        raise _fail(path, f"annotation #{bad} has no 'caption'", "every annotation needs 'image_id' and 'caption'")
    for i, a in enumerate(anns):
        _check_captions(path, [a["caption"]], f"annotation #{i}", "caption")
    return _frame([a["caption"] for a in anns], [a.get("image_id") for a in anns], [src.split] * len(anns))


def _read_karpathy(path: Path, src: SourceConfig) -> pl.LazyFrame:
    recs = _expect_list(path, _load_json(path), "Karpathy style [{'image_name'|'image_id', 'captions': [...]}]")
    raw, ids, splits = [], [], []
    for i, r in enumerate(recs):
        caps = r.get("captions")
        if not isinstance(caps, list):
            raise _fail(path, f"record #{i} has no 'captions' list", "every record needs a 'captions' list")
        _check_captions(path, caps, f"record #{i}", "captions")
        image = r.get("image_id", r.get("image_name"))
        raw += caps
        ids += [image] * len(caps)
        splits += [r.get("split", src.split)] * len(caps)
    return _frame(raw, ids, splits)


def _read_nocaps(path: Path, src: SourceConfig) -> pl.LazyFrame:
    recs = _expect_list(path, _load_json(path), "NoCaps style [{'image_id', 'caption'}]")
    raw, ids, splits = [], [], []
    for i, r in enumerate(recs):
        if "caption" not in r:
            raise _fail(path, f"record #{i} has no 'caption'", "every record needs 'caption' (and 'image_id')")
        # NoCaps corpora carry either one caption per record or the image's list of references.
        caps = r["caption"] if isinstance(r["caption"], list) else [r["caption"]]
        _check_captions(path, caps, f"record #{i}", "caption")
        raw += caps
        ids += [r.get("image_id")] * len(caps)
        splits += [r.get("split", src.split)] * len(caps)
    return _frame(raw, ids, splits)


def _first_line(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.readline()


def _read_cc3m_tsv(path: Path, src: SourceConfig) -> pl.LazyFrame:
    n_cols = len(_first_line(path).rstrip("\r\n").split("\t"))
    if n_cols != CC3M_COLUMNS:
        raise _fail(path, f"TSV has {n_cols} column(s) on line 1, expected {CC3M_COLUMNS} (caption<TAB>url, no header)",
                    "pass a CC3M-style TSV, or use format 'csv' with 'caption_column'")
    lf = pl.scan_csv(path, separator="\t", has_header=False, quote_char=None,
                     schema={"caption": pl.String, "url": pl.String})
    # Reading the url column too makes polars reject rows with extra fields; a null url is a short row.
    return lf.select(pl.col("caption").alias(RAW), pl.lit(None, pl.String).alias(IMAGE_ID),
                     pl.lit(src.split, pl.String).alias(SPLIT), pl.col("url").is_not_null().alias(ROW_OK))


def _select_columns(lf: pl.LazyFrame, path: Path, src: SourceConfig) -> pl.LazyFrame:
    try:
        names = lf.collect_schema().names()
    except pl.exceptions.PolarsError as err:
        raise _fail(path, f"cannot read the file ({err.__class__.__name__}: {str(err).splitlines()[0]})",
                    "check that the file matches the source's 'format'") from None
    if src.caption_column not in names:
        raise _fail(path, f"no column '{src.caption_column}' (columns: {names})",
                    "set the source's 'caption_column' to the column holding captions")
    dtype = lf.collect_schema()[src.caption_column]
    if dtype not in (pl.String, pl.Categorical, pl.Null):
        raise _fail(path, f"column '{src.caption_column}' holds {dtype}, not caption strings",
                    "write the captions as a string column, or set 'caption_column' to the column that holds them")
    image = (pl.col(src.image_id_column).cast(pl.String) if src.image_id_column in names
             else pl.lit(None, pl.String))
    split = pl.col("split").cast(pl.String) if "split" in names else pl.lit(src.split, pl.String)
    return lf.select(pl.col(src.caption_column).cast(pl.String).alias(RAW), image.alias(IMAGE_ID),
                     split.alias(SPLIT))


def _read_csv(path: Path, src: SourceConfig) -> pl.LazyFrame:
    return _select_columns(pl.scan_csv(path, infer_schema=False), path, src)


def _first_bad_jsonl_line(path: Path, column: str) -> str | None:
    """The first line that is not a JSON object whose ``column`` is a string (or absent/null), as a message."""
    with open(path, "rb") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                return f"line {n} is not valid JSON ({getattr(err, 'msg', None) or err.reason})"
            if not isinstance(obj, dict):
                return f"line {n} is a JSON {_json_type(obj)}, not an object"
            value = obj.get(column)
            if value is not None and not isinstance(value, str):
                return (f"line {n}: '{column}' holds a {_json_type(value)} ({json.dumps(value)[:40]}), "
                        "not a caption string")
    return None


def _check_jsonl(path: Path, column: str) -> None:
    """Parse the caption field typed (polars would quietly turn numbers, lists and objects into caption text).

    pyarrow's C++ parser does the pass; only when it complains are the lines read in Python to name the first
    bad one (its own row numbers count within a block).
    """
    import pyarrow as pa
    import pyarrow.json as pj

    opts = pj.ParseOptions(explicit_schema=pa.schema([(column, pa.string())]), unexpected_field_behavior="ignore")
    try:
        pj.read_json(path, parse_options=opts)
    except pa.ArrowInvalid:
        problem = _first_bad_jsonl_line(path, column)
        if problem is not None:
            raise _fail(path, problem, "repair or remove that line (one JSON object per line, captions as strings)")


def _read_jsonl(path: Path, src: SourceConfig) -> pl.LazyFrame:
    _check_jsonl(path, src.caption_column)
    return _select_columns(pl.scan_ndjson(path, infer_schema_length=1000), path, src)


def _read_parquet(path: Path, src: SourceConfig) -> pl.LazyFrame:
    return _select_columns(pl.scan_parquet(path), path, src)


def _read_text(path: Path, src: SourceConfig) -> pl.LazyFrame:
    lf = pl.scan_csv(path, separator=_TEXT_SEPARATOR, has_header=False, quote_char=None,
                     schema={RAW: pl.String}, truncate_ragged_lines=True)
    return lf.select(pl.col(RAW), pl.lit(None, pl.String).alias(IMAGE_ID), pl.lit(src.split, pl.String).alias(SPLIT))


READERS: dict[str, Callable[[Path, SourceConfig], pl.LazyFrame]] = {
    "coco": _read_coco,
    "karpathy": _read_karpathy,
    "nocaps": _read_nocaps,
    "cc3m_tsv": _read_cc3m_tsv,
    "csv": _read_csv,
    "jsonl": _read_jsonl,
    "parquet": _read_parquet,
    "text": _read_text,
}


def check_source_file(path: Path) -> Path:
    """A source path must be a non-empty file; errors say which of these it is not."""
    if path.is_dir():
        raise _fail(path, "is a directory, not a caption file",
                    "pass the caption file inside it (one source per file: repeat --source or list them in 'sources')")
    if not path.is_file():
        raise _fail(path, "caption file not found",
                    "check the source's 'path' (relative paths are relative to the YAML file)")
    if path.stat().st_size == 0:
        raise _fail(path, "caption file is empty", "point the source at a file that holds captions")
    return path


def read_source(src: SourceConfig) -> tuple[str, pl.LazyFrame]:
    """(format, lazy frame of raw/image_id/split) for one source; errors name the file and the fix."""
    path = check_source_file(Path(src.path))
    fmt = detect_format(path) if src.format == "auto" else src.format
    return fmt, READERS[fmt](path, src)
