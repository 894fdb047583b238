"""Random-init GPT-2 folders for tests and benchmarks (no download): tokenizer + config + weights."""
from __future__ import annotations

from pathlib import Path

import torch

TINY_SHAPE = {"n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 96, "initializer_range": 0.3}
"""A decoder small enough for unit tests (a few ms per step). The wide init gives the frozen,
untrained LM head logits large enough that adapting the hidden states can lower the loss."""
TINY_VOCAB = 400


def make_random_gpt2(folder: Path, texts: list[str], vocab_size: int = TINY_VOCAB, seed: int = 0,
                     **shape: int) -> Path:
    """Save a byte-level BPE tokenizer trained on ``texts`` and a random-init GPT-2 of ``shape``
    (default :data:`TINY_SHAPE`; pass ``n_embd=768, n_layer=12, ...`` for gpt2-sized) into ``folder``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from ..world.train_gpt2 import train_tokenizer

    folder = Path(folder)
    tok = train_tokenizer(texts, vocab_size)
    cfg = GPT2Config(vocab_size=len(tok), bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
                     pad_token_id=tok.eos_token_id, **(shape or TINY_SHAPE))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(cfg)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
