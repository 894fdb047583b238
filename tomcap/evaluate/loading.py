"""Loading references and results into one shape: ``{image key: [reference captions]}`` and
``{image key: caption}``.

Every input format becomes the same two mappings right after loading, so scoring has one code
path: COCO annotation files, Karpathy-style and NoCaps-style lists and Parquet tables for the
references; COCO results lists, paired files (references and a prediction per record, as papers
publish them) and our own generation artifact for the results. Image keys are strings; integer
COCO ids are written in decimal, and a file name such as ``COCO_val2014_000000391895.jpg`` also
answers to the id ``391895`` so that COCO results can be scored against Karpathy lists.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..artifacts import load_ref
from ..constants import MANIFEST_NAME
from ..errors import InputDataError

GENERATE_STAGE = "generate"
CAPTION_STAGES = (GENERATE_STAGE, "nearest_caption")
"""Stages whose artifacts hold captions to score (the model's, and the retrieval baseline's)."""
GENERATE_RESULTS_FILE = "results.json"
"""The generation artifact holds its captions in COCO results format under this name."""

REFS_KEYS = ("captions", "references", "refs", "sentences")
PRED_KEYS = ("prediction", "pred", "generated", "hypothesis")
ID_KEYS = ("image_name", "image_id", "filename", "file_name", "image")
"""Key names tried, in order, when a paired file or a reference list does not say which to use."""

PARQUET_ID_COLUMN = "image_id"
PARQUET_CAPTION_COLUMN = "caption"
_TRAILING_NUMBER = re.compile(r"(\d+)(?:\.[A-Za-z0-9]+)?$")
_SHOWN_KEYS = 5


@dataclass(frozen=True)
class PairedKeys:
    """Field names of a paired file; ``None`` means detect (see ``REFS_KEYS``, ``PRED_KEYS``, ``ID_KEYS``)."""

    refs: str | None = None
    pred: str | None = None
    image: str | None = None


@dataclass
class References:
    """Raw (untokenised) reference captions per image key, in file order."""

    captions: dict[str, list[str]]
    source: str
    aliases: dict[str, str] = field(default_factory=dict)
    """Alternative key (e.g. the integer id inside a file name) -> key in ``captions``."""

    def resolve(self, key: str) -> str | None:
        if key in self.captions:
            return key
        return self.aliases.get(key)


@dataclass
class Results:
    """One caption per image key, in file order, plus the references when the file carried them."""

    captions: dict[str, str]
    source: str
    name: str
    refs: References | None = None


def _fail(path: Path | str, message: str, fix: str) -> InputDataError:
    return InputDataError(message, path=path, fix=fix)


def read_json(path: Path) -> Any:
    """Parse a JSON file; a missing or invalid file is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "file not found", "pass an existing file")
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _fail(path, f"invalid JSON ({err})", "repair the file (it must be UTF-8 JSON)") from None


def image_key(value: Any, path: Path | str, where: str) -> str:
    """Normalise an image id (int or string) to its key."""
    if isinstance(value, bool) or value is None or not isinstance(value, (int, str)):
        raise _fail(path, f"{where}: image id {value!r} is not an integer or a string",
                    "give every record an integer or string image id")
    return str(value)


def number_alias(key: str) -> str | None:
    """'COCO_val2014_000000391895.jpg' -> '391895' (the COCO id), None if no trailing number."""
    m = _TRAILING_NUMBER.search(key)
    if m is None:
        return None
    alias = str(int(m.group(1)))
    return alias if alias != key else None


def _build_aliases(keys: Iterable[str]) -> dict[str, str]:
    aliases: dict[str, str] = {}
    ambiguous: set[str] = set()
    for key in keys:
        alias = number_alias(key)
        if alias is None:
            continue
        if alias in aliases and aliases[alias] != key:
            ambiguous.add(alias)
        aliases.setdefault(alias, key)
    for alias in ambiguous:
        del aliases[alias]
    return aliases


