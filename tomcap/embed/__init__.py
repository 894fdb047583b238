"""CLIP embedding stages: fast incremental text embeddings and image embeddings, stored memory-mappable."""
from .config import EmbedConfig, ImageEmbedConfig
from .images import ImageEncodeResult, encode_images
from .image_stage import SPEC as IMAGE_SPEC
from .image_stage import run_embed_images
from .stage import SPEC, model_fingerprint, run_embed, upstream_fingerprints
from .store import EmbeddingSet
from .text import encode_texts

__all__ = ["EmbedConfig", "ImageEmbedConfig", "EmbeddingSet", "ImageEncodeResult", "IMAGE_SPEC", "SPEC",
           "encode_images", "encode_texts", "model_fingerprint", "run_embed", "run_embed_images", "upstream_fingerprints"]
