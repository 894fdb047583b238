"""Language-model pretraining of the tiny world GPT-2 and its byte-level BPE tokenizer.

The result is a folder that ``AutoModelForCausalLM.from_pretrained(dir)`` and
``AutoTokenizer.from_pretrained(dir)`` load exactly like ``gpt2``: ``config.json``,
``model.safetensors``, ``tokenizer.json`` (trained here with the ``tokenizers`` library) and
``tokenizer_config.json`` with ``<|endoftext|>`` as bos/eos/unk/pad token.
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..artifacts import file_sha256
from ..constants import FINGERPRINT_CHARS
from ..errors import InputDataError
from .captions import scene_captions
from .config import Gpt2TrainConfig, WorldConfig
from .probe import perplexity
from .scenes import scene_stream
from .splits import test_keys, test_scenes
from .train_clip import determinism

log = logging.getLogger(__name__)

EOS = "<|endoftext|>"
TRAIN_STREAM = "gpt2-train"
BPE_MIN_FREQUENCY = 2
RECORD_FILE = "training_record.json"


PACK_SEPARATOR = ". "
"""Joins the captions of one scene in a packed sequence (the retrieval prompt's separator)."""


def world_caption_groups(cfg: Gpt2TrainConfig, world: WorldConfig) -> tuple[list[list[str]], list[str]]:
    """(train captions grouped by scene, held-out captions); held-out = test-split captions, whose
    scene keys train skips."""
    test = test_scenes(world, cfg.n_heldout_scenes)
    excluded = test_keys(world)
    train_scenes = [s for s in scene_stream(cfg.seed, TRAIN_STREAM, cfg.n_train_scenes, world.max_objects,
                                            world.single_object_share) if s.key() not in excluded]
    groups = [scene_captions(s, world.captions_per_image, world.seed, world.relation_share) for s in train_scenes]
    heldout = [c for s in test for c in scene_captions(s, world.captions_per_image, world.seed, world.relation_share)]
    return groups, heldout


def world_texts(cfg: Gpt2TrainConfig, world: WorldConfig) -> tuple[list[str], list[str]]:
    """(train, held-out) world captions, one per entry."""
    groups, heldout = world_caption_groups(cfg, world)
    return [c for g in groups for c in g], heldout


def packed_texts(groups: list[list[str]], n: int, rng: np.random.Generator) -> list[str]:
    """``n`` documents, each the captions of one random scene in random order joined by PACK_SEPARATOR."""
    out = []
    for i in rng.integers(len(groups), size=n):
        caps = [groups[i][j] for j in rng.permutation(len(groups[i]))]
        out.append(PACK_SEPARATOR.join(c.rstrip(".") for c in caps) + ".")
    return out


def real_texts(path: Path | None, limit: int) -> list[str]:
    """Up to ``limit`` captions of a Karpathy-style JSON ([{'captions': [...]}, ...]); [] if no file is given."""
    if path is None or limit == 0 or not Path(path).is_file():
        return []
    try:
        recs = json.loads(Path(path).read_text(encoding="utf-8"))
        caps = [" ".join(c.strip().split()) for r in recs for c in r["captions"]]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise InputDataError(f"not a Karpathy caption file ({err})", path=path,
                             fix="pass a JSON list of {'captions': [...]} records "
                                 "or set real_captions_max: 0") from None
    return caps[:limit]


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer (GPT-2 style) wrapped as a transformers fast tokenizer."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2TokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=BPE_MIN_FREQUENCY, special_tokens=[EOS],
                            show_progress=False)
    tok = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=EOS, eos_token=EOS, unk_token=EOS,
                            pad_token=EOS)
    tok.padding_side = "right"
    return tok


def lr_at(step: int, cfg: Gpt2TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def encode(tok: Any, texts: list[str], max_len: int) -> list[list[int]]:
    """``<|endoftext|> text <|endoftext|>`` token ids per text, truncated to ``max_len``."""
    eos = tok.eos_token_id
    return [([eos] + ids + [eos])[:max_len] for ids in tok(texts, add_special_tokens=False)["input_ids"]]


def batch_tensors(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids [B, T] and labels [B, T] (-100 on padding)."""
    t = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), t), pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), t), -100, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        labels[i, : len(s)] = torch.tensor(s)
    return ids, labels


def train_gpt2(cfg: Gpt2TrainConfig, world: WorldConfig, out_dir: Path, real_captions: Path | None = None,
               device: str | torch.device | None = None) -> dict[str, Any]:
    """Train tokenizer + model from scratch, save both into ``out_dir``, return the training record."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    with determinism(cfg.seed, cfg.threads):
        return _train_gpt2(cfg, world, Path(out_dir), real_captions, dev)


def _train_gpt2(cfg: Gpt2TrainConfig, world: WorldConfig, out_dir: Path, real_captions: Path | None,
                dev: torch.device) -> dict[str, Any]:
    from transformers import GPT2Config, GPT2LMHeadModel

    groups, heldout = world_caption_groups(cfg, world)
    world_train = [c for g in groups for c in g]
    real = real_texts(real_captions, cfg.real_captions_max)
    texts = world_train + real
    tok = train_tokenizer(texts, cfg.vocab_size)
    seqs = encode(tok, texts, cfg.n_positions)
    n_packed = int(round(len(seqs) * cfg.packed_share / (1 - cfg.packed_share)))
    if groups and n_packed:
        seqs += encode(tok, packed_texts(groups, n_packed, np.random.default_rng([cfg.seed, 1])), cfg.n_positions)
    mcfg = GPT2Config(vocab_size=len(tok), n_positions=cfg.n_positions, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
                      n_head=cfg.n_head, bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.eos_token_id)
    model = GPT2LMHeadModel(mcfg).to(dev)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(0.9, 0.95))
    rng = np.random.default_rng(cfg.seed)
    history: list[dict[str, float]] = []
    t0 = time.time()
    for step in range(cfg.steps):
        model.train()
        idx = rng.integers(len(seqs), size=cfg.batch_size)
        ids, labels = batch_tensors([seqs[i] for i in idx], tok.pad_token_id)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        loss = model(input_ids=ids.to(dev), attention_mask=(labels != -100).to(dev), labels=labels.to(dev)).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            log.info("gpt2 step %d/%d loss %.4f %.1fs", step, cfg.steps, float(loss.detach()), time.time() - t0)
            history.append({"step": step, "loss": float(loss.detach()), "seconds": time.time() - t0})
    train_seconds = time.time() - t0
    ppl = perplexity(model, tok, heldout, device=dev)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    record = {"train_config": cfg.model_dump(mode="json"), "world_config": world.model_dump(mode="json"),
              "device": str(dev), "train_seconds": round(train_seconds, 1), "n_world_captions": len(world_train),
              "n_packed_sequences": n_packed,
              "n_real_captions": len(real), "real_captions_file": str(real_captions.name) if real else None,
              "real_captions_sha256": file_sha256(real_captions)[:FINGERPRINT_CHARS] if real else None,
              "n_tokens": sum(len(s) for s in seqs), "vocab_size": len(tok),
              "n_parameters": sum(p.numel() for p in model.parameters()), "heldout_captions": len(heldout),
              "heldout_perplexity": ppl, "history": history}
    (out_dir / RECORD_FILE).write_text(json.dumps(record, indent=2))
    return record
