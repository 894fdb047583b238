"""Entity hints (ViECap-style) for the text-only captioner.

A CLIP embedding of a multi-object scene holds which colour goes with which shape, but not linearly: on the
world, an MLP reads the objects of a 2-object caption from its text embedding (0.90 of them right) where a
linear map reads 0.63, and the decoder, whose condition map is linear, named 0.35. So an entity head (an MLP,
trained text-only on the same noised, gap-corrected query embeddings as the adaptor, BCE on the vocabulary
entities each caption names) predicts the entities of the query; they reach the decoder twice: as a first
line of the prompt (``yellow diamond, brown circle.``) and as one cross-attention input per entity (a fixed
prototype embedding per entity: the mean text embedding of the corpus captions that name it alone).

The vocabulary is a JSON object ``{entity name: [surface phrases]}``; a caption names an entity when one of
its phrases occurs as whole words (a plural ``s`` allowed), case-insensitive, longest phrase first.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import InputDataError

VOCABULARY_FIX = 'write a JSON object {"entity name": ["phrase", ...], ...} with at least one entity'
HINT_SEPARATOR = ", "


class EntityVocabulary:
    """Entity names (sorted) and the phrases that name them."""

    def __init__(self, table: dict[str, Sequence[str]]):
        self.names = tuple(sorted(table))
        index = {n: i for i, n in enumerate(self.names)}
        self._lookup = {" ".join(p.lower().split()): index[n] for n, ps in table.items() for p in ps}
        phrases = sorted(self._lookup, key=len, reverse=True)
        self._pattern = re.compile(r"\b(" + "|".join(map(re.escape, phrases)) + r")s?\b")

    @classmethod
    def load(cls, path: Path | str) -> "EntityVocabulary":
        path = Path(path)
        try:
            table = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputDataError("entity vocabulary not found", path=path,
                                 fix="set train.model.entities.vocabulary to an existing JSON file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputDataError(f"cannot read the entity vocabulary ({err.__class__.__name__}: {err})", path=path,
                                 fix=VOCABULARY_FIX) from None
        ok = isinstance(table, dict) and table and all(
            isinstance(k, str) and k.strip() and isinstance(v, list) and v
            and all(isinstance(p, str) and p.strip() for p in v) for k, v in table.items())
        if not ok:
            raise InputDataError("the entity vocabulary is not a non-empty object of name -> list of phrases",
                                 path=path, fix=VOCABULARY_FIX)
        return cls(table)

    def __len__(self) -> int:
        return len(self.names)

    def find(self, text: str) -> list[int]:
        """Entity indices named in ``text``, in order of appearance, repeats kept."""
        return [self._lookup[m.group(1)] for m in self._pattern.finditer(" ".join(text.lower().split()))]

    def labels(self, texts: Sequence[str]) -> np.ndarray:
        """(N, E) uint8 multi-hot: entity j is named in text i (a byte each: a 4M-caption corpus with 100 entities
        holds 400 MB, not 1.6 GB)."""
        out = np.zeros((len(texts), len(self.names)), np.uint8)
        for i, t in enumerate(texts):
            out[i, self.find(t)] = 1.0
        return out


def entity_prototypes(chunks: Iterable[tuple[int, np.ndarray]], labels: np.ndarray) -> np.ndarray:
    """(E, D) L2-normalised mean embedding of the captions that name entity j alone (of every caption naming it
    when none does; zeros when none names it). ``chunks`` yields (first row, (n, D) embeddings) in row order."""
    sums_alone = sums_any = n_alone = 0.0
    for start, chunk in chunks:
        x = np.asarray(chunk, np.float32)
        lab = labels[start:start + len(x)].astype(np.float32)
        alone = lab * (lab.sum(1, keepdims=True) == 1)
        sums_alone, sums_any = sums_alone + alone.T @ x, sums_any + lab.T @ x
        n_alone = n_alone + alone.sum(0)
    out = np.where((np.asarray(n_alone) > 0)[:, None], sums_alone, sums_any)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.where(norms > 0, out / np.maximum(norms, 1e-12), 0.0).astype(np.float32)


class EntityHead(nn.Module):
    """MLP: query embedding (B, D) -> entity logits (B, E); ``table`` (E, D): the entities' cross-attention inputs.
    ``count_hidden`` > 0 adds ``count``, a small MLP of its own: logits (B, max_entities) of how many entities the
    query holds (1 ... max_entities); the threshold then no longer decides how many are hinted."""

    def __init__(self, clip_dim: int, n_entities: int, hidden: int, count_hidden: int = 0, max_entities: int = 3):
        super().__init__()
        self.net = _mlp(clip_dim, hidden, n_entities)
        self.count = _mlp(clip_dim, count_hidden, max_entities) if count_hidden else None
        self.register_buffer("table", torch.zeros(n_entities, clip_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @torch.no_grad()
    def predict(self, emb: np.ndarray | torch.Tensor, threshold: float, max_entities: int,
                count_rule: str = "head") -> list[list[int]]:
        """Per row, most probable first: with a count head, as many entities as ``count_rule`` says (``head``: its
        most probable count; ``joint``: :func:`joint_counts`), else those with probability > ``threshold``; at
        most ``max_entities``, at least the most probable one."""
        x = torch.as_tensor(np.asarray(emb, np.float32) if not torch.is_tensor(emb) else emb.float())
        x = x.to(self.table.device)
        p = torch.sigmoid(self.net(x)).cpu().numpy()
        top = np.argsort(-p, axis=1, kind="stable")[:, :max_entities]
        if self.count is not None:
            count_logits = self.count(x)
            if count_rule == "joint":
                n = joint_counts(torch.log_softmax(count_logits, 1).cpu().numpy(), np.take_along_axis(p, top, 1))
            else:
                n = count_logits.argmax(1).cpu().numpy() + 1
            return [[int(j) for j in row[:k]] for row, k in zip(top, n)]
        return [[int(j) for j in row if pr[j] > threshold] or [int(row[0])] for row, pr in zip(top, p)]

    def states(self, chosen: list[list[int]], slots: int) -> np.ndarray:
        """(B, slots, D): each chosen entity's table row, zeros in the unused slots (after the projection a
        constant state the decoder learns to pass over)."""
        table = self.table.detach().cpu().numpy()
        out = np.zeros((len(chosen), slots, table.shape[1]), np.float32)
        for i, js in enumerate(chosen):
            out[i, : len(js)] = table[js[:slots]]
        return out


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                         nn.Linear(hidden, d_out))


def joint_counts(count_logp: np.ndarray, top_p: np.ndarray) -> np.ndarray:
    """(B,) the count n (1 ... C) maximising log P(n) + sum log p of the top n entities + sum log(1 - p) of the
    next ones up to C: the most probable hint set when the count head and the entity probabilities (taken as
    independent) vote together. ``count_logp`` (B, C) log-probabilities of the counts; ``top_p`` (B, >= C) the
    entity probabilities, most probable first. On the world's validation split the count head alone hinted two or
    three objects for 6.4% of single-object scenes, with the vote 1.8% (hint F1 0.854 -> 0.862; it
    undercounts three-object scenes more often: 0.855 -> 0.775 counted right; benchmarks/hint_rules.py)."""
    c = count_logp.shape[1]
    top_p = np.pad(top_p[:, :c], ((0, 0), (0, max(0, c - top_p.shape[1]))))  # fewer entities than counts: p = 0
    lp = np.log(np.clip(top_p, 1e-6, 1.0))
    lq = np.log(np.clip(1.0 - top_p, 1e-6, 1.0))
    present, absent = np.cumsum(lp, 1), np.cumsum(lq[:, ::-1], 1)[:, ::-1]  # top n present / the rest absent
    absent = np.concatenate([absent[:, 1:], np.zeros((len(lp), 1))], 1)
    return (count_logp + present + absent).argmax(1) + 1


def caption_hints(labels: np.ndarray, max_entities: int, dropout: float, rng: np.random.Generator
                  ) -> list[list[int]]:
    """Per row of ``labels`` (B, E): the entities it names, shuffled (captioning orders them by probability, not
    by where a caption names them), each dropped with ``dropout`` but one, at most ``max_entities``; [] for none."""
    out = []
    for row in np.asarray(labels):
        js = rng.permutation(np.flatnonzero(row))
        if dropout and len(js) > 1:
            kept = js[rng.random(len(js)) >= dropout]
            js = kept if len(kept) else js[:1]
        out.append([int(j) for j in js[:max_entities]])
    return out


def hint_texts(names: Sequence[str], chosen: list[list[int]]) -> list[str]:
    """The prompt line of each row's entities (``yellow diamond, brown circle``)."""
    return [HINT_SEPARATOR.join(names[j] for j in js) for js in chosen]


