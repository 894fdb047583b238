"""Decoding loops: greedy, sampling and beam search over guided scores, with KV caches.

Each loop takes the streams of every image (per role) and repeats them per hypothesis (beams or
samples), so all hypotheses of all images advance in one batched step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .config import DecodeConfig
from .guidance import GuidedScorer
from .hint_guide import Phrases, add_hint_bonus
from .streams import Stream

NEG_INF = float("-inf")


@dataclass
class Hypothesis:
    tokens: list[int]
    score: float
    """Sum of guided log-scores of the generated tokens (EOS included when reached)."""


def banned_next_tokens(tokens: list[int], n: int) -> list[int]:
    """Tokens that would repeat an n-gram already in ``tokens`` (no-repeat-ngram blocking)."""
    if n <= 0 or len(tokens) < n - 1:
        return []
    prefix = tuple(tokens[len(tokens) - n + 1:]) if n > 1 else ()
    return [tokens[i + n - 1] for i in range(len(tokens) - n + 1) if tuple(tokens[i:i + n - 1]) == prefix]


def _block_repeats(scores: Tensor, seqs: list[list[int]], n: int) -> Tensor:
    if n <= 0:
        return scores
    for i, seq in enumerate(seqs):
        banned = banned_next_tokens(seq, n)
        if banned:
            scores[i, banned] = NEG_INF
    return scores


def _repeat(streams: dict[str, list[Stream]], times: int) -> dict[str, list[Stream]]:
    return {role: [s for s in rows for _ in range(times)] for role, rows in streams.items()}


def _top_p_filter(logits: Tensor, top_p: float) -> Tensor:
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    drop = probs.cumsum(-1) - probs > top_p  # keep the smallest prefix whose mass reaches top_p
    sorted_logits[drop] = NEG_INF
    return torch.full_like(logits, NEG_INF).scatter(-1, order, sorted_logits)


def _run_independent(models: dict[str, nn.Module], streams: dict[str, list[Stream]], cfg: DecodeConfig,
                     eos_id: int, pad_id: int, sample: bool, hints: list[Phrases] | None = None) -> list[Hypothesis]:
    """Greedy (or sampled) continuation of every row independently."""
    scorer = GuidedScorer(models, streams, cfg.guidance(), pad_id, batched=cfg.batched_guidance)
    n = scorer.n
    gen = torch.Generator().manual_seed(cfg.seed)
    seqs: list[list[int]] = [[] for _ in range(n)]
    totals = [0.0] * n
    done = [False] * n
    scores = scorer.start()
    for step in range(cfg.max_new_tokens):
        scores = _block_repeats(scores, seqs, cfg.no_repeat_ngram_size)
        if hints is not None:
            scores = add_hint_bonus(scores, seqs, hints, cfg.hint_bonus)
        if sample:
            logits = _top_p_filter(torch.log_softmax(scores / cfg.temperature, -1), cfg.top_p)
            tokens = torch.multinomial(logits.softmax(-1).cpu(), 1, generator=gen).squeeze(1).to(scores.device)
        else:
            tokens = scores.argmax(-1)
        picked = scores.gather(1, tokens[:, None]).squeeze(1).tolist()
        for i, t in enumerate(tokens.tolist()):
            if done[i]:
                continue
            totals[i] += picked[i]
            if t == eos_id:
                done[i] = True
            else:
                seqs[i].append(t)
        if all(done) or step == cfg.max_new_tokens - 1:
            break
        feed = torch.where(torch.tensor(done, device=tokens.device), torch.full_like(tokens, eos_id), tokens)
        scores = scorer.step(feed)
    return [Hypothesis(tokens=s, score=t) for s, t in zip(seqs, totals)]


def greedy_decode(models, streams, cfg: DecodeConfig, eos_id: int, pad_id: int,
                  hints: list[Phrases] | None = None) -> list[Hypothesis]:
    """One hypothesis per image: argmax of the guided score at each step."""
    return _run_independent(models, streams, cfg, eos_id, pad_id, sample=False, hints=hints)


def sample_decode(models, streams, cfg: DecodeConfig, eos_id: int, pad_id: int,
                  hints: list[Phrases] | None = None) -> list[list[Hypothesis]]:
    """``num_samples`` top-p samples per image (for reranking)."""
    k = cfg.num_samples
    rows = None if hints is None else [h for h in hints for _ in range(k)]
    flat = _run_independent(models, _repeat(streams, k), cfg, eos_id, pad_id, sample=True, hints=rows)
    return [flat[i * k:(i + 1) * k] for i in range(len(flat) // k)]


def _normalised(score: float, length: int, penalty: float) -> float:
    return score / max(length, 1) ** penalty


def beam_decode(models, streams, cfg: DecodeConfig, eos_id: int, pad_id: int,
                hints: list[Phrases] | None = None) -> list[list[Hypothesis]]:
    """Beam search with length penalty; every image's finished hypotheses, best (length-normalised) first.

    With ``beam_groups`` G > 1 this is diverse beam search (Vijayakumar et al., 2018): the w beams form G
    groups of w / G that advance one after another at each step, a group's candidates losing
    ``diversity_penalty`` for every time an earlier group chose the same token at that step. The penalty
    steers the choice only; hypotheses keep their guided log-scores."""
    w, groups = cfg.beam_size, cfg.beam_groups
    wg = w // groups
    device = next(next(iter(models.values())).parameters()).device
    n_images = len(streams[next(iter(streams))])
    # The prompts run once per image, then the KV caches are copied to the w beams: running them per beam
    # made prefill w x the cost, most of a 124M decoder's time with retrieval prompts of ~100 tokens.
    scorer = GuidedScorer(models, streams, cfg.guidance(), pad_id, batched=cfg.batched_guidance)
    first = scorer.start()
    scorer.reorder(torch.arange(n_images, device=device).repeat_interleave(w))
    # Rows are image-major (then group-major) over the images still searching (``active``): an image whose
    # search has ended leaves the batch, since its dead beams would still be run and their caches copied every
    # step (at beam 16 the cache copies were most of the decoding time).
    active = list(range(n_images))
    seqs: list[list[int]] = [[] for _ in range(n_images * w)]
    # Only the first beam of each group is live at the start, so the first step does not pick duplicates.
    beam_scores = torch.full((n_images, w), NEG_INF)
    beam_scores[:, ::wg] = 0.0
    finished: list[list[list[Hypothesis]]] = [[[] for _ in range(groups)] for _ in range(n_images)]
    scores = first.repeat_interleave(w, dim=0)
    diverse = groups > 1 and cfg.diversity_penalty > 0  # plain beam search keeps no token counts in its hot loop
    for step in range(cfg.max_new_tokens):
        scores = _block_repeats(scores, seqs, cfg.no_repeat_ngram_size).cpu()
        if hints is not None:  # rows are image-major over the images still searching
            scores = add_hint_bonus(scores, seqs, [hints[b] for b in active for _ in range(w)], cfg.hint_bonus)
        vocab = scores.shape[-1]
        total = (beam_scores.reshape(-1, 1) + scores).reshape(len(active), groups, wg * vocab)
        chosen = torch.zeros(len(active), vocab) if diverse else None  # tokens earlier groups chose at this step
        new_seqs: list[list[int]] = [[] for _ in range(len(active) * w)]
        new_scores = torch.full((len(active), w), NEG_INF)
        origin, tokens = [0] * (len(active) * w), [eos_id] * (len(active) * w)
        last = step == cfg.max_new_tokens - 1
        for g in range(groups):
            cand = total[:, g]
            penalised = diverse and g > 0
            if penalised:
                cand = cand - cfg.diversity_penalty * chosen.repeat(1, wg)
            top_scores, top_idx = cand.topk(2 * wg, dim=-1)
            top_raw = total[:, g].gather(1, top_idx) if penalised else top_scores
            for a, b in enumerate(active):
                live, base = 0, a * w + g * wg
                for rank, (s, raw, idx) in enumerate(zip(top_scores[a].tolist(), top_raw[a].tolist(),
                                                         top_idx[a].tolist())):
                    if s == NEG_INF:
                        break
                    beam, tok = divmod(idx, vocab)
                    row = base + beam
                    if tok == eos_id:
                        # As in HF: an EOS only ends a hypothesis when it ranks among the group's top candidates.
                        if rank < wg and len(finished[b][g]) < wg:
                            finished[b][g].append(Hypothesis(seqs[row], raw))
                        continue
                    if live < wg:
                        new_seqs[base + live] = seqs[row] + [tok]
                        new_scores[a, g * wg + live] = raw
                        origin[base + live], tokens[base + live] = row, tok
                        if diverse:
                            chosen[a, tok] += 1
                        live += 1
                for j in range(live, wg):  # pad with dead beams so every group keeps wg rows
                    new_seqs[base + j], origin[base + j] = seqs[base], base
        # An image's search ends when each of its groups has wg finished hypotheses.
        keep = [a for a, b in enumerate(active) if any(len(f) < wg for f in finished[b])]
        if last:
            for a in keep:
                b = active[a]
                for j in range(w):
                    g = j // wg
                    if new_scores[a, j] > NEG_INF:
                        finished[b][g].append(Hypothesis(new_seqs[a * w + j], float(new_scores[a, j])))
            break
        if not keep:
            break
        if len(keep) < len(active):
            rows = [a * w + j for a in keep for j in range(w)]
            new_seqs, origin, tokens = [new_seqs[r] for r in rows], [origin[r] for r in rows], [tokens[r] for r in rows]
            new_scores, active = new_scores[keep], [active[a] for a in keep]
        seqs, beam_scores = new_seqs, new_scores
        # Every beam comes from a beam of its own image: the images' conditions stay in place.
        scorer.reorder(torch.tensor(origin, device=device), same_encoder=True)
        scores = scorer.step(torch.tensor(tokens, device=device))
    # A stable sort: ties keep the order in which the hypotheses finished (group by group).
    def rank(h: Hypothesis) -> float:
        return _normalised(h.score, len(h.tokens) + 1, cfg.length_penalty)

    return [sorted([h for f in fs for h in f], key=rank, reverse=True) for fs in finished]


def decode(models: dict[str, nn.Module], streams: dict[str, list[Stream]], cfg: DecodeConfig, eos_id: int,
           pad_id: int, hints: list[Phrases] | None = None) -> list[list[Hypothesis]]:
    """Candidates per image: one for greedy and beam, ``num_samples`` for sampling, every finished beam for
    beam search with ``clip_rerank`` (best first). ``hints``: each image's hinted phrases (token ids), which
    ``cfg.hint_bonus`` steers toward (:mod:`tomcap.generate.hint_guide`)."""
    hints = hints if cfg.hint_bonus else None
    if cfg.strategy == "greedy":
        return [[h] for h in greedy_decode(models, streams, cfg, eos_id, pad_id, hints)]
    if cfg.strategy == "beam":
        beams = beam_decode(models, streams, cfg, eos_id, pad_id, hints)
        return beams if cfg.clip_rerank else [f[:1] for f in beams]
    return sample_decode(models, streams, cfg, eos_id, pad_id, hints)
