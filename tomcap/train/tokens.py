"""Token ids of training examples: a micro-batch's tensors, padding, and the corpus tokenised once.

Split from :mod:`tomcap.train.data` (which re-exports these names): what turns (prompt pieces, caption) into
ids, apart from what chooses the rows, their noise and their retrieved captions.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..model.adaptor import IGNORE_INDEX, TomcapAdaptor

TOKENIZE_CHUNK = 8192
"""Captions tokenised per call when the corpus is tokenised once (bounds the transient Python lists)."""


@dataclass
class Batch:
    """One micro-batch. input_ids/labels/attention_mask (B, T); condition (B, S, D_clip); keep (B,)."""

    input_ids: Tensor
    attention_mask: Tensor
    labels: Tensor
    condition: Tensor
    keep: Tensor

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.labels, self.condition,
                                              self.keep)))

    def caption_tokens(self) -> int:
        """Tokens the loss averages over (labels shifted by one, as the loss reads them)."""
        return int((self.labels[:, 1:] != IGNORE_INDEX).sum())

    def length_chunks(self, n: int) -> list["Batch"]:
        """Up to ``n`` sub-batches of rows with similar lengths, each cut to its own longest row.

        The rows (and so the loss, once each chunk's mean is weighted by its token share) are the
        same; only padding is saved (a batch is padded to its longest row, ~40% of the world demo's)."""
        if n <= 1 or len(self.keep) < 2 * n:
            return [self]
        lengths = self.attention_mask.sum(1)
        order = torch.argsort(lengths, stable=True)
        out = []
        for part in torch.tensor_split(order, n):
            width = int(lengths[part].max())
            out.append(Batch(self.input_ids[part, :width], self.attention_mask[part, :width], self.labels[part, :width],
                             self.condition[part], self.keep[part]))
        return out


def pad_examples(examples: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[Tensor, Tensor, Tensor]:
    """Right-padded (ids, attention mask, labels), each (B, T); labels IGNORE_INDEX on padding."""
    lengths = np.fromiter((len(x) for x, _ in examples), dtype=np.int64, count=len(examples))
    width = int(lengths.max())
    ids = np.full((len(examples), width), pad_id, dtype=np.int64)
    labels = np.full((len(examples), width), IGNORE_INDEX, dtype=np.int64)
    for i, (x, y) in enumerate(examples):
        ids[i, : len(x)] = x
        labels[i, : len(y)] = y
    mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
    return torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(labels)


class PromptTokens:
    """Token ids of training examples from pieces tokenised once: the same ids as
    :meth:`TomcapAdaptor.example_ids`, without a tokenizer call per example and step.

    GPT-2's byte-level pre-tokenizer splits before every space, so the prompt ``prefix cap_1. ...
    suffix`` tokenises as the concatenation of its space-led pieces; :meth:`verified` checks that
    on sample examples and the builder falls back to the tokenizer path where it does not hold."""

    def __init__(self, model: TomcapAdaptor, captions: Sequence[str]):
        self.model, c = model, model.config
        self.eos, self.max_length = model.eos_id, model.max_length
        self.prefix = self._encode([c.prompt_prefix])[0]
        self.suffix = self._encode([" " + c.prompt_suffix])[0]
        self.uncond = self._encode([c.prompt_suffix])[0]
        self._targets, self._starts = self._encode_targets(captions)
        self._pieces: dict[str, list[int]] = {}

    def _encode_targets(self, captions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Every caption's ids + EOS, flat int32 with start offsets (N + 1,): the corpus tokenised once, held
        as two arrays instead of N Python lists (~10x smaller)."""
        parts, lengths = [], []
        for a in range(0, len(captions), TOKENIZE_CHUNK):
            chunk = captions[a:a + TOKENIZE_CHUNK]
            chunk = chunk.to_list() if hasattr(chunk, "to_list") else list(chunk)
            ids = self._encode([" " + x.strip() for x in chunk])
            lengths.extend(len(t) + 1 for t in ids)
            parts.append(np.fromiter(itertools.chain.from_iterable(t + [self.eos] for t in ids), np.int32))
        flat = np.concatenate(parts) if parts else np.zeros(0, np.int32)
        return flat, np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])

    def target(self, row: int) -> list[int]:
        """Caption ``row``'s ids + EOS."""
        return self._targets[self._starts[row]:self._starts[row + 1]].tolist()

    def _encode(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        return [list(x) for x in self.model.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def _piece_text(self, text: str) -> str:
        sep = self.model.config.prompt_separator
        return " " + text.strip().rstrip(sep).strip() + sep

    def pieces(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids of retrieved captions as they appear in the prompt (cached per text)."""
        new = [t for t in dict.fromkeys(texts) if t not in self._pieces]
        for t, ids in zip(new, self._encode([self._piece_text(t) for t in new])):
            self._pieces[t] = ids
        return [self._pieces[t] for t in texts]

    def prompt(self, retrieved: Sequence[str] | None, budget: int) -> list[int]:
        """[eos] + prompt ids; retrieved captions are dropped from the end until it fits ``budget``."""
        pieces = self.pieces(list(retrieved or []))
        while pieces:
            ids = [self.eos, *self.prefix, *(i for p in pieces for i in p), *self.suffix]
            if len(ids) <= budget:
                return ids
            pieces.pop()
        return [self.eos, *self.uncond]

    def example(self, row: int, retrieved: Sequence[str] | None) -> tuple[list[int], list[int]]:
        """(input ids, labels) of caption ``row`` with its retrieved captions, as ``example_ids`` builds them."""
        target = self.target(row)[: self.max_length - 2]
        prompt = self.prompt(retrieved, self.max_length - len(target))
        target = target[: self.max_length - len(prompt)]
        return prompt + target, [IGNORE_INDEX] * len(prompt) + target

    def verified(self, captions: Sequence[str], samples: int = 64) -> bool:
        """True when the cached ids equal the tokenizer path on sample examples (with and without retrieval)."""
        n = min(samples, len(captions))
        for i in range(n):
            others = [captions[(i + 1) % len(captions)], captions[(i + 7) % len(captions)]]
            for retrieved in (None, others[:1], others):
                if self.example(i, retrieved) != self.model.example_ids(retrieved, captions[i]):
                    return False
        return True
