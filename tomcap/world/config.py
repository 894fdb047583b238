"""Typed configs of the embedded world: the scene generator and the two model trainers."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from ..config import StageConfig


class WorldConfig(StageConfig):
    """How many scenes of which kind ``generate_world`` writes.

    Train (caption-only corpus), validation, test and novel-composition test scenes (images + 5
    references each) come from separate seed streams; a train scene whose canonical attribute key
    occurs in an evaluation split is dropped, so the splits are disjoint by scene (``splits.py``).
    """

    seed: int = Field(default=0, ge=0, description="root seed; train/test/probe streams are derived from it")
    image_size: int = Field(default=64, ge=32, le=256, description="square image side in pixels")
    n_train_scenes: int = Field(default=10_000, ge=1, description="scenes described in the caption-only corpus")
    n_test_images: int = Field(default=1_000, ge=1, description="held-out images written as PNG + COCO annotations")
    n_val_images: int = Field(default=100, ge=0, description="validation images (PNG + COCO), disjoint from train and "
                              "test: every tuning choice is made on them")
    n_novel_images: int = Field(default=0, ge=0, description="novel-composition test images: each holds a held-out "
                                "colour-shape pair (needs heldout_pairs > 0)")
    heldout_pairs: int = Field(default=0, ge=0, le=6, description="colour-shape pairs kept out of the train corpus, "
                               "validation and test (at most one per colour and per shape)")
    captions_per_image: int = Field(default=5, ge=1, le=8, description="distinct reference captions per scene")
    max_objects: int = Field(default=3, ge=1, le=3, description="objects per scene are drawn from 1..max_objects")
    single_object_share: float = Field(default=0.4, ge=0.0, le=1.0,
                                       description="share of one-object scenes (the zero-shot probes use these)")
    relation_share: float = Field(default=0.4, ge=0.0, le=1.0,
                                  description="share of two-object captions written as a relation (left of / above)")
    render_train_images: bool = Field(default=False, description="also write the train scenes' images (named by "
                                      "scene id) for the paired-training oracle; text-only training never reads them")

    @model_validator(mode="after")
    def _single_possible(self) -> "WorldConfig":
        if self.max_objects == 1 and self.single_object_share < 1.0:
            # with one object per scene every scene is single-object; the share is meaningless otherwise
            object.__setattr__(self, "single_object_share", 1.0)
        if self.n_novel_images and not self.heldout_pairs:
            raise ValueError("n_novel_images > 0 needs heldout_pairs > 0; fix: set world.heldout_pairs (e.g. 6)")
        return self


UNIFORM_MIX = (1.0, 1.0, 1.0, 1.0)
Mix = Annotated[tuple[float, ...], Field(min_length=4, max_length=5)]
"""Odds of a twin's change: shape, colour, size, position and optionally a colour swap of two objects."""


class ClipPhase(StageConfig):
    """One more fine-tuning phase of the world CLIP from the previous phase's saved weights."""

    steps: int = Field(ge=1)
    lr: float = Field(gt=0)
    mix: Mix = Field(description="hard_negative_mix of this phase")
    single_object_share: float | None = Field(
        default=None, ge=0, le=1,
        description="share of one-object scenes in this phase's batches (None: the world's); lower puts the "
                    "steps on multi-object scenes, where the bindings are lost")


class ClipTrainConfig(StageConfig):
    """Contrastive training of the tiny world CLIP (open_clip architecture from JSON)."""

    model_name: str = "tomcap-world-clip"
    seed: int = 0
    steps: int = Field(default=1500, ge=1)
    batch_size: int = Field(default=128, ge=2)
    lr: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=0.05, ge=0)
    warmup_steps: int = Field(default=50, ge=0)
    logit_scale: float = Field(default=100.0, gt=0,
                               description="fixed (not learned) inverse temperature; a low temperature keeps a "
                                           "realistic modality gap (Liang et al. 2022)")
    hard_negative_share: float = Field(default=0.5, ge=0.0, lt=1.0,
                                       description="share of each batch that are one-attribute twins of other scenes")
    hard_negative_mix: Mix = Field(
        default=UNIFORM_MIX, description="relative odds that a twin differs in shape, colour, size, position "
                                         "(and, with a fifth weight, has two objects' colours swapped)")
    finetune_steps: int = Field(default=400, ge=0, description="phase-2 steps from the saved phase-1 weights; 0: none")
    finetune_lr: float = Field(default=5e-4, gt=0)
    finetune_mix: Mix = Field(
        default=(4.0, 1.0, 1.0, 1.0), description="phase-2 hard_negative_mix: mostly shape twins")
    extra_phases: tuple[ClipPhase, ...] = Field(
        default=(ClipPhase(steps=800, lr=4e-4, mix=(6.0, 2.0, 1.0, 1.0)),
                 ClipPhase(steps=1500, lr=3e-4, mix=(5.0, 3.0, 1.0, 1.0)),
                 ClipPhase(steps=1200, lr=3e-4, mix=(5.0, 3.0, 1.0, 1.0, 4.0)),
                 *[ClipPhase(steps=2400, lr=3e-4, mix=(5.0, 3.0, 1.0, 1.0, 4.0))] * 3),
        description="phases 3.. after phase 2, each from the saved weights of the one before (fresh optimizer, "
                    "new batches); shape- and colour-heavy twins raised zero-shot shape 0.80 -> 0.93 and the "
                    "binding probe 0.70 -> 0.80 on validation after phase 3, to 0.98 / 0.89 after phase 4, "
                    "phase 5 (with colour-swap twins) to 0.99 / 0.91, and phases 6-8 (the phase-5 mix again, "
                    "2400 steps each) the binding probe to 0.96 / 0.98 / 0.98 (validation; issue 20 notes)")
    gap_target: float = Field(default=0.8, ge=0.0, le=2.0,
                              description="centroid distance kept by a hinge penalty (real CLIP on COCO: ~0.8)")
    gap_weight: float = Field(default=10.0, ge=0.0, description="weight of the gap hinge; 0 disables it")
    threads: int = Field(default=1, ge=1, description="torch CPU threads; 1 is fastest on a shared 2-core machine "
                                                      "(two threads wait on each other when a core is taken)")
    log_every: int = Field(default=25, ge=1)


class Gpt2TrainConfig(StageConfig):
    """Language-model pretraining of the tiny world GPT-2 with its own byte-level BPE tokenizer."""

    seed: int = 0
    vocab_size: int = Field(default=2048, ge=300)
    n_layer: int = Field(default=3, ge=1)
    n_head: int = Field(default=4, ge=1)
    n_embd: int = Field(default=96, ge=16)
    n_positions: int = Field(default=128, ge=16,
                             description="context; must hold a retrieval prompt (K captions) + caption")
    packed_share: float = Field(default=0.5, ge=0, le=0.9,
                                description="share of training sequences that join all captions "
                                "of one scene (so the LM learns that its context repeats, as a retrieval prompt does)")
    steps: int = Field(default=2500, ge=1)
    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=2e-3, gt=0)
    warmup_steps: int = Field(default=100, ge=0)
    n_train_scenes: int = Field(default=20_000, ge=1, description="world scenes whose captions form the LM corpus")
    n_heldout_scenes: int = Field(default=500, ge=1, description="held-out world scenes for perplexity")
    real_captions_max: int = Field(default=20_000, ge=0,
                                   description="real captions (../shared/data/captions Karpathy val) mixed in, "
                                               "if present")
    threads: int = Field(default=1, ge=1, description="torch CPU threads (see ClipTrainConfig.threads)")
    log_every: int = Field(default=100, ge=1)