def _pick_key(record: dict, wanted: str | None, candidates: Sequence[str], what: str, path: Path) -> str:
    if wanted is not None:
        if wanted not in record:
            raise _fail(path, f"records have no '{wanted}' field (the {what} key); fields: {sorted(record)}",
                        f"pass the right {what} field name")
        return wanted
    for key in candidates:
        if key in record:
            return key
    raise _fail(path, f"records have no {what} field (tried {', '.join(candidates)}); fields: {sorted(record)}",
                f"name the {what} field with the matching --*-key option")


def _caption_list(value: Any, path: Path, i: int, field_name: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and value and all(isinstance(c, dict) and "raw" in c for c in value):
        value = [c["raw"] for c in value]  # Karpathy's dataset_*.json: sentences [{"raw": ...}]
    if not isinstance(value, list) or not value or not all(isinstance(c, str) for c in value):
        raise _fail(path, f"record {i}: '{field_name}' must be a non-empty list of strings",
                    "give every image at least one reference caption")
    return value


def _refs_from_records(records: list, path: Path, keys: PairedKeys, refs_field_candidates: Sequence[str]) -> References:
    captions: dict[str, list[str]] = {}
    first = records[0]
    id_key = _pick_key(first, keys.image, ID_KEYS, "image id", path)
    refs_key = _pick_key(first, keys.refs, refs_field_candidates, "references", path)
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or id_key not in rec or refs_key not in rec:
            raise _fail(path, f"record {i} lacks '{id_key}' or '{refs_key}'", "give every record both fields")
        key = image_key(rec[id_key], path, f"record {i}")
        # Several records of one image (NoCaps-style lists may split them) pool their captions.
        captions.setdefault(key, []).extend(_caption_list(rec[refs_key], path, i, refs_key))
    return References(captions=captions, source=str(path), aliases=_build_aliases(captions))


def _refs_from_coco(data: dict, path: Path) -> References:
    captions: dict[str, list[str]] = {}
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or not isinstance(ann.get("caption"), str):
            raise _fail(path, f"annotation {i} lacks 'image_id' or a string 'caption'",
                        "pass a COCO caption annotation file (annotations: [{image_id, caption}])")
        captions.setdefault(image_key(ann["image_id"], path, f"annotation {i}"), []).append(ann["caption"])
    aliases = _build_aliases(captions)
    for img in data.get("images", []) or []:
        # file_name -> id, so that results keyed by file name also resolve.
        if isinstance(img, dict) and "file_name" in img and str(img.get("id")) in captions:
            aliases.setdefault(str(img["file_name"]), str(img["id"]))
    return References(captions=captions, source=str(path), aliases=aliases)


def _refs_from_parquet(path: Path) -> References:
    import polars as pl

    try:
        df = pl.read_parquet(path, columns=[PARQUET_ID_COLUMN, PARQUET_CAPTION_COLUMN])
    except (pl.exceptions.ColumnNotFoundError, pl.exceptions.ComputeError, OSError) as err:
        raise _fail(path, f"cannot read columns '{PARQUET_ID_COLUMN}', '{PARQUET_CAPTION_COLUMN}' "
                          f"({err.__class__.__name__})",
                    f"write a Parquet with one row per caption and columns {PARQUET_ID_COLUMN}, "
                    f"{PARQUET_CAPTION_COLUMN}") from None
    captions: dict[str, list[str]] = {}
    for i, (img, cap) in enumerate(zip(df[PARQUET_ID_COLUMN].to_list(), df[PARQUET_CAPTION_COLUMN].to_list())):
        if not isinstance(cap, str):
            raise _fail(path, f"row {i}: caption is not a string", "fill every caption")
        captions.setdefault(image_key(img, path, f"row {i}"), []).append(cap)
    return References(captions=captions, source=str(path), aliases=_build_aliases(captions))


def load_references(path: Path, keys: PairedKeys = PairedKeys()) -> References:
    """References from a COCO annotation file, a Karpathy/NoCaps/paired list or a Parquet table."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        refs = _refs_from_parquet(path)
    else:
        data = read_json(path)
        if isinstance(data, dict) and isinstance(data.get("annotations"), list):
            refs = _refs_from_coco(data, path)
        elif isinstance(data, dict) and isinstance(data.get("images"), list) and data["images"] \
                and isinstance(data["images"][0], dict) and "sentences" in data["images"][0]:
            refs = _refs_from_records(data["images"], path, keys, REFS_KEYS)  # Karpathy dataset_coco.json
        elif isinstance(data, list) and data and isinstance(data[0], dict):
            refs = _refs_from_records(data, path, keys, (*REFS_KEYS, "caption"))
            _refuse_results_as_refs(data, refs, path, keys)
        else:
            raise _fail(path, "references of an unknown shape: expected COCO annotations {'annotations': [...]}, "
                              "a list [{'image_id'|'image_name', 'captions'|'caption'}] or a Parquet with "
                              f"{PARQUET_ID_COLUMN}/{PARQUET_CAPTION_COLUMN}",
                        "convert the references to one of these shapes")
    if not refs.captions:
        raise _fail(path, "no reference captions", "pass a references file with captions")
    return refs


def _refuse_results_as_refs(data: list, refs: References, path: Path, keys: PairedKeys) -> None:
    """A list of one string 'caption' per image is a results file: scored as references it gives BLEU 1."""
    if keys.refs is not None or any(k in data[0] for k in REFS_KEYS):
        return
    one_string_each = all(isinstance(r.get("caption"), str) for r in data if isinstance(r, dict))
    if one_string_each and len(refs.captions) == len(data):
        raise _fail(path, "has one 'caption' string per image, like a results file, and no reference lists",
                    "pass a references file as --refs (COCO annotations, or a list with a 'captions' list per "
                    "image), and this file as --results")


@dataclass(frozen=True)
class Coverage:
    """How much of the references a results file scores."""

    images_scored: int
    images_in_refs: int

    @property
    def fraction(self) -> float:
        return self.images_scored / self.images_in_refs if self.images_in_refs else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"images_scored": self.images_scored, "images_in_refs": self.images_in_refs,
                "fraction": round(self.fraction, 6)}


def coverage(ref_keys: Sequence[str], refs: References) -> Coverage:
    return Coverage(images_scored=len(set(ref_keys)), images_in_refs=len(refs.captions))


def _check_list(data: Any, path: Path) -> list:
    if not isinstance(data, list):
        raise _fail(path, f"results must be a JSON list of records, got {type(data).__name__}",
                    "write results as [{\"image_id\": ..., \"caption\": ...}] (COCO results format)")
    if not data:
        raise _fail(path, "results are empty", "pass a results file with at least one caption")
    bad = next((i for i, r in enumerate(data) if not isinstance(r, dict)), None)
    if bad is not None:
        raise _fail(path, f"record {bad} is not an object", "write every record as {\"image_id\", \"caption\"}")
    return data


def _add_unique(out: dict[str, str], key: str, caption: Any, path: Path, i: int) -> None:
    if not isinstance(caption, str):
        raise _fail(path, f"record {i} (image {key}): caption is not a string", "give every record a string caption")
    if key in out:
        raise _fail(path, f"duplicate result for image id {key} (record {i})",
                    "keep exactly one caption per image id")
    out[key] = caption


def _results_from_paired(data: list, path: Path, keys: PairedKeys, name: str) -> Results:
    first = data[0]
    pred_key = _pick_key(first, keys.pred, PRED_KEYS, "prediction", path)
    refs = _refs_from_records(data, path, keys, REFS_KEYS)
    id_key = _pick_key(first, keys.image, ID_KEYS, "image id", path)
    out: dict[str, str] = {}
    for i, rec in enumerate(data):
        if pred_key not in rec:
            raise _fail(path, f"record {i} has no '{pred_key}' (the prediction)", "give every record a prediction")
        _add_unique(out, image_key(rec[id_key], path, f"record {i}"), rec[pred_key], path, i)
    return Results(captions=out, source=str(path), name=name, refs=refs)


def is_paired(data: Any, keys: PairedKeys = PairedKeys()) -> bool:
    """A list whose records carry references (and so should carry a prediction)."""
    if not (isinstance(data, list) and data and isinstance(data[0], dict)):
        return False
    refs_keys = (keys.refs,) if keys.refs else REFS_KEYS
    return any(k in data[0] for k in refs_keys)


def results_path(path: Path) -> Path:
    """The JSON file of a results argument: the file itself, or a generation artifact's results file."""
    path = Path(path)
    if path.is_dir():
        if not (path / MANIFEST_NAME).is_file():
            raise _fail(path, "is a folder but not a tomcap artifact (no manifest.json)",
                        "pass a results JSON file or a generation artifact folder")
        ref = load_ref(path)
        if ref.stage not in CAPTION_STAGES:
            raise _fail(path, f"is a '{ref.stage}' artifact, not a captions artifact",
                        f"pass a results JSON file or an artifact of {' / '.join(CAPTION_STAGES)}")
        return ref.file(GENERATE_RESULTS_FILE)
    return path


def load_results(path: Path, keys: PairedKeys = PairedKeys(), name: str | None = None) -> Results:
    """Results in COCO results format, a paired file, or a generation artifact folder."""
    path = Path(path)
    name = name or (path.name if path.is_dir() else path.stem)
    file = results_path(path)
    data = _check_list(read_json(file), file)
    if is_paired(data, keys):
        return _results_from_paired(data, file, keys, name)
    if any(k in data[0] for k in PRED_KEYS) or keys.pred is not None:
        raise _fail(file, "records carry a prediction but no references (tried "
                          f"{', '.join((keys.refs,) if keys.refs else REFS_KEYS)})",
                    "pass --refs, or name the references field with --refs-key")
    out: dict[str, str] = {}
    for i, rec in enumerate(data):
        if "image_id" not in rec or "caption" not in rec:
            raise _fail(file, f"record {i} lacks 'image_id' or 'caption' (fields: {sorted(rec)})",
                        "write COCO results [{\"image_id\", \"caption\"}], or a paired file with references "
                        "and a prediction per record")
        _add_unique(out, image_key(rec["image_id"], file, f"record {i}"), rec["caption"], file, i)
    return Results(captions=out, source=str(file), name=name)


def align(results: Results, refs: References | None) -> tuple[list[str], list[str], list[list[str]], list[str]]:
    """The evaluated images in results order: (result keys, reference keys, references, captions).

    Every result image must have references (as the COCO toolkit requires); the error names the
    first unknown ids. Two results that resolve to one reference image are duplicates.
    """
    refs = refs if refs is not None else results.refs
    if refs is None:
        raise _fail(results.source, "no references: the results file does not carry them",
                    "pass --refs with a references file")
    keys, ref_keys, gts, hyps, missing = [], [], [], [], []
    seen: dict[str, str] = {}
    for key, caption in results.captions.items():
        ref_key = refs.resolve(key)
        if ref_key is None:
            missing.append(key)
            continue
        if ref_key in seen:
            raise _fail(results.source, f"image ids {seen[ref_key]} and {key} name the same reference image {ref_key}",
                        "keep exactly one caption per image")
        seen[ref_key] = key
        keys.append(key)
        ref_keys.append(ref_key)
        gts.append(refs.captions[ref_key])
        hyps.append(caption)
    if missing:
        shown = ", ".join(missing[:_SHOWN_KEYS]) + (" ..." if len(missing) > _SHOWN_KEYS else "")
        raise _fail(results.source, f"{len(missing)} result image id(s) have no reference: {shown}",
                    f"score against the references that cover these images ({refs.source}), or drop them")
    return keys, ref_keys, gts, hyps
