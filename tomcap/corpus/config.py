"""Typed config of the corpus stage."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from ..config import StageConfig

CorpusFormat = Literal["auto", "coco", "karpathy", "nocaps", "cc3m_tsv", "csv", "jsonl", "parquet", "text"]
FORMATS: tuple[str, ...] = CorpusFormat.__args__  # type: ignore[attr-defined]


class SourceConfig(StageConfig):
    """One caption file. ``format: auto`` detects it from the suffix and, for JSON, the shape."""

    path: Path
    name: str | None = Field(default=None, description="tag written to the 'source' column; default: file stem")
    format: CorpusFormat = "auto"
    caption_column: str = Field(default="caption", description="caption column of csv/jsonl/parquet files")
    image_id_column: str | None = Field(default="image_id",
                                        description="image id column of csv/jsonl/parquet; null if absent")
    split: str | None = Field(default=None, description="split tag for rows whose file carries none")
    max_rows: int | None = Field(default=None, ge=1,
                                 description="keep at most this many rows (seeded sample) after filtering")

    @property
    def source_name(self) -> str:
        return self.name or self.path.stem


class FilterConfig(StageConfig):
    """Caption filters. Defaults keep every real caption of COCO/Flickr/NoCaps/CC3M that has 3-60 words."""

    unicode_form: Literal["NFKC", "NFC", "none"] = "NFKC"
    lowercase: bool = False
    drop_non_printable: bool = True
    min_words: int = Field(default=3, ge=0)
    max_words: int = Field(default=60, ge=1)
    dedupe: bool = True

    @model_validator(mode="after")
    def _check_bounds(self) -> "FilterConfig":
        if self.max_words < self.min_words:
            raise ValueError(
                f"max_words ({self.max_words}) must be >= min_words ({self.min_words}); "
                "fix: raise max_words or lower min_words"
            )
        return self


def _path_names(paths: list[Path]) -> list[str]:
    """Shortest ``parent/.../stem`` tails that tell the paths apart."""
    for depth in range(1, max(len(p.parts) for p in paths)):
        names = ["/".join((*p.parent.parts[-depth:], p.stem)) for p in paths]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


class CorpusConfig(StageConfig):
    """Sources, filters and output sharding of the corpus stage."""

    sources: list[SourceConfig] = Field(default_factory=list)
    filters: FilterConfig = FilterConfig()
    shard_rows: int = Field(default=1_000_000, ge=1, description="rows per Parquet shard")
    seed: int = Field(default=0, description="seed of per-source sampling (max_rows)")

    @model_validator(mode="after")
    def _unique_names(self) -> "CorpusConfig":
        names = [s.source_name for s in self.sources]
        clash = {n for n in names if names.count(n) > 1}
        unnamed = [i for i, s in enumerate(self.sources) if s.name is None and s.source_name in clash]
        paths = [Path(self.sources[i].path).resolve() for i in unnamed]
        twice = sorted({str(p) for p in paths if paths.count(p) > 1})
        if twice:
            raise ValueError(f"the same caption file is given twice as a source: {twice}; fix: give each file once "
                             "(or set a different 'name' on each in the config)")
        if unnamed:
            # Files of one stem in different folders are named after the shortest distinguishing path tail.
            renamed = list(self.sources)
            for i, name in zip(unnamed, _path_names(paths)):
                renamed[i] = self.sources[i].model_copy(update={"name": name})
            object.__setattr__(self, "sources", renamed)  # frozen model: set once, during validation
            names = [s.source_name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique, repeated: {dupes}; fix: set a different 'name' on those "
                             "sources")
        return self

    def key_dict(self) -> dict[str, Any]:
        """Key fields: the file *contents* enter as upstream fingerprints, so paths are left out
        (moving a corpus file does not invalidate its artifacts)."""
        d = self.model_dump(mode="json")
        for s, src in zip(d["sources"], self.sources):
            s.pop("path")
            s["name"] = src.source_name
        return d
