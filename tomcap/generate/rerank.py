"""MacCap-style candidate reranking: sample N captions, keep the one CLIP likes best.

score(c) = cos(CLIP(image), CLIP(c)) + likelihood_weight · (guided log-score of c / its length)
"""
from __future__ import annotations

import numpy as np


def rerank_scores(image_emb: np.ndarray, cand_emb: np.ndarray, loglik: np.ndarray, lengths: np.ndarray,
                  likelihood_weight: float) -> np.ndarray:
    """Scores (B, N) of N candidates for B images.

    image_emb (B, D) and cand_emb (B, N, D) are L2-normalised CLIP embeddings; loglik (B, N) the
    candidates' summed log-scores; lengths (B, N) their token counts (EOS included).
    """
    if cand_emb.ndim != 3 or cand_emb.shape[0] != image_emb.shape[0] or cand_emb.shape[2] != image_emb.shape[1]:
        raise ValueError(f"shapes do not match: images {image_emb.shape}, candidates {cand_emb.shape}")
    sim = np.einsum("bd,bnd->bn", image_emb, cand_emb)
    return sim + likelihood_weight * loglik / np.maximum(lengths, 1)


def pick_best(scores: np.ndarray) -> np.ndarray:
    """Index (B,) of the best candidate per image; ties go to the earliest candidate."""
    return scores.argmax(axis=1)
