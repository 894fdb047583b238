"""Image embedding stage ('embed_images'): a folder of images -> L2-normalised CLIP image embeddings."""
from __future__ import annotations

import time
from pathlib import Path

import polars as pl

from ..artifacts import ArtifactRef, ArtifactStore, BuildOutput, StageSpec
from ..config import canonical_json, hash_text
from ..errors import ConfigError
from .config import ImageEmbedConfig
from .images import encode_images, image_ids, list_images
from .stage import clip_for, model_fingerprint
from .store import ID_COLUMN, IDS_FILE, write_shards

SPEC = StageSpec(name="embed_images", version="1", modules=("tomcap.embed",))


def _folder_fingerprint(config: ImageEmbedConfig) -> str:
    """Cheap identity of the image folder: relative names, sizes and mtimes of the selected files."""
    root = Path(config.images)
    files = list_images(root, config.extensions, config.max_images)
    listing = [(str(f.relative_to(root)), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return hash_text(canonical_json(listing))


def validate(config: ImageEmbedConfig) -> None:
    """Refuse an unknown model or missing weights before any stage of a run starts."""
    model_fingerprint(config)


def upstream_fingerprints(config: ImageEmbedConfig) -> dict[str, str]:
    if config.images is None:
        raise ConfigError("no image folder configured", fix="set embed_images.images (or pass --images DIR)")
    return {"images": _folder_fingerprint(config), "clip": model_fingerprint(config)}


def run_embed_images(config: ImageEmbedConfig, data_dir: Path | str, *, force: bool = False) -> ArtifactRef:
    """Image embeddings of ``config.images`` + image_ids.parquet (image_id, file), skipped files in the manifest."""
    upstream = upstream_fingerprints(config)

    def build(tmp: Path) -> BuildOutput:
        root = Path(config.images)
        files = list_images(root, config.extensions, config.max_images)
        ids = image_ids(files, config.image_id_regex)
        clip = clip_for(config)
        t0 = time.perf_counter()
        res = encode_images(clip, files, names=[str(f) for f in files], batch_size=config.batch_size,
                            precision=config.precision, skip_bad_images=config.skip_bad_images,
                            progress=config.progress)
        encode_s = time.perf_counter() - t0
        shards = write_shards(res.embeddings, tmp, config.dtype, config.shard_rows)
        pl.DataFrame({ID_COLUMN[SPEC.name]: [ids[i] for i in res.kept],
                      "file": [str(files[i].relative_to(root)) for i in res.kept]}).write_parquet(
                          tmp / IDS_FILE[SPEC.name])
        return BuildOutput(
            rows={"rows": len(res.kept), "files": len(files), "skipped": len(res.skipped)},
            info={"model": config.model, "pretrained": clip.pretrained, "model_fingerprint": model_fingerprint(config),
                  "dim": clip.embed_dim, "dtype": config.dtype, "precision": config.precision, "shards": shards,
                  "encode_s": round(encode_s, 3), "skipped_files": [{"file": n, "reason": r} for n, r in res.skipped]})

    return ArtifactStore(data_dir).build(SPEC, config, upstream, build, force=force)
