"""Typed config of the index (datastore) stage."""
from __future__ import annotations

from typing import Any

from pydantic import Field

from ..config import StageConfig


class IndexConfig(StageConfig):
    """FAISS datastore over a text-embedding artifact."""

    index_key: str = Field(default="auto",
                           description="'auto' (see tomcap.index.select) or a faiss factory string, e.g. 'IVF4096,SQ8'")
    nprobe: int | None = Field(default=None, ge=1,
                               description="IVF lists scanned per query; "
                               "null: derived from N, then tuned to target_recall")
    target_recall: float = Field(default=0.95, gt=0, le=1,
                                 description="auto nprobe is raised until recall@k on held-out queries reaches this")
    memory_budget_gb: float = Field(default=8.0, gt=0,
                                    description="memory the index may use (drives the automatic choice)")
    eval_queries: int = Field(default=500, ge=1, description="held-out query sample for recall@k and QPS")
    eval_k: int = Field(default=10, ge=1)
    seed: int = 0
    threads: int | None = Field(default=None, ge=1, description="faiss OpenMP threads (null: faiss default)")

    def key_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().key_dict().items() if k != "threads"}
