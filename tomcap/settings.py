"""The whole-pipeline config: one section per stage, loadable from one YAML file.

Each section is the typed config of its stage; a stage's cache key uses only its own section, so
editing one section recomputes that stage and what is downstream of it, nothing upstream.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from .config import StageConfig, read_yaml_mapping, validate_config
from .constants import DEFAULT_DATA_DIR
from .corpus.config import CorpusConfig, SourceConfig
from .demo.config import DemoConfig
from .embed.config import EmbedConfig, ImageEmbedConfig
from .evaluate.config import EvaluateConfig
from .gap_config import GapConfig
from .generate.config import GenerateConfig, NearestConfig
from .index.config import IndexConfig
from .registry import PromotionConfig
from .train.config import TrainConfig
from .world.config import WorldConfig

CLIP_FIELDS = ("model", "pretrained", "init_seed")
CLIP_SECTIONS = ("embed", "embed_images", "test_images", "paired_images")
"""Sections that run the CLIP model; they must all use the same one (set it once under ``clip:``)."""


class ClipChoice(StageConfig):
    """The CLIP model of a run: any open_clip name with a pretrained tag or weights file (null: random init)."""

    model: str = Field(default=EmbedConfig().model, description="open_clip name (`tomcap models clip` lists them)")
    pretrained: str | None = Field(default=None, description="open_clip tag or local weights file")
    init_seed: int = 0


RunnerKind = Literal["threads", "dask"]


class RunnerConfig(StageConfig):
    """Where mapped tasks run. ``dask`` with no ``address`` starts a LocalCluster of ``workers``."""

    kind: RunnerKind = "threads"
    workers: int = Field(default=2, ge=1, description="LocalCluster workers (dask) or threads")
    address: str | None = Field(default=None, description="an existing Dask scheduler, e.g. tcp://10.0.0.5:8786")
    processes: bool = Field(default=True, description="LocalCluster workers as processes (else threads)")


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
    clip: ClipChoice | None = Field(default=None, description="CLIP model for every section in CLIP_SECTIONS")
    test_images: ImageEmbedConfig = Field(default=ImageEmbedConfig(), description="images to caption and score")
    paired_images: ImageEmbedConfig = Field(default=ImageEmbedConfig(),
                                            description="images of the corpus captions (paired oracle only)")
    generate: GenerateConfig = GenerateConfig()
    nearest: NearestConfig = Field(default=NearestConfig(),
                                   description="the nearest_caption baseline (top-1 datastore caption, no model)")
    demo: DemoConfig = DemoConfig()
    runner: RunnerConfig = Field(default=RunnerConfig(), description="where scale-out tasks run (embed.map_rows)")
    promotion: PromotionConfig = Field(default=PromotionConfig(),
                                       description="when a retrained model becomes the champion")

    @model_validator(mode="before")
    @classmethod
    def _spread_clip(cls, data: Any) -> Any:
        return spread_clip(data)

    @model_validator(mode="after")
    def _same_clip(self) -> "PipelineConfig":
        if self.clip is not None:  # a section that names its own model would otherwise win over clip: silently
            for f in sorted(self.clip.model_fields_set & set(CLIP_FIELDS)):
                want = getattr(self.clip, f)
                for s in CLIP_SECTIONS:
                    got = getattr(getattr(self, s), f)
                    if got != want:
                        raise ValueError(f"clip.{f} is {want!r} but {s}.{f} is {got!r}; fix: set {f} once under "
                                         f"'clip:' and remove it from {s}")
        chosen = {s: tuple(getattr(getattr(self, s), f) for f in CLIP_FIELDS) for s in CLIP_SECTIONS}
        if len(set(chosen.values())) > 1:
            raise ValueError(f"sections use different CLIP models {chosen}; fix: set the model once under 'clip:' "
                             "and remove model/pretrained/init_seed from the sections")
        return self

    @model_validator(mode="after")
    def _nearest_like_generate(self) -> "PipelineConfig":
        # The baseline is scored against the same references: it names images as the generation does.
        if self.nearest.annotations is None and self.generate.annotations is not None:
            object.__setattr__(self, "nearest", self.nearest.model_copy(
                update={"annotations": self.generate.annotations}))
        return self

    def with_corpus(self, path: Path | str, name: str | None = None) -> PipelineConfig:
        """This config with one caption file as the whole corpus (an event's file, a datastore to compare)."""
        source = SourceConfig(path=path, name=name)
        return self.model_copy(update={"corpus": self.corpus.model_copy(update={"sources": [source]})})

    def with_clip(self, **fields: Any) -> PipelineConfig:
        """This config with ``fields`` of the CLIP choice (``CLIP_FIELDS``) changed under ``clip:`` and in every
        section of ``CLIP_SECTIONS``: a validated config holds each section's own copy, so changing ``clip``
        alone would change nothing. Evaluate's CLIPScore model is the caller's to set."""
        unknown = set(fields) - set(CLIP_FIELDS)
        if unknown:
            raise ValueError(f"not a CLIP field: {sorted(unknown)}; fix: use one of {list(CLIP_FIELDS)}")
        data = self.model_dump()
        for section in (*CLIP_SECTIONS, "clip"):
            data[section] = {**(data[section] or {}), **fields}
        return type(self).model_validate(data)

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


def _deep_update(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in changes.items():
        out[k] = _deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


_SAME = object()


def _changed(data: Any, default: Any) -> Any:
    """The parts of ``data`` (JSON) that differ from ``default``; ``_SAME`` when nothing does."""
    if isinstance(data, dict) and isinstance(default, dict):
        out = {}
        for k, v in data.items():
            d = _changed(v, default[k]) if k in default else v
            if d is not _SAME:
                out[k] = d
        return out or _SAME
    return _SAME if data == default else data


def spread_clip(data: Any) -> Any:
    """``data`` (a raw config dict) with ``clip:``'s fields copied into every CLIP section that does not set them."""
    if not isinstance(data, dict) or not isinstance(data.get("clip"), dict):
        return data
    clip = data["clip"]
    data = dict(data)
    for section in CLIP_SECTIONS:
        sub = dict(data.get(section) or {})
        for f in CLIP_FIELDS:
            if f in clip:
                sub.setdefault(f, clip[f])
        data[section] = sub
    return data


def overlay(base: PipelineConfig, changes: PipelineConfig | Mapping[str, Any]) -> PipelineConfig:
    """``base`` with every field that ``changes`` sets away from its default (a run form over a config
    file): a field left at its default in ``changes`` keeps ``base``'s value. ``changes`` may be the
    form's raw JSON (every field filled in): it is validated only once merged, so a form that changes
    ``train.steps`` alone is checked against the file's ``warmup_steps``, not the default one."""
    if isinstance(changes, PipelineConfig):
        delta = changes.model_dump(mode="json", exclude_defaults=True)
    else:
        delta = _changed(dict(changes), PipelineConfig().model_dump(mode="json"))
        delta = {} if delta is _SAME else delta
    delta = spread_clip(delta)  # a new clip: reaches every CLIP section, as in a config file
    data = _deep_update(base.model_dump(mode="json"), delta)
    return validate_config(PipelineConfig, data, source="run parameters")


_PATH_KEYS = frozenset({"path", "data_dir", "refs", "images", "checkpoint", "pretrained_path", "gpt2_dir",
                        "annotations", "results", "vocabulary"})
_MAYBE_PATH_KEYS = frozenset({"pretrained", "clip_pretrained"})
"""Keys that hold a tag or a path: made absolute only when the file exists beside the YAML."""


def _resolve_relative(obj, base: Path):
    """Make the values of path-like keys absolute against the YAML's folder (recursively)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            relative = isinstance(v, str) and v and not Path(v).is_absolute()
            if relative and (k in _PATH_KEYS or (k in _MAYBE_PATH_KEYS and (base / v).exists())):
                out[k] = str((base / v).resolve())
            elif k in _PATH_KEYS and isinstance(v, list) and all(isinstance(i, str) for i in v):
                out[k] = [i if Path(i).is_absolute() else str((base / i).resolve()) for i in v]
            else:
                out[k] = _resolve_relative(v, base)
        return out
    if isinstance(obj, list):
        return [_resolve_relative(v, base) for v in obj]
    return obj
