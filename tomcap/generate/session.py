"""One path from a checkpoint and a datastore to captions, shared by the generation stage and ``tomcap caption``.

What the adaptor learned decides how it is prompted: ``k`` and whether retrieved captions go into the
prompt and the cross-attention come from the checkpoint's training config (``GenerateConfig.k``
overrides ``k``). The base GPT-2 is loaded for LM guidance, and the CLIP text encoder of the
checkpoint's CLIP for reranking candidates (MacCap), only when the decoding config asks for them.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..artifacts import ArtifactRef
from ..embed.config import ImageEmbedConfig
from ..embed.images import encode_images
from ..embed.stage import clip_for
from ..embed.text import encode_texts
from ..errors import ArtifactError
from ..index import Datastore
from ..model.adaptor import load_decoder
from ..model.checkpoint import load_adaptor
from .captioner import Caption, TextEncoder, caption_batch
from .config import GenerateConfig
from .guidance import LM
from .regions import aggregate_regions, grid_crops


def check_same_clip(train: ArtifactRef, store: Datastore, clip_fingerprint: str) -> None:
    """Refuse a checkpoint, datastore and images embedded with different CLIP models."""
    trained = train.manifest().info.get("clip_model_fingerprint")
    found = {"checkpoint": trained, "datastore": store.model_fingerprint, "images": clip_fingerprint}
    if len(set(found.values())) != 1:
        raise ArtifactError(
            f"CLIP models differ: {found}", path=train.dir,
            fix="embed the datastore, the images and the training corpus with the same CLIP model and weights")


def clip_text_encoder(clip_config: ImageEmbedConfig) -> TextEncoder:
    """Captions -> L2-normalised text embeddings with the CLIP of ``clip_config`` (for reranking)."""
    clip = clip_for(clip_config)
    return lambda texts: encode_texts(clip, texts, precision=clip_config.precision, progress=False)


@dataclass
class CaptionSession:
    """A loaded checkpoint + datastore (+ base LM, + CLIP text encoder) ready to caption embeddings."""

    config: GenerateConfig
    model: Any
    store: Datastore
    k: int
    use_prompt: bool
    use_cross: bool
    base_lm: Any = None
    text_encoder: TextEncoder | None = None

    @classmethod
    def open(cls, config: GenerateConfig, train: ArtifactRef, index: ArtifactRef, clip_config: ImageEmbedConfig,
             clip_fingerprint: str) -> CaptionSession:
        """``clip_config``/``clip_fingerprint``: the CLIP that embedded the images to caption."""
        store = Datastore.open(index)
        check_same_clip(train, store, clip_fingerprint)
        model = load_adaptor(train.dir)
        trained = train.manifest().config
        k = config.k if config.k is not None else int(model.config.k)
        base_lm = None
        if LM in config.decode.guidance().roles:
            base_lm = load_decoder(model.config.decoder_source).to(next(model.parameters()).device).eval()
        encoder = clip_text_encoder(clip_config) if config.decode.reranks else None
        return cls(config, model, store, k, k > 0 and bool(trained.get("retrieval_prompt", True)),
                   k > 0 and bool(trained.get("retrieval_cross", True)), base_lm, encoder)

    def caption(self, emb: np.ndarray) -> tuple[list[Caption], list[list[str]]]:
        """(captions, retrieved captions) for L2-normalised image embeddings (B, D), one decoding batch."""
        q = np.asarray(emb, np.float32)
        consensus = self.config.consensus_weight
        depth = max(self.k, self.config.consensus_k if consensus else 0)
        if depth > 0:
            found = self.store.search(q, depth).rows
            near = [self.store.texts(r) for r in found]
        else:
            found, near = np.zeros((len(q), 0), np.int64), [[] for _ in q]
        rows, texts = found[:, :self.k], [t[:self.k] for t in near]
        caps = caption_batch(self.model, q, texts if self.use_prompt else [[] for _ in q],
                             self.store.embeddings(rows) if self.use_cross else None, self.config.decode,
                             base_lm=self.base_lm, text_encoder=self.text_encoder,
                             likelihood_weight=self.config.likelihood_weight,
                             neighbours=near if consensus else None, consensus_weight=consensus)
        return caps, texts

    def caption_all(self, emb: np.ndarray, progress: bool | None = None) -> tuple[list[Caption], list[list[str]]]:
        """``caption`` in batches of ``config.batch_size``."""
        caps: list[Caption] = []
        texts: list[list[str]] = []
        starts = range(0, len(emb), self.config.batch_size)
        for start in tqdm(starts, desc="captioning", unit="batch", disable=None if progress is None else not progress):
            c, t = self.caption(emb[start:start + self.config.batch_size])
            caps += c
            texts += t
        return caps, texts


def region_embeddings(config: GenerateConfig, clip_config: ImageEmbedConfig, files: Sequence[Path],
                      emb: np.ndarray) -> np.ndarray:
    """Re-embed each image's grid crops with the same CLIP and aggregate them (MacCap)."""
    crops = []
    for f in files:
        with Image.open(f) as im:
            crops += grid_crops(im.convert("RGB"), config.regions.grid)
    crop_emb = encode_images(clip_for(clip_config), crops, progress=False).embeddings
    return aggregate_regions(emb, crop_emb.reshape(len(files), config.regions.grid ** 2, -1),
                             config.regions.global_weight, config.regions.temperature)
