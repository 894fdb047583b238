"""The pipeline, declared once: each stage's config section, its inputs, and when an input is used.

``run_until`` runs the graph without Prefect (the CLI); ``flows/`` walks the same declaration with the
Prefect tasks of ``tasks/stages.py`` (it passes ``call``). No stage order or condition is written
anywhere else. Adding a stage = its module (``SPEC``, ``upstream_fingerprints``, ``run_<stage>``), one
``Stage`` below and its task wrapper.

Stage modules are named, not imported, so that declaring the graph costs no torch import.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .artifacts import ArtifactRef, load_ref
from .errors import ConfigError

if TYPE_CHECKING:  # annotations only: settings imports every stage config
    from .config import StageConfig
    from .settings import PipelineConfig

Condition = Callable[["PipelineConfig"], bool]


def always(cfg: PipelineConfig) -> bool:
    return True


def train_uses_gap(cfg: PipelineConfig) -> bool:
    """Training needs the gap statistics for the correction; for the noise alone it uses their measured
    scale when unpaired images are configured to estimate it, else the fixed ``train.noise_std``."""
    return cfg.train.gap_correction or (cfg.train.noise and cfg.embed_images.images is not None)


def train_uses_index(cfg: PipelineConfig) -> bool:
    return cfg.train.uses_retrieval


def train_is_paired(cfg: PipelineConfig) -> bool:
    """The paired-training oracle trains on real image embeddings of the corpus images."""
    return cfg.train.query == "image"


def evaluate_reads_images(cfg: PipelineConfig) -> bool:
    """CLIP metrics read the test-image embeddings when evaluate's CLIP is the test images' CLIP (the stage
    checks the model fingerprints again and encodes the images itself where they differ)."""
    ev, im = cfg.evaluate, cfg.test_images
    return (ev.clip_model is not None and im.images is not None and ev.clip_model == im.model
            and ev.clip_pretrained == im.pretrained and ev.clip_init_seed == im.init_seed)


@dataclass(frozen=True)
class Input:
    """Keyword argument ``keyword`` of the run function, taken from the artifact of stage ``stage``."""

    keyword: str
    stage: str
    when: Condition = always
    hint: str = ""
    """Another way out, for error messages, when this input cannot be built."""


@dataclass(frozen=True)
class Stage:
    """One node: ``module.run(config.<section>, data_dir, **inputs)`` returns its artifact ref."""

    name: str
    module: str
    run: str
    section: str
    inputs: tuple[Input, ...] = ()
    needs_field: str | None = None
    """A field of the section that must be set for the stage to run (e.g. an image folder)."""
    artifact: str | None = None
    """Stage name in the artifact store, where it differs (the three image sets are 'embed_images')."""

    @property
    def artifact_stage(self) -> str:
        return self.artifact or self.name

    def function(self) -> Callable[..., ArtifactRef]:
        return getattr(importlib.import_module(self.module), self.run)

    def validate(self, cfg: PipelineConfig) -> None:
        """The stage module's own check of its config (``validate(config)``, e.g. that the CLIP model
        exists), so that a bad later stage is refused before earlier ones spend time."""
        check = getattr(importlib.import_module(self.module), "validate", None)
        if check is not None:
            check(self.config(cfg))

    def config(self, cfg: PipelineConfig) -> StageConfig:
        return getattr(cfg, self.section)

    def active_inputs(self, cfg: PipelineConfig) -> tuple[Input, ...]:
        return tuple(i for i in self.inputs if i.when(cfg))

    def missing(self, cfg: PipelineConfig) -> str | None:
        """The config field this stage needs and lacks, if any."""
        if self.needs_field is not None and getattr(self.config(cfg), self.needs_field) is None:
            return f"{self.section}.{self.needs_field}"
        return None


_IMAGES = "tomcap.embed.image_stage"

STAGES: tuple[Stage, ...] = (
    Stage("corpus", "tomcap.corpus.stage", "run_corpus", "corpus"),
    Stage("embed", "tomcap.embed.stage", "run_embed", "embed", (Input("corpus", "corpus"),)),
    Stage("embed_images", _IMAGES, "run_embed_images", "embed_images", needs_field="images"),
    Stage("gap", "tomcap.gap", "run_gap", "gap", (Input("text", "embed"), Input("images", "embed_images"))),
    Stage("index", "tomcap.index.stage", "run_index", "index", (Input("embed", "embed"), Input("corpus", "corpus"))),
    Stage("paired_images", _IMAGES, "run_embed_images", "paired_images", needs_field="images",
          artifact="embed_images"),
    Stage("train", "tomcap.train.stage", "run_train", "train",
          (Input("corpus", "corpus"), Input("embed", "embed"),
           Input("gap", "gap", train_uses_gap, "or set train.gap_correction: false"),
           Input("index", "index", train_uses_index),
           Input("image_embed", "paired_images", train_is_paired, "or set train.query: text"))),
    Stage("test_images", _IMAGES, "run_embed_images", "test_images", needs_field="images",
          artifact="embed_images"),
    Stage("generate", "tomcap.generate.stage", "run_generate", "generate",
          (Input("train", "train"), Input("index", "index"), Input("images", "test_images"))),
    Stage("evaluate", "tomcap.evaluate.stage", "run_evaluate", "evaluate",
          (Input("generate", "generate"), Input("images", "test_images", evaluate_reads_images))),
    # The honest floor of a retrieval-augmented captioner: each test image's nearest datastore caption, scored.
    Stage("nearest_caption", "tomcap.generate.nearest", "run_nearest", "nearest",
          (Input("index", "index"), Input("images", "test_images"))),
    Stage("evaluate_nearest", "tomcap.evaluate.stage", "run_evaluate", "evaluate",
          (Input("generate", "nearest_caption"), Input("images", "test_images", evaluate_reads_images)),
          artifact="evaluate"),
)
"""In an order where every stage comes after its inputs."""

BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
STAGE_NAMES = tuple(BY_NAME)


def stage(name: str) -> Stage:
    if name not in BY_NAME:
        raise ConfigError(f"unknown stage '{name}'", fix=f"use one of {', '.join(STAGE_NAMES)}")
    return BY_NAME[name]


def load_given(name: str, folder: Path | str) -> ArtifactRef:
    """An artifact folder a user passes for stage ``name`` (checked against its manifest and stage)."""
    return load_ref(Path(folder), stage=stage(name).artifact_stage)


def plan(cfg: PipelineConfig, target: str, given: Mapping[str, Any] = ()) -> list[Stage]:
    """The stages that must run, in order, to produce ``target``; stages in ``given`` (and what only
    they need) are not run. A stage that lacks a config field it needs is refused here, before any
    stage runs, naming the input of ``target`` that could be given instead."""
    order: list[Stage] = []
    seen: set[str] = set()

    def visit(name: str, via: tuple[Input, ...]) -> None:
        if name in seen or name in given:
            return
        seen.add(name)
        st = stage(name)
        field = st.missing(cfg)
        if field is not None:
            _refuse(st, field, target, via)
        for inp in st.active_inputs(cfg):
            visit(inp.stage, via + (inp,))
        order.append(st)

    visit(target, ())
    return order


def _refuse(st: Stage, field: str, target: str, via: tuple[Input, ...]) -> None:
    chain = " <- ".join([st.name] + [i.stage for i in reversed(via[:-1])] + [target])
    fix = f"set {field} in the config"
    if via:
        fix += f", or pass the '{via[0].stage}' artifact folder (--{via[0].keyword.replace('_', '-')} DIR)"
        fix += "".join(f", {i.hint}" for i in via if i.hint)
    raise ConfigError(f"{field} is not set, and the '{st.name}' stage needs it ({chain})", fix=fix)


StageCall = Callable[[Stage, "PipelineConfig", str, dict[str, Any], bool], "ArtifactRef"]
"""How one stage is run: ``call(stage, config, data_dir, inputs, force)`` -> its artifact ref."""


def call_library(st: Stage, cfg: PipelineConfig, data_dir: str, inputs: dict[str, Any], force: bool) -> ArtifactRef:
    """Run the stage's library function in this process."""
    return st.function()(st.config(cfg), data_dir, **inputs, force=force)


