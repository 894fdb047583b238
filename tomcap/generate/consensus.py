"""Consensus reranking (Devlin et al. 2015, "Exploring Nearest Neighbor Approaches for Image Captioning"):
among a model's candidate captions, prefer those that agree with the captions the datastore holds nearest to the
image - the wording captions of similar scenes use, which is the consensus CIDEr rewards.

agreement(c, R) = mean over r in R and n = 1..MAX_N of cos(n-gram counts of c, n-gram counts of r)

The model still decides what a caption says (the candidates are its beams); the neighbours only rank them, so a
wrong neighbour can cost a tie-break, not put its own objects into the caption.
"""
from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np

MAX_N = 4
_WORD = re.compile(r"\w+")


def ngram_counts(text: str, max_n: int = MAX_N) -> list[Counter]:
    """Counts of the 1- to ``max_n``-grams of a caption's lower-cased words."""
    words = _WORD.findall(text.lower())
    return [Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1)) for n in range(1, max_n + 1)]


def _normed(text: str) -> list[dict[tuple, float]]:
    """Per n: the n-gram counts divided by their vector's length (cosines become plain dot products)."""
    out = []
    for counts in ngram_counts(text):
        norm = math.sqrt(sum(v * v for v in counts.values()))
        out.append({g: v / norm for g, v in counts.items()} if norm else {})
    return out


def consensus_scores(candidates: list[str], references: list[str]) -> np.ndarray:
    """Agreement (N,) in [0, 1] of each candidate with the reference captions (0 where there are none)."""
    refs = [_normed(r) for r in references if r]
    if not refs:
        return np.zeros(len(candidates))
    # Sum the references' unit vectors per n once: the mean cosine is then one dot product per candidate and n.
    summed: list[dict[tuple, float]] = [{} for _ in range(MAX_N)]
    for ref in refs:
        for n, grams in enumerate(ref):
            for g, v in grams.items():
                summed[n][g] = summed[n].get(g, 0.0) + v
    scale = 1.0 / (len(refs) * MAX_N)
    return np.array([scale * sum(v * total.get(g, 0.0) for grams, total in zip(_normed(c), summed)
                                 for g, v in grams.items()) for c in candidates])
