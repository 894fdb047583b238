"""BLEU-1..4 and CIDEr(-D as in the COCO toolkit) with the n-gram counting done in numpy.

pycocoevalcap counts n-grams in Python dictionaries, one sentence at a time, and CIDEr rebuilds
every reference vector once per hypothesis. Here all sentences of a run are encoded once into
integer n-gram ids (``NgramTables``); the per-image numbers are then joins and group-bys on those
arrays. The floating-point steps are the toolkit's own operations in the toolkit's order (sums
are sequential, via ``np.add.at``, in the order the toolkit's dictionaries iterate), so scores
are bit-identical to stock pycocoevalcap 1.2, not merely close (checked by the tests and the
benchmark on the MAGIC file).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BLEU_N = 4
CIDER_N = 4
CIDER_SIGMA = 6.0
"""Toolkit defaults: n-grams up to 4 for both; CIDEr's Gaussian length penalty sigma."""
CIDER_SCALE = 10.0
BLEU_SMALL, BLEU_TINY = 1e-9, 1e-15
"""The toolkit's guards against zero divisions in BLEU (bleu_scorer.compute_score)."""


@dataclass
class OrderTable:
    """Distinct n-grams of one order per sentence. E entries, sorted by (sentence, gram).

    ``first`` ranks entries in each sentence by first occurrence, the order in which the toolkit's
    dictionaries were filled (and so summed).
    """

    sent: np.ndarray  # (E,) int64 sentence index
    gram: np.ndarray  # (E,) int64 n-gram id, dense over the run, per order
    count: np.ndarray  # (E,) int64 occurrences in the sentence
    first: np.ndarray  # (E,) int64 index of the first occurrence in the run's position array
    n_grams: int  # number of distinct n-grams of this order in the run


@dataclass
class NgramTables:
    """All sentences of a run (references and hypotheses) encoded once."""

    lengths: np.ndarray  # (S,) int64 words per sentence (str.split)
    orders: list[OrderTable]  # orders 1..n


def encode(sentences: Sequence[str], n: int = BLEU_N) -> NgramTables:
    """Integer n-gram tables of ``sentences`` (words = ``str.split()``, as the toolkit splits)."""
    words = [s.split() for s in sentences]
    lengths = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
    total = int(lengths.sum())
    vocab: dict[str, int] = {}
    tokens = np.fromiter((vocab.setdefault(w, len(vocab)) for ws in words for w in ws), dtype=np.int64, count=total)
    sent_of = np.repeat(np.arange(len(words), dtype=np.int64), lengths)
    pos = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    room = np.repeat(lengths, lengths) - pos  # words from this position to the sentence end
    orders = []
    code = tokens
    n_codes = len(vocab)
    for k in range(1, n + 1):
        if k > 1:
            # id of the k-gram at i = dense id of (id of the (k-1)-gram at i, word i+k-1)
            valid = room >= k
            pair = np.full(total, -1, dtype=np.int64)
            idx = np.flatnonzero(valid)
            pair[idx] = code[idx] * len(vocab) + tokens[idx + k - 1]
            uniq, inv = np.unique(pair[idx], return_inverse=True)
            code = np.full(total, -1, dtype=np.int64)
            code[idx] = inv
            n_codes = len(uniq)
        else:
            idx = np.arange(total, dtype=np.int64)
        key = sent_of[idx] * max(n_codes, 1) + code[idx]
        uniq_key, first, counts = np.unique(key, return_index=True, return_counts=True)
        orders.append(OrderTable(sent=uniq_key // max(n_codes, 1), gram=uniq_key % max(n_codes, 1),
                                 count=counts.astype(np.int64), first=first.astype(np.int64), n_grams=n_codes))
    return NgramTables(lengths=lengths, orders=orders)


@dataclass
class RefGroups:
    """References of the images of a run: image i owns reference sentences start[i]..start[i]+size[i]-1."""

    start: np.ndarray  # (I,) int64 index of its first reference sentence in the tables
    size: np.ndarray  # (I,) int64 number of references


