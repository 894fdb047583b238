"""Batched, KV-cached forward passes over many token streams of one causal LM.

A *stream* is one prompt (token ids) plus optional cross-attention states. Decoding keeps several
streams per hypothesis (conditional, unconditional for CFG, base LM for LM guidance); all streams
that belong to the same model run in ONE forward pass per step, left-padded, with position ids
that ignore the padding, so a batch gives each stream exactly the logits it would get alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from transformers.cache_utils import EncoderDecoderCache


@dataclass
class Stream:
    """One prompt for one model. ``encoder_states``: (S, d_model) cross-attention input, or None."""

    model: str
    prompt_ids: list[int]
    encoder_states: Tensor | None = None


def _left_pad(seqs: list[list[int]], pad_id: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """(ids (N, T), mask (N, T)) with each sequence right-aligned."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(seqs), width), dtype=torch.long, device=device)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long, device=device)
            mask[i, width - len(s):] = 1
    return ids, mask


def _pad_encoder(states: list[Tensor | None], device: torch.device) -> tuple[Tensor | None, Tensor | None]:
    """Stack (S_i, d) cross-attention inputs to (N, S_max, d) with a mask; None if no stream has any."""
    present = [s for s in states if s is not None]
    if not present:
        return None, None
    if len(present) != len(states):
        raise ValueError("streams of one model must all have encoder states or none")
    s_max = max(s.shape[0] for s in present)
    d = present[0].shape[-1]
    out = torch.zeros((len(states), s_max, d), dtype=present[0].dtype, device=device)
    mask = torch.zeros((len(states), s_max), dtype=torch.long, device=device)
    for i, s in enumerate(present):
        out[i, : s.shape[0]] = s.to(device)
        mask[i, : s.shape[0]] = 1
    return out, mask


class StreamBatch:
    """The running state of N streams of one model: KV cache, attention mask, next positions."""

    def __init__(self, model: nn.Module, streams: list[Stream], pad_id: int):
        self.model = model
        self.device = next(model.parameters()).device
        ids, self.mask = _left_pad([s.prompt_ids for s in streams], pad_id, self.device)
        self.enc, self.enc_mask = _pad_encoder([s.encoder_states for s in streams], self.device)
        self.past = None
        self._prompt_ids = ids

    @property
    def size(self) -> int:
        return self.mask.shape[0]

    def _forward(self, ids: Tensor, positions: Tensor) -> Tensor:
        kwargs = {}
        if self.enc is not None:
            kwargs = {"encoder_hidden_states": self.enc, "encoder_attention_mask": self.enc_mask}
        out = self.model(input_ids=ids, attention_mask=self.mask, position_ids=positions,
                         past_key_values=self.past, use_cache=True, **kwargs)
        self.past = out.past_key_values
        return out.logits[:, -1, :].float()

    def start(self) -> Tensor:
        """Run the prompts; returns next-token log-probs (N, V)."""
        positions = (self.mask.cumsum(-1) - 1).clamp(min=0)
        return torch.log_softmax(self._forward(self._prompt_ids, positions), dim=-1)

    def step(self, tokens: Tensor) -> Tensor:
        """Append one token per stream (N,); returns next-token log-probs (N, V)."""
        positions = self.mask.sum(-1, keepdim=True)
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=-1)
        return torch.log_softmax(self._forward(tokens[:, None], positions), dim=-1)

    def reorder(self, index: Tensor, same_encoder: bool = False) -> None:
        """Keep rows ``index`` (N',) of the batch, in that order (beam search reshuffles). ``same_encoder``: the
        caller knows row j's cross-attention input equals row ``index[j]``'s (beams of one image), so with N' = N
        the encoder states and their cached keys and values stay as they are (half of beam search's cache
        copies in the world demo)."""
        keep_encoder = same_encoder and len(index) == self.size and self.enc is not None
        self.mask = self.mask.index_select(0, index)
        if self.enc is not None and not keep_encoder:
            self.enc = self.enc.index_select(0, index)
            self.enc_mask = self.enc_mask.index_select(0, index)
        if self.past is None:
            return
        if keep_encoder and isinstance(self.past, EncoderDecoderCache):
            self.past.self_attention_cache.reorder_cache(index)
        else:
            self.past.reorder_cache(index)
