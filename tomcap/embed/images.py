"""CLIP image embeddings of a folder of images or of in-memory images (PIL images or HxWxC uint8 arrays)."""
from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..clip import LoadedClip
from ..errors import ConfigError, InputDataError

log = logging.getLogger(__name__)


@dataclass
class ImageEncodeResult:
    """Embeddings (N, D) float32 L2-normalised, the index of each kept input, and the skipped ones."""

    embeddings: np.ndarray
    kept: list[int]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)


def list_images(folder: Path, extensions: Sequence[str], max_images: int | None = None) -> list[Path]:
    """Image files under folder (recursive, sorted by relative path)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputDataError("image folder not found", path=folder,
                             fix="set embed_images.images to an existing folder of images")
    exts = {e.lower() for e in extensions}
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in exts)
    if not files:
        raise InputDataError(f"no images with suffix {sorted(exts)} in the folder", path=folder,
                             fix="point embed_images.images at a folder of images or extend embed_images.extensions")
    return files[:max_images] if max_images else files


def image_ids(files: Sequence[Path], regex: str | None) -> list[str]:
    """Image id of each file: group 1 of ``regex`` on the stem, or the stem itself."""
    if regex is None:
        return [f.stem for f in files]
    try:
        pat = re.compile(regex)
    except re.error as err:
        raise ConfigError(f"embed_images.image_id_regex {regex!r} is not a valid regex ({err})",
                          fix="write a Python regex with one group, e.g. '(\\d+)$'") from None
    out = []
    for f in files:
        m = pat.search(f.stem)
        if m is None or not m.groups():
            raise InputDataError(f"image_id_regex {regex!r} finds no group in the file name", path=f,
                                 fix="adjust embed_images.image_id_regex so that group 1 matches every file stem")
        out.append(str(int(m.group(1))) if m.group(1).isdigit() else m.group(1))
    return out


SKIP_HINT = "set embed_images.skip_bad_images: true (tomcap embed-images --skip-bad-images)"
"""How to skip bad images in the image-embedding stage; other callers name their own switch."""


class ImageTooLargeError(ValueError):
    """The image's header claims more pixels than PIL's decompression-bomb limit allows."""


def _open(item) -> "PIL.Image.Image":  # noqa: F821
    from PIL import Image

    if isinstance(item, (str, Path)):
        # Above MAX_IMAGE_PIXELS PIL only warns (and then decodes gigapixels); both limits refuse here.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                with Image.open(item) as im:
                    return im.convert("RGB")
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
                raise ImageTooLargeError(f"header claims too many pixels, a possible decompression bomb ({err})") \
                    from None
    if isinstance(item, np.ndarray):
        return Image.fromarray(item).convert("RGB")
    return item.convert("RGB")


@torch.inference_mode()
def encode_images(clip: LoadedClip, items: Iterable, *, names: Sequence[str] | None = None, batch_size: int = 64,
                  precision: str = "fp32", skip_bad_images: bool = False, progress: bool | None = None,
                  skip_hint: str = SKIP_HINT) -> ImageEncodeResult:
    """Encode paths / PIL images / arrays with ``clip``; an unreadable or oversized one raises unless
    ``skip_bad_images`` (then it is logged and listed in ``skipped``); ``skip_hint`` says how to turn that on."""
    from PIL import UnidentifiedImageError

    from .text import _autocast

    items = list(items)
    names = list(names) if names is not None else [
        str(i) if isinstance(i, (str, Path)) else f"#{n}" for n, i in enumerate(items)]
    chunks: list[np.ndarray] = []
    kept: list[int] = []
    skipped: list[tuple[str, str]] = []
    batch: list[torch.Tensor] = []
    batch_idx: list[int] = []

    def flush() -> None:
        if not batch:
            return
        with _autocast(clip.device, precision):
            feats = clip.model.encode_image(torch.stack(batch).to(clip.device))
        chunks.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy())
        kept.extend(batch_idx)
        batch.clear()
        batch_idx.clear()

    bar = tqdm(items, desc="embed images", unit="img", disable=None if progress is None else not progress)
    for n, item in enumerate(bar):
        try:
            batch.append(clip.preprocess(_open(item)))
        except (UnidentifiedImageError, OSError, ValueError, TypeError) as err:
            reason = f"{type(err).__name__}: {err}"
            if not skip_bad_images:
                raise InputDataError(f"cannot read image ({reason})", path=names[n],
                                     fix=f"remove or replace the file, or {skip_hint}") from None
            log.warning("skipping unreadable image %s (%s)", names[n], reason)
            skipped.append((names[n], reason))
            continue
        batch_idx.append(n)
        if len(batch) == batch_size:
            flush()
    flush()
    emb = np.concatenate(chunks) if chunks else np.zeros((0, clip.embed_dim), np.float32)
    return ImageEncodeResult(embeddings=emb, kept=kept, skipped=skipped)