class RefIndex:
    """What BLEU and CIDEr need from the references, computed once per run (shared by a sweep)."""

    def __init__(self, tables: NgramTables, groups: RefGroups):
        self.tables, self.groups = tables, groups
        n_sent = len(tables.lengths)
        self.ref_image = np.full(n_sent, -1, dtype=np.int64)
        for i, (s, m) in enumerate(zip(groups.start.tolist(), groups.size.tolist())):
            self.ref_image[s:s + m] = i
        self.maxref: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for tab in tables.orders:
            is_ref = self.ref_image[tab.sent] >= 0
            img = self.ref_image[tab.sent[is_ref]]
            key = img * max(tab.n_grams, 1) + tab.gram[is_ref]
            uniq, inv = np.unique(key, return_inverse=True)
            maxc = np.zeros(len(uniq), dtype=np.int64)
            np.maximum.at(maxc, inv, tab.count[is_ref])
            # (image*G + gram) of each image's reference n-grams, its clipping count, and its image
            self.maxref.append((uniq, maxc, uniq // max(tab.n_grams, 1)))


def _hyp_entries(tab: OrderTable, hyp_sent: np.ndarray, n_sent: int) -> tuple[np.ndarray, np.ndarray]:
    """Entries of ``tab`` that belong to the hypotheses ``hyp_sent``, in first-occurrence order.

    Returns (entry indices, hypothesis row of each entry).
    """
    row_of = np.full(n_sent, -1, dtype=np.int64)
    row_of[hyp_sent] = np.arange(len(hyp_sent))
    sel = np.flatnonzero(row_of[tab.sent] >= 0)
    sel = sel[np.argsort(tab.first[sel], kind="stable")]
    return sel, row_of[tab.sent[sel]]


def bleu(index: RefIndex, images: np.ndarray, hyp_sent: np.ndarray, n: int = BLEU_N
         ) -> tuple[list[float], list[list[float]], dict]:
    """BLEU-1..n as ``pycocoevalcap.bleu.Bleu(4).compute_score`` ('closest' reference length).

    images: (N,) image index (into the RefIndex groups) of each hypothesis; hyp_sent: (N,) its
    sentence index in the tables. Returns (corpus scores [n], per-image scores [n][N], stats).
    """
    tables, groups = index.tables, index.groups
    n_hyp = len(images)
    correct = np.zeros((n_hyp, n), dtype=np.int64)
    for k in range(n):
        tab = tables.orders[k]
        sel, hyp_row = _hyp_entries(tab, hyp_sent, len(tables.lengths))
        uniq, maxc, _ = index.maxref[k]
        key = images[hyp_row] * max(tab.n_grams, 1) + tab.gram[sel]
        at = np.minimum(np.searchsorted(uniq, key), max(len(uniq) - 1, 0))
        found = uniq[at] == key if len(uniq) else np.zeros(len(key), dtype=bool)
        clipped = np.where(found, np.minimum(tab.count[sel], maxc[at] if len(uniq) else 0), 0)
        np.add.at(correct[:, k], hyp_row, clipped)
    testlens = tables.lengths[hyp_sent].tolist()
    correct_l = correct.tolist()
    starts, sizes = groups.start.tolist(), groups.size.tolist()
    lengths = tables.lengths.tolist()
    # From here on: the toolkit's own per-sentence arithmetic (BleuScorer.compute_score), in Python floats.
    total_test = total_ref = 0
    guess_tot, correct_tot = [0] * n, [0] * n
    per_image: list[list[float]] = [[] for _ in range(n)]
    for row, img in enumerate(images.tolist()):
        testlen = testlens[row]
        reflens = lengths[starts[img]:starts[img] + sizes[img]]
        reflen = min((abs(r - testlen), r) for r in reflens)[1]
        guess = [max(0, testlen - k + 1) for k in range(1, n + 1)]
        corr = correct_l[row]
        total_test += testlen
        total_ref += reflen
        for k in range(n):
            guess_tot[k] += guess[k]
            correct_tot[k] += corr[k]
        b = 1.0
        for k in range(n):
            b *= (float(corr[k]) + BLEU_TINY) / (float(guess[k]) + BLEU_SMALL)
            per_image[k].append(b ** (1.0 / (k + 1)))
        ratio = (testlen + BLEU_TINY) / (reflen + BLEU_SMALL)
        if ratio < 1:
            for k in range(n):
                per_image[k][-1] *= math.exp(1 - 1 / ratio)
    scores = []
    b = 1.0
    for k in range(n):
        b *= float(correct_tot[k] + BLEU_TINY) / (guess_tot[k] + BLEU_SMALL)
        scores.append(b ** (1.0 / (k + 1)))
    ratio = (total_test + BLEU_TINY) / (total_ref + BLEU_SMALL)
    if ratio < 1:
        for k in range(n):
            scores[k] *= math.exp(1 - 1 / ratio)
    stats = {"testlen": total_test, "reflen": total_ref, "guess": guess_tot, "correct": correct_tot}
    return scores, per_image, stats


def _norms(tab: OrderTable, entries: np.ndarray, values: np.ndarray, n_sent: int) -> np.ndarray:
    """sqrt of the sequential sum of squares per sentence, in first-occurrence order (as the toolkit)."""
    order = np.argsort(tab.first[entries], kind="stable")
    acc = np.zeros(n_sent, dtype=np.float64)
    np.add.at(acc, tab.sent[entries][order], np.square(values[order]))
    return np.sqrt(acc)


def cider(index: RefIndex, images: np.ndarray, hyp_sent: np.ndarray, n: int = CIDER_N,
          sigma: float = CIDER_SIGMA) -> tuple[float, np.ndarray]:
    """CIDEr as ``pycocoevalcap.cider.Cider().compute_score`` over the images ``images``.

    Document frequencies and log(#images) come from the evaluated images' references only, as in
    the toolkit. Returns (corpus score, (N,) per-image scores).
    """
    tables, groups = index.tables, index.groups
    n_img, n_sent = len(images), len(tables.lengths)
    ref_len = np.log(float(n_img))
    r_start, r_size = groups.start[images], groups.size[images]
    max_refs = int(r_size.max())
    # val[i, j, k]: similarity of hypothesis i with its j-th reference at order k+1
    val = np.zeros((n_img, max_refs, n), dtype=np.float64)
    norm_h = np.zeros((n_img, n))
    norm_r = np.zeros((n_img, max_refs, n))
    in_eval = np.zeros(len(groups.start), dtype=bool)
    in_eval[images] = True
    for k in range(n):
        tab = tables.orders[k]
        uniq, _, img_of_uniq = index.maxref[k]
        g_of_uniq = uniq % max(tab.n_grams, 1)
        df = np.bincount(g_of_uniq[in_eval[img_of_uniq]], minlength=tab.n_grams).astype(np.float64)
        idf = ref_len - np.log(np.maximum(1.0, df))
        vec = tab.count.astype(np.float64) * idf[tab.gram]  # tf * (log N - log df) per entry
        # references of the evaluated images
        ref_entries = np.flatnonzero(index.ref_image[tab.sent] >= 0)
        ref_entries = ref_entries[in_eval[index.ref_image[tab.sent[ref_entries]]]]
        nr = _norms(tab, ref_entries, vec[ref_entries], n_sent)
        sel, hyp_row = _hyp_entries(tab, hyp_sent, n_sent)
        nh = _norms(tab, sel, vec[sel], n_sent)
        norm_h[:, k] = nh[hyp_sent]
        for j in range(max_refs):
            has = r_size > j
            norm_r[has, j, k] = nr[r_start[has] + j]
        # join hypothesis n-grams with every reference of their image holding the same n-gram
        reps = r_size[hyp_row]
        h_idx = np.repeat(np.arange(len(sel)), reps)
        j_idx = np.arange(int(reps.sum())) - np.repeat(np.cumsum(reps) - reps, reps)
        ref_sent = r_start[hyp_row[h_idx]] + j_idx
        G = max(tab.n_grams, 1)
        key = ref_sent * G + tab.gram[sel[h_idx]]
        ref_key = tab.sent * G + tab.gram  # sorted: the table is sorted by (sentence, gram)
        at = np.minimum(np.searchsorted(ref_key, key), len(ref_key) - 1)
        hit = ref_key[at] == key
        vh, vr = vec[sel[h_idx[hit]]], vec[at[hit]]
        np.add.at(val[:, :, k], (hyp_row[h_idx[hit]], j_idx[hit]), np.minimum(vh, vr) * vr)
    both = (norm_h[:, None, :] != 0) & (norm_r != 0)
    val = np.where(both, val / np.where(both, norm_h[:, None, :] * norm_r, 1.0), val)
    # Gaussian length penalty on the bigram counts (the toolkit's 'length'), one value per delta
    blen = np.maximum(tables.lengths - 1, 0)
    penalty = np.zeros((n_img, max_refs))
    cache: dict[int, float] = {}
    for i in range(n_img):
        lh = int(blen[hyp_sent[i]])
        for j in range(int(r_size[i])):
            d = lh - int(blen[r_start[i] + j])
            if d not in cache:
                delta = float(d)
                cache[d] = np.e ** (-(delta ** 2) / (2 * sigma ** 2))
            penalty[i, j] = cache[d]
    val *= penalty[:, :, None]
    score = np.zeros((n_img, n))
    for j in range(max_refs):
        has = r_size > j
        score[has] += val[has, j]
    per_image = np.array([np.mean(score[i]) / int(r_size[i]) * CIDER_SCALE for i in range(n_img)])
    return float(np.mean(per_image)), per_image

