"""Modality-gap maths shared by the gap stage, training and evaluation (numpy / torch, no I/O but stats files).

TOMCap models CLIP text and image embeddings as two diagonal Gaussians, N(μ_T, σ_T²) and N(μ_I, σ_I²),
estimated per dimension from *unpaired* sets, and moves text embeddings onto the image distribution:

    e'_T = (e_T − μ_T) · σ_I / σ_T + μ_I          (then optionally L2 re-normalised)

The gap figures follow TPC-CMA's decomposition: the *centroid gap* ‖μ_I − μ_T‖ and the *distribution gap*,
the Fréchet distance between the two distributions once each is centred on its own mean.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from .errors import ArtifactError, InputDataError
from .gap_config import DEFAULT_NOISE_STD

SIGMA_FLOOR = 1e-6
"""Lower bound on estimated stds: a constant dimension must not divide by zero in the correction."""
STATS_TENSORS = "stats.safetensors"
STATS_JSON = "stats.json"
STAT_FIELDS = ("mu_t", "sigma_t", "mu_i", "sigma_i", "noise_std")
_CHUNK_ROWS = 65536
"""Rows per chunk when reducing large (memory-mapped) arrays, so float64 copies stay small."""

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class GaussianStats:
    """Per-dimension Gaussian statistics of both modalities; every array is float32 (D,).

    ``noise_std``: std of the Gaussian noise added to (corrected) text embeddings in training
    (measured as the std of image − text differences over a paired set, else a config default).
    """

    mu_t: np.ndarray
    sigma_t: np.ndarray
    mu_i: np.ndarray
    sigma_i: np.ndarray
    noise_std: np.ndarray
    n_text: int = 0
    n_image: int = 0
    n_paired: int = 0
    meta: dict = field(default_factory=dict)
    """Free-form provenance (e.g. ``model_fingerprint``), saved in the JSON."""

    def __post_init__(self) -> None:
        dims = {name: np.shape(getattr(self, name)) for name in STAT_FIELDS}
        if len(set(dims.values())) != 1 or len(next(iter(dims.values()))) != 1:
            raise InputDataError(f"Gaussian stats need five vectors of one length, got shapes {dims}",
                                 fix="estimate the stats with tomcap.gapmath.estimate_stats")
        for name in STAT_FIELDS:
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype=np.float32))

    @property
    def dim(self) -> int:
        return int(self.mu_t.shape[0])

    @property
    def model_fingerprint(self) -> str | None:
        return self.meta.get("model_fingerprint")

    def tensors(self, device: torch.device | str | None = None,
                dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """The five vectors as torch tensors (D,)."""
        return {k: torch.as_tensor(getattr(self, k), dtype=dtype, device=device) for k in STAT_FIELDS}


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-dim mean and (population) std of rows of x (N, D), chunked in float64 for memory-mapped input."""
    x = np.asarray(x) if not isinstance(x, torch.Tensor) else x.detach().cpu().numpy()
    if x.ndim != 2:
        raise InputDataError(f"expected embeddings of shape (N, D), got {x.shape}", fix="pass a 2-D array")
    n, d = x.shape
    if n == 0:
        raise InputDataError("cannot estimate statistics from an empty set of embeddings",
                             fix="pass at least two embeddings per modality (check the input artifact's row count)")
    s = np.zeros(d, np.float64)
    for a in range(0, n, _CHUNK_ROWS):
        s += x[a:a + _CHUNK_ROWS].astype(np.float64).sum(0)
    mu = s / n
    ss = np.zeros(d, np.float64)
    for a in range(0, n, _CHUNK_ROWS):
        ss += np.square(x[a:a + _CHUNK_ROWS].astype(np.float64) - mu).sum(0)
    return mu, np.sqrt(ss / n), n