def fit_head(head: EntityHead, batch: Callable[[np.ndarray, np.random.Generator], np.ndarray], labels: np.ndarray,
             *, steps: int, batch_size: int, lr: float, seed: int) -> list[float]:
    """Adam on BCE; ``batch(rows, rng)`` gives the (noised) query embeddings of ``rows``. Returns the loss
    every 100 steps. Seeded: the same inputs give the same head."""
    def loss(out: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        y = torch.from_numpy(labels[rows].astype(np.float32)).to(out.device)
        return nn.functional.binary_cross_entropy_with_logits(out, y)

    return _adam_fit(head.net, batch, len(labels), loss, steps=steps, batch_size=batch_size, lr=lr, seed=[seed, 7])


def fit_count(head: EntityHead, batch: Callable[[np.ndarray, np.random.Generator], np.ndarray], labels: np.ndarray,
              *, steps: int, batch_size: int, lr: float, seed: int) -> list[float]:
    """Adam on cross-entropy for ``head.count``: how many entities each row's caption names (1 ... the head's
    maximum; a caption naming none counts as 1, as predictions always hint one)."""
    top = head.count[-1].out_features
    counts = torch.from_numpy(np.clip(labels.sum(1, dtype=np.int64), 1, top) - 1)

    def loss(out: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        return nn.functional.cross_entropy(out, counts[rows].to(out.device))

    return _adam_fit(head.count, batch, len(labels), loss, steps=steps, batch_size=batch_size, lr=lr,
                     seed=[seed, 8])


def _adam_fit(net: nn.Module, batch: Callable[[np.ndarray, np.random.Generator], np.ndarray], n_rows: int,
              loss_fn: Callable[[torch.Tensor, np.ndarray], torch.Tensor], *, steps: int, batch_size: int, lr: float,
              seed: list[int]) -> list[float]:
    rng = np.random.default_rng(seed)
    params = list(net.parameters())
    for p in params:  # frozen inside the adaptor: trained here only, never by the adaptor's optimizer
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    dev = params[0].device
    losses = []
    net.train()
    for step in range(steps):
        rows = np.sort(rng.integers(n_rows, size=batch_size))
        x = torch.from_numpy(np.ascontiguousarray(batch(rows, rng), dtype=np.float32)).to(dev)
        loss = loss_fn(net(x), rows)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            losses.append(round(float(loss.detach()), 5))
    for p in params:
        p.requires_grad_(False)
    net.eval()
    return losses
