"""Typed config of the training stage: optimisation, the text-only ingredients and their switches."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ..config import StageConfig
from ..model.config import AdaptorConfig


class TrainConfig(StageConfig):
    """One training run. ``model`` is the adaptor architecture; the rest is how it is trained.

    Ablation switches (TOMCap): ``gap_correction``, ``noise``, ``retrieval_prompt``,
    ``retrieval_cross``. ``query='image'`` trains on real image embeddings (paired oracle)."""

    model: AdaptorConfig = AdaptorConfig()
    seed: int = 0
    steps: int = Field(default=600, ge=1, description="optimizer steps")
    batch_size: int = Field(default=32, ge=1, description="examples per micro-batch")
    grad_accum: int = Field(default=1, ge=1, description="micro-batches per optimizer step")
    lr: float = Field(default=1e-3, gt=0)
    min_lr: float = Field(default=1e-4, ge=0, description="floor of the cosine decay")
    warmup_steps: int = Field(default=30, ge=0)
    weight_decay: float = Field(default=0.01, ge=0)
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = Field(default=1.0, ge=0, description="max global grad norm; 0 disables")
    precision: Literal["fp32", "bf16", "auto"] = Field(default="fp32", description="bf16: autocast forward (CPU and "
                                                       "CUDA); auto: bf16 on a bf16-capable GPU, else fp32")
    device: str | None = Field(default="auto", description="auto (or null): cuda if available, else cpu")
    eval_every: int = Field(default=100, ge=1, description="validation loss every N steps (and at the end)")
    checkpoint_every: int = Field(default=200, ge=1, description="resume checkpoint every N steps")
    cond_dropout: float = Field(default=0.1, ge=0, le=1,
                                description="p of replacing the condition by the null one (CFG)")
    query: Literal["text", "image"] = Field(default="text",
                                            description="'image': paired oracle (real image embeddings)")
    gap_correction: bool = Field(default=True, description="map text embeddings to the image distribution")
    noise: bool = Field(default=True, description="add Gaussian noise to the query embeddings")
    noise_std: float = Field(default=0.04, ge=0, description="per-dim noise std when no gap stats give one")
    noise_scale_cross: float = Field(default=1.0, ge=0, description="noise multiplier for the cross-attention input")
    noise_scale_query: float = Field(default=1.0, ge=0, description="noise multiplier for the retrieval query")
    retrieval_prompt: bool = Field(default=True, description="retrieved captions in the prompt")
    retrieval_cross: bool = Field(default=True, description="retrieved caption embeddings in cross-attention")
    renormalize: bool = Field(default=True, description="unit-normalise embeddings after correction and noise")
    val_size: int = Field(default=256, ge=1, description="held-out captions for the validation loss")
    max_rows: int | None = Field(default=None, ge=1, description="train on at most this many captions (seeded sample)")
    threads: int | None = Field(default=None, ge=1,
                                description="torch CPU threads; null: torch's default (not in the key)")

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr {self.min_lr} > lr {self.lr}; fix: lower min_lr")
        if self.warmup_steps >= self.steps:
            raise ValueError(f"warmup_steps {self.warmup_steps} >= steps {self.steps}; fix: lower warmup_steps")
        return self

    @property
    def uses_retrieval(self) -> bool:
        return self.model.k > 0 and (self.retrieval_prompt or self.retrieval_cross)

    def key_dict(self) -> dict[str, Any]:
        d = super().key_dict()
        d["model"] = self.model.key_dict()
        for k in ("device", "threads"):  # where it runs does not change what it computes (seeded)
            d.pop(k)
        return d
