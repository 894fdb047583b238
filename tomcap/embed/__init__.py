"""CLIP embedding stages: fast incremental text embeddings and image embeddings, stored memory-mappable."""
from .._lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "EmbedConfig": ".config", "ImageEmbedConfig": ".config", "ImageEncodeResult": ".images",
    "encode_images": ".images", "IMAGE_SPEC": ".image_stage:SPEC", "run_embed_images": ".image_stage",
    "SPEC": ".stage", "model_fingerprint": ".stage", "run_embed": ".stage", "upstream_fingerprints": ".stage",
    "EmbeddingSet": ".store", "encode_texts": ".text",
})