def estimate_stats(text: np.ndarray, image: np.ndarray, paired_text: np.ndarray | None = None,
                   paired_image: np.ndarray | None = None, noise_std_default: float | np.ndarray = DEFAULT_NOISE_STD,
                   meta: dict | None = None) -> GaussianStats:
    """Estimate μ/σ of text (N, D) and image (M, D) embeddings (unpaired), plus the noise std.

    With ``paired_text``/``paired_image`` (P, D) aligned row by row, ``noise_std`` is the per-dim std of
    ``paired_image − paired_text``; otherwise ``noise_std_default`` (scalar or (D,)) is used.
    """
    mu_t, sig_t, n_t = _moments(text)
    mu_i, sig_i, n_i = _moments(image)
    if mu_t.shape != mu_i.shape:
        raise InputDataError(f"text embeddings have dim {mu_t.shape[0]}, image embeddings dim {mu_i.shape[0]}",
                             fix="embed texts and images with the same CLIP model")
    n_p = 0
    if (paired_text is None) != (paired_image is None):
        raise InputDataError("a paired set needs both paired_text and paired_image",
                             fix="pass both arrays (aligned row by row) or neither")
    if paired_text is not None:
        pt, pi = np.asarray(paired_text), np.asarray(paired_image)
        if pt.shape != pi.shape or pt.ndim != 2 or pt.shape[1] != mu_t.shape[0]:
            raise InputDataError(f"paired text {pt.shape} and image {pi.shape} embeddings "
                                 f"must be (P, {mu_t.shape[0]}) each",
                                 fix="embed one image per caption with the same CLIP model")
        _, noise, n_p = _moments(pi.astype(np.float32) - pt.astype(np.float32))
    else:
        noise = np.broadcast_to(np.asarray(noise_std_default, np.float64), mu_t.shape)
    return GaussianStats(mu_t=mu_t, sigma_t=np.maximum(sig_t, SIGMA_FLOOR), mu_i=mu_i,
                         sigma_i=np.maximum(sig_i, SIGMA_FLOOR), noise_std=noise,
                         n_text=n_t, n_image=n_i, n_paired=n_p, meta=dict(meta or {}))


