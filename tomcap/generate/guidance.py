"""Guided next-token scores: classifier-free guidance and LM guidance over per-stream log-probs.

Roles of the streams of one hypothesis:
- ``cond``: the adaptor conditioned on the image (cross-attention) and its retrieved captions (prompt);
- ``uncond``: the same adaptor with the learned null condition and no retrieved prompt;
- ``lm``: the frozen base GPT-2 alone (no adaptor), for LM guidance.

CFG (arXiv 2307.16686): s = log p(x|∅) + γ·(log p(x|y) − log p(x|∅)); γ = 1 is plain conditional
decoding, γ = 0 unconditional. LM guidance: s = log p_LM(x) + α·log p(x|y) − β·log p(x|∅).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .streams import Stream, StreamBatch

COND, UNCOND, LM = "cond", "uncond", "lm"
ADAPTOR_MODEL, BASE_LM_MODEL = "adaptor", "lm"


@dataclass(frozen=True)
class Guidance:
    """Weights of the score combination. ``lm_alpha=None`` turns LM guidance off."""

    cfg_scale: float = 1.0
    lm_alpha: float | None = None
    lm_beta: float = 0.0

    def __post_init__(self) -> None:
        if self.cfg_scale < 0:
            raise ValueError(f"guidance scale must be >= 0, got {self.cfg_scale}")

    @property
    def roles(self) -> tuple[str, ...]:
        if self.lm_alpha is not None:
            return (COND, UNCOND, LM) if self.lm_beta != 0 else (COND, LM)
        return (COND,) if self.cfg_scale == 1.0 else (COND, UNCOND)

    def combine(self, lp: dict[str, Tensor]) -> Tensor:
        """Per-role log-probs (N, V) -> guided scores (N, V)."""
        if self.lm_alpha is not None:
            score = lp[LM] + self.lm_alpha * lp[COND]
            return score - self.lm_beta * lp[UNCOND] if UNCOND in lp else score
        if UNCOND not in lp:
            return lp[COND]
        return lp[UNCOND] + self.cfg_scale * (lp[COND] - lp[UNCOND])


ROLE_MODEL = {COND: ADAPTOR_MODEL, UNCOND: ADAPTOR_MODEL, LM: BASE_LM_MODEL}


class GuidedScorer:
    """Runs the streams of N hypotheses and returns guided scores per step.

    With ``batched=True`` every role served by the same model (cond + uncond) shares one forward
    pass per step (rows role-major: all cond rows, then all uncond rows); ``batched=False`` runs one
    pass per role (the two-pass reference).
    """

    def __init__(self, models: dict[str, nn.Module], streams: dict[str, list[Stream]], guidance: Guidance,
                 pad_id: int, batched: bool = True):
        self.guidance = guidance
        self.n = len(streams[COND])
        groups: dict[str, list[str]] = {}
        for role in guidance.roles:
            key = ROLE_MODEL[role] if batched else role
            groups.setdefault(key, []).append(role)
        self.batches: list[tuple[list[str], StreamBatch]] = []
        for roles in groups.values():
            model = models[ROLE_MODEL[roles[0]]]
            rows = [s for role in roles for s in streams[role]]
            self.batches.append((roles, StreamBatch(model, rows, pad_id)))

    def _split(self, outs: list[Tensor]) -> Tensor:
        lp: dict[str, Tensor] = {}
        for (roles, _), out in zip(self.batches, outs):
            for i, role in enumerate(roles):
                lp[role] = out[i * self.n:(i + 1) * self.n]
        return self.guidance.combine(lp)

    def start(self) -> Tensor:
        return self._split([b.start() for _, b in self.batches])

    def step(self, tokens: Tensor) -> Tensor:
        """tokens (N,) -> scores (N, V)."""
        return self._split([b.step(tokens.repeat(len(roles))) for roles, b in self.batches])

    def reorder(self, index: Tensor, same_encoder: bool = False) -> None:
        """Keep hypotheses ``index`` (N',), in that order; N' may differ from N (repeated rows copy a cache).
        ``same_encoder``: hypothesis j keeps the condition of hypothesis ``index[j]`` (see StreamBatch.reorder)."""
        for roles, b in self.batches:
            b.reorder(torch.cat([index + i * self.n for i in range(len(roles))]), same_encoder)
        self.n = len(index)
