"""Hint-guided decoding: steer the search toward naming every entity the entity head hinted.

A decoder trained on predicted hints learns that they are often wrong and on multi-object scenes mostly
ignores them (on the world's validation split its captions named the hinted objects for 0.29 of 2-object
and 0.05 of 3-object scenes, while the hints were better than its captions). Constrained beam search
(Anderson et al. 2017) forces such concepts in; this is its soft form: at each step, the tokens that start a
hinted phrase not yet said, or continue one whose beginning was just said, get ``bonus`` added to their
guided log-score. Continuing a phrase is what binds an attribute to its object ("yellow" -> "diamond").
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

Phrases = list[list[int]]
"""Token ids of each hinted phrase of one image."""


def says(seq: Sequence[int], phrase: Sequence[int]) -> bool:
    """Whether ``phrase`` occurs contiguously in ``seq``."""
    seq, phrase = list(seq), list(phrase)  # slices of one type compare; a tuple never equals a list
    if not phrase:
        return True
    n, i = len(phrase), -1
    # only where the first token occurs (list.index scans in C): a slice at every position was 12% of beam search
    while True:
        try:
            i = seq.index(phrase[0], i + 1)
        except ValueError:
            return False
        if seq[i:i + n] == phrase:
            return True


def next_hint_tokens(seq: Sequence[int], phrases: Phrases) -> list[int]:
    """Per phrase not yet said: its next token (the first one, or the one after the longest beginning of the
    phrase that ``seq`` ends with)."""
    seq = list(seq)
    out = []
    for p in map(list, phrases):
        if not p or says(seq, p):
            continue
        k = next((k for k in range(min(len(p) - 1, len(seq)), 0, -1) if seq[-k:] == p[:k]), 0)
        out.append(p[k])
    return out


def add_hint_bonus(scores: Tensor, seqs: Sequence[Sequence[int]], row_phrases: Sequence[Phrases],
                   bonus: float) -> Tensor:
    """``scores`` (rows, vocab) with ``bonus`` added to each row's next hint tokens (in place; -inf stays)."""
    if bonus == 0:
        return scores
    rows: list[int] = []
    cols: list[int] = []
    for i, (seq, phrases) in enumerate(zip(seqs, row_phrases, strict=True)):
        toks = set(next_hint_tokens(seq, phrases))
        rows += [i] * len(toks)
        cols += toks
    if rows:  # one indexed add for the whole batch (pairs are unique): a row at a time was ~60% of this call
        scores[torch.tensor(rows), torch.tensor(cols)] += bonus
    return scores


def hint_phrases(tokenizer, names_per_image: Sequence[Sequence[str]]) -> list[Phrases]:
    """Token ids of each image's hinted entity names as a caption would say them (after a space)."""
    cache: dict[str, list[int]] = {}
    out = []
    for names in names_per_image:
        for n in names:
            if n not in cache:
                cache[n] = list(tokenizer(" " + n.strip(), add_special_tokens=False)["input_ids"])
        out.append([cache[n] for n in names])
    return out