def correct_text(e_t: ArrayT, stats: GaussianStats, renormalize: bool = True) -> ArrayT:
    """TOMCap correction e'_T = (e_T − μ_T)·σ_I/σ_T + μ_I of text embeddings (..., D); same type out.

    Works on numpy arrays and torch tensors (any device; computed in float32, returned in the input dtype).
    With ``renormalize`` the result is L2-normalised (CLIP embeddings live on the unit sphere).
    """
    if e_t.shape[-1] != stats.dim:
        raise InputDataError(f"embeddings have dim {e_t.shape[-1]}, the gap stats dim {stats.dim}",
                             fix="use gap stats estimated with the same CLIP model as the embeddings")
    if isinstance(e_t, torch.Tensor):
        t = stats.tensors(device=e_t.device)
        out = (e_t.float() - t["mu_t"]) * (t["sigma_i"] / t["sigma_t"]) + t["mu_i"]
        if renormalize:
            out = torch.nn.functional.normalize(out, dim=-1)
        return out.to(e_t.dtype)
    x = np.asarray(e_t)
    out = (x.astype(np.float32) - stats.mu_t) * (stats.sigma_i / stats.sigma_t) + stats.mu_i
    if renormalize:
        out = l2_normalize(out)
    return out.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32)


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of x (..., D) scaled to unit L2 norm (zero rows stay zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def _as_np(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def centroid_gap(img: np.ndarray, txt: np.ndarray) -> float:
    """‖μ_I − μ_T‖ between the means of image (M, D) and text (N, D) embeddings (as given, not re-normalised)."""
    mu_i, _, _ = _moments(_as_np(img))
    mu_t, _, _ = _moments(_as_np(txt))
    return float(np.linalg.norm(mu_i - mu_t))


def mean_paired_cosine(img: np.ndarray, txt: np.ndarray) -> float:
    """Mean cosine similarity of aligned rows of image and text embeddings (N, D) each."""
    a, b = _as_np(img).astype(np.float64), _as_np(txt).astype(np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] == 0:
        raise InputDataError(f"paired cosine needs two non-empty (N, D) arrays of one shape, "
                             f"got {a.shape} and {b.shape}",
                             fix="pass one image embedding per caption embedding")
    return float(np.mean(np.sum(l2_normalize(a) * l2_normalize(b), axis=1)))


def _covariance(x: np.ndarray) -> np.ndarray:
    x = _as_np(x).astype(np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise InputDataError(f"need at least 2 embeddings (N, D) for a covariance, got shape {x.shape}",
                             fix="pass a larger (non-empty) set of embeddings")
    xc = x - x.mean(0)
    return xc.T @ xc / x.shape[0]


def _psd_sqrt(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(c)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance_centered(img: np.ndarray, txt: np.ndarray) -> float:
    """Distribution gap: squared Fréchet (2-Wasserstein) distance between N(0, C_I) and N(0, C_T).

    tr(C_I + C_T − 2 (C_I^½ C_T C_I^½)^½), i.e. FID's formula with both means removed, so it measures
    shape differences only (the centroid gap is reported separately). Inputs (M, D) and (N, D).
    """
    ci, ct = _covariance(img), _covariance(txt)
    if ci.shape != ct.shape:
        raise InputDataError(f"image dim {ci.shape[0]} != text dim {ct.shape[0]}",
                             fix="use embeddings of one CLIP model")
    s = _psd_sqrt(ci)
    cross = np.linalg.eigvalsh(s @ ct @ s)
    value = np.trace(ci) + np.trace(ct) - 2.0 * np.sum(np.sqrt(np.clip(cross, 0.0, None)))
    return float(max(value, 0.0))


def save_stats(stats: GaussianStats, folder: Path | str) -> list[str]:
    """Write ``stats.safetensors`` (the five (D,) vectors) and ``stats.json`` (same values + counts + meta)."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # One metadata key: safetensors writes metadata from a hash map, so with several keys their order
    # (and the file's bytes, and every downstream cache key) changed from process to process.
    save_file({k: getattr(stats, k) for k in STAT_FIELDS}, str(folder / STATS_TENSORS),
              metadata={"format": f"tomcap-gaussian-stats dim={stats.dim}"})
    doc = {"dim": stats.dim, "n_text": stats.n_text, "n_image": stats.n_image, "n_paired": stats.n_paired,
           "meta": stats.meta, **{k: getattr(stats, k).tolist() for k in STAT_FIELDS}}
    (folder / STATS_JSON).write_text(json.dumps(doc, indent=1, sort_keys=True), encoding="utf-8")
    return [STATS_TENSORS, STATS_JSON]


def load_stats(path: Path | str) -> GaussianStats:
    """Load stats from a gap artifact folder (or its ``stats.safetensors``); counts/meta from the JSON beside it."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    tensors_path = folder / STATS_TENSORS
    if not tensors_path.is_file():
        raise ArtifactError(f"no {STATS_TENSORS} here", path=folder,
                            fix="pass the folder of a 'gap' artifact (built by `tomcap gap`)")
    try:
        arrays = load_file(str(tensors_path))
    except (SafetensorError, OSError) as err:
        raise ArtifactError(f"cannot read gap stats ({err})", path=tensors_path,
                            fix="rebuild it with `tomcap gap --force`") from None
    missing = [k for k in STAT_FIELDS if k not in arrays]
    if missing:
        raise ArtifactError(f"gap stats lack {missing}", path=tensors_path, fix="rebuild it with `tomcap gap --force`")
    doc = json.loads((folder / STATS_JSON).read_text(encoding="utf-8")) if (folder / STATS_JSON).is_file() else {}
    return GaussianStats(**{k: arrays[k] for k in STAT_FIELDS}, n_text=int(doc.get("n_text", 0)),
                         n_image=int(doc.get("n_image", 0)), n_paired=int(doc.get("n_paired", 0)),
                         meta=dict(doc.get("meta", {})))
