"""Reference-free metrics from a CLIP model: CLIPScore, RefCLIPScore, caption->image recall@k, and
the modality-gap figures of the evaluated (image, caption) pairs.

CLIPScore and RefCLIPScore follow Hessel et al. (2021): CLIP-S = w * max(cos(image, caption), 0)
with w = 2.5; RefCLIP-S is the harmonic mean of CLIP-S and max(max_r cos(caption, reference r), 0).
Recall@k ranks the evaluated images for each caption by cosine similarity (the retrieval metric
used to judge captions in the CFG captioning paper). Gap maths lives in ``tomcap.gapmath``,
shared with the gap stage.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .. import gapmath
from ..device import inference_autocast
from ..errors import InputDataError
from .loading import number_alias

log = logging.getLogger(__name__)

CLIPSCORE_W = 2.5
"""Hessel et al.'s rescaling weight of CLIP-S."""
RECALL_KS = (1, 5)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
_SHOWN = 5


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def clip_scores(img: np.ndarray, cap: np.ndarray, refs: np.ndarray | None = None,
                ref_owner: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-image CLIP-S and (given references) RefCLIP-S.

    img: (N, D) image embeddings; cap: (N, D) caption embeddings, row i describing image i;
    refs: (R, D) reference embeddings with ref_owner: (R,) the image row each belongs to.
    """
    img, cap = _normalise(img), _normalise(cap)
    clip_s = CLIPSCORE_W * np.maximum(np.sum(img * cap, axis=1), 0.0)
    out = {"CLIPScore": clip_s}
    if refs is not None and ref_owner is not None and len(refs):
        refs = _normalise(refs)
        cos = np.sum(cap[ref_owner] * refs, axis=1)
        best = np.full(len(cap), -np.inf)
        np.maximum.at(best, ref_owner, cos)
        ref_s = np.maximum(best, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            h = np.where(clip_s + ref_s > 0, 2 * clip_s * ref_s / (clip_s + ref_s), 0.0)
        out["RefCLIPScore"] = h
    return out


def recall_at_k(cap: np.ndarray, img: np.ndarray, ks: Sequence[int] = RECALL_KS) -> dict[str, float]:
    """Caption->image recall@k among the N evaluated images (caption i's own image is image i).

    cap, img: (N, D). Ties count against the caption (its image must beat every other image).
    """
    sim = _normalise(cap) @ _normalise(img).T  # (N, N)
    own = np.diag(sim)
    rank = np.sum(sim > own[:, None], axis=1)  # images strictly better than the right one
    return {f"recall@{k}": float(np.mean(rank < k)) for k in ks}


def gap_metrics(img: np.ndarray, cap: np.ndarray) -> dict[str, float]:
    """Modality-gap figures of paired embeddings (N, D) each (maths in ``tomcap.gapmath``).

    The gap is defined between L2-normalised embeddings (Liang et al. 2022), so raw features are
    normalised first; otherwise the figures scale with the encoders' output norms."""
    img, cap = gapmath.l2_normalize(img), gapmath.l2_normalize(cap)
    return {
        "gap_centroid_distance": float(gapmath.centroid_gap(img, cap)),
        "gap_mean_paired_cosine": float(gapmath.mean_paired_cosine(img, cap)),
        "gap_frechet_centered": float(gapmath.frechet_distance_centered(img, cap)),
    }


def find_images(images_dir: Path, keys: Sequence[str]) -> list[Path]:
    """The image file of each key: same file name, same stem, or same trailing number (COCO id).

    Raises naming the first keys without a file.
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise InputDataError("image folder not found", path=images_dir, fix="pass an existing folder with --images")
    by_name: dict[str, Path] = {}
    for f in sorted(images_dir.rglob("*")):
        if f.suffix.lower() not in IMAGE_SUFFIXES or not f.is_file():
            continue
        for name in (f.name, f.stem, number_alias(f.stem)):
            if name is not None:
                by_name.setdefault(name, f)
    out, missing = [], []
    for key in keys:
        path = by_name.get(key) or by_name.get(Path(key).stem) or by_name.get(number_alias(key) or key)
        if path is None:
            missing.append(key)
        out.append(path)
    if missing:
        shown = ", ".join(missing[:_SHOWN]) + (" ..." if len(missing) > _SHOWN else "")
        raise InputDataError(f"no image file for {len(missing)} of {len(keys)} image ids: {shown}", path=images_dir,
                             fix="name image files by image id or file name (e.g. 000000391895.jpg or 391895.png)")
    return out


def embed_texts(clip, texts: Sequence[str], batch_size: int) -> np.ndarray:
    """(N, D) float32 L2-normalised text embeddings from a ``tomcap.clip.LoadedClip``: the embedding stage's
    encoder (length-sorted batches cut to their longest caption where that is exact; 3-5x less compute
    than CLIP's 77 positions for captions)."""
    from ..embed.text import encode_texts

    return encode_texts(clip, texts, batch_size=batch_size, precision="auto", progress=False)


@torch.no_grad()
def embed_images(clip, paths: Sequence[Path], batch_size: int) -> np.ndarray:
    """(N, D) float32 image embeddings (not normalised) of image files."""
    from PIL import Image, UnidentifiedImageError

    chunks = []
    for i in range(0, len(paths), batch_size):
        batch = []
        for p in paths[i:i + batch_size]:
            try:
                with Image.open(p) as im:
                    batch.append(clip.preprocess(im.convert("RGB")))
            except (UnidentifiedImageError, OSError) as err:
                raise InputDataError(f"cannot read image ({err.__class__.__name__})", path=p,
                                     fix="replace or remove the broken image file") from None
        with inference_autocast(clip.device):
            chunks.append(clip.model.encode_image(torch.stack(batch).to(clip.device)).float().cpu().numpy())
    return np.concatenate(chunks) if chunks else np.zeros((0, clip.embed_dim), dtype=np.float32)


def clip_metrics(clip, image_paths: Sequence[Path], captions: Sequence[str], refs: Sequence[Sequence[str]],
                 batch_size: int, image_embeddings: np.ndarray | None = None
                 ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Corpus and per-image CLIP metrics of captions (N) for images (N) with references; the images are
    encoded from ``image_paths`` unless their ``image_embeddings`` (N, D) are given."""
    img = embed_images(clip, image_paths, batch_size) if image_embeddings is None else image_embeddings
    cap = embed_texts(clip, captions, batch_size)
    flat = [r for rs in refs for r in rs]
    owner = np.repeat(np.arange(len(refs)), [len(rs) for rs in refs])
    ref_emb = embed_texts(clip, flat, batch_size)
    per = clip_scores(img, cap, ref_emb, owner)
    corpus = {k: float(np.mean(v)) for k, v in per.items()}
    corpus.update(recall_at_k(cap, img))
    corpus.update(gap_metrics(img, cap))
    return corpus, per