def run_until(cfg: PipelineConfig, data_dir: Path | str, target: str, given: Mapping[str, ArtifactRef] | None = None,
              *, call: StageCall = call_library, force: frozenset[str] | set[str] = frozenset(),
              extra: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, ArtifactRef]:
    """Run (or reuse from cache) every stage ``target`` needs; returns the refs by stage name, ``given``
    included. ``force``: stages to rebuild; ``extra``: more keyword inputs of a stage (e.g. a CLI-only one).
    Every stage's config is checked (``plan``) before the first one runs."""
    refs: dict[str, ArtifactRef] = dict(given or {})
    steps = plan(cfg, target, refs)
    for st in steps:
        st.validate(cfg)
    dd = str(Path(data_dir))
    for st in steps:
        inputs = {i.keyword: refs[i.stage] for i in st.active_inputs(cfg)}
        inputs.update((extra or {}).get(st.name, {}))
        refs[st.name] = call(st, cfg, dd, inputs, st.name in force)
    return refs


def reusable(before: PipelineConfig, refs: Mapping[str, ArtifactRef], after: PipelineConfig) -> dict[str, ArtifactRef]:
    """The refs of ``before``'s run that ``after`` would compute identically: same section config and
    the same (reusable) inputs. The demo uses it to run shared stages once across its variants."""
    out: dict[str, ArtifactRef] = {}
    for st in STAGES:
        if st.name not in refs or st.config(before) != st.config(after):
            continue
        ins_before = {(i.keyword, i.stage) for i in st.active_inputs(before)}
        ins_after = {(i.keyword, i.stage) for i in st.active_inputs(after)}
        if ins_before == ins_after and all(s in out for _, s in ins_after):
            out[st.name] = refs[st.name]
    return out
