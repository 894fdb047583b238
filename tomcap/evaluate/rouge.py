"""ROUGE-L as ``pycocoevalcap.rouge.Rouge`` computes it, with a bit-parallel LCS over all pairs.

The toolkit fills a dynamic-programming table in Python for every (hypothesis, reference) pair.
The length of a longest common subsequence is an integer, so any exact algorithm gives the same
number: here the bit-vector recurrence of Hyyrö (2004) runs on all pairs at once, one uint64
word holding the hypothesis (pairs with hypotheses over 64 tokens fall back to the toolkit's own
``my_lcs``). The score arithmetic after the LCS is the toolkit's, element for element.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ROUGE_BETA = 1.2
"""The toolkit's recall weight (``Rouge.beta``)."""
WORD_BITS = 64
_PAD_HYP, _PAD_REF = -1, -2


def _ids(token_lists: Sequence[list[str]], vocab: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """(S, L) padded token ids and (S,) lengths."""
    lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
    out = np.full((len(token_lists), int(lengths.max(initial=1))), _PAD_REF, dtype=np.int64)
    for i, toks in enumerate(token_lists):
        out[i, :len(toks)] = [vocab.setdefault(t, len(vocab)) for t in toks]
    return out, lengths


def lcs_lengths(hyps: Sequence[list[str]], refs: Sequence[list[str]]) -> np.ndarray:
    """(P,) LCS length of each (hypothesis tokens, reference tokens) pair."""
    vocab: dict[str, int] = {}
    h_ids, h_len = _ids(hyps, vocab)
    r_ids, _ = _ids(refs, vocab)
    h_ids[h_ids == _PAD_REF] = _PAD_HYP  # padding never matches padding
    out = np.zeros(len(hyps), dtype=np.int64)
    fast = np.flatnonzero(h_len <= WORD_BITS)
    if len(fast):
        h, r, n = h_ids[fast][:, :WORD_BITS], r_ids[fast], h_len[fast]
        # match[p, j]: bit i set where hypothesis token i equals reference token j
        match = np.zeros(r.shape, dtype=np.uint64)
        for i in range(h.shape[1]):
            match |= (h[:, i:i + 1] == r).astype(np.uint64) << np.uint64(i)
        v = np.full(len(fast), np.iinfo(np.uint64).max, dtype=np.uint64)
        for j in range(r.shape[1]):
            u = v & match[:, j]
            v = (v + u) | (v - u)
        low = np.where(n >= WORD_BITS, np.iinfo(np.uint64).max,
                       (np.uint64(1) << n.astype(np.uint64)) - np.uint64(1)).astype(np.uint64)
        out[fast] = n - np.bitwise_count(v & low).astype(np.int64)
    slow = np.flatnonzero(h_len > WORD_BITS)
    if len(slow):
        from pycocoevalcap.rouge.rouge import my_lcs

        for p in slow.tolist():
            out[p] = my_lcs(list(refs[p]), list(hyps[p]))
    return out


def rouge_l(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> tuple[float, np.ndarray]:
    """ROUGE-L per image and its mean, as ``Rouge().compute_score`` (tokens = ``str.split(' ')``).

    hyps: N tokenised captions; refs: N lists of tokenised references.
    """
    hyp_tok = [h.split(" ") for h in hyps]
    sizes = np.fromiter((len(r) for r in refs), dtype=np.int64, count=len(refs))
    pair_h = [hyp_tok[i] for i, r in enumerate(refs) for _ in r]
    pair_r = [ref.split(" ") for r in refs for ref in r]
    lcs = lcs_lengths(pair_h, pair_r).astype(np.float64)
    len_h = np.array([len(t) for t in pair_h], dtype=np.float64)
    len_r = np.array([len(t) for t in pair_r], dtype=np.float64)
    starts = np.cumsum(sizes) - sizes
    prec = np.maximum.reduceat(lcs / len_h, starts)
    rec = np.maximum.reduceat(lcs / len_r, starts)
    b2 = ROUGE_BETA ** 2
    ok = (prec != 0) & (rec != 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(ok, ((1 + b2) * prec * rec) / (rec + b2 * prec), 0.0)
    return float(np.mean(score)), score
