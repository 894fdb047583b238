"""The whole-pipeline config: one section per stage, loadable from one YAML file.

Each section is the typed config of its stage; a stage's cache key uses only its own section, so
editing one section recomputes that stage and what is downstream of it, nothing upstream.
"""
from __future__ import annotations

from pathlib import Path

from pydantic import Field

from .config import StageConfig, read_yaml_mapping, validate_config
from .constants import DEFAULT_DATA_DIR
from .corpus.config import CorpusConfig
from .world.config import WorldConfig
from .evaluate.config import EvaluateConfig
from .train.config import TrainConfig
from .embed.config import EmbedConfig, ImageEmbedConfig
from .gap import GapConfig
from .index.config import IndexConfig


class PipelineConfig(StageConfig):
    """All stage configs of one run. ``data_dir`` is where artifacts go (not part of any key)."""

    data_dir: Path | None = Field(default=None, description="artifact root; default: $TOMCAP_DATA_DIR or ./data")
    corpus: CorpusConfig = CorpusConfig()
    world: WorldConfig = WorldConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    train: TrainConfig = TrainConfig()
    embed: EmbedConfig = EmbedConfig()
    embed_images: ImageEmbedConfig = ImageEmbedConfig()
    gap: GapConfig = GapConfig()
    index: IndexConfig = IndexConfig()

    def resolved_data_dir(self, override: Path | None = None) -> Path:
        return Path(override or self.data_dir or DEFAULT_DATA_DIR).resolve()


def load_pipeline_config(path: Path | None) -> PipelineConfig:
    """Load a pipeline YAML; relative paths inside it are taken relative to the YAML's folder."""
    if path is None:
        return PipelineConfig()
    path = Path(path)
    data = read_yaml_mapping(path)
    with_base = _resolve_relative(data, path.resolve().parent)
    return validate_config(PipelineConfig, with_base, source=str(path))


_PATH_KEYS = frozenset({"path", "data_dir", "refs", "images", "checkpoint", "pretrained_path", "gpt2_dir"})


def _resolve_relative(obj, base: Path):
    """Make the values of path-like keys absolute against the YAML's folder (recursively)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in _PATH_KEYS and isinstance(v, str) and v and not Path(v).is_absolute():
                out[k] = str((base / v).resolve())
            else:
                out[k] = _resolve_relative(v, base)
        return out
    if isinstance(obj, list):
        return [_resolve_relative(v, base) for v in obj]
    return obj
