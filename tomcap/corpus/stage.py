"""Corpus stage: caption files -> filtered, deduplicated, sharded Parquet with stable caption ids."""
from __future__ import annotations

import logging
from pathlib import Path

import polars as pl
from tqdm.auto import tqdm

from ..artifacts import ArtifactRef, ArtifactStore, BuildOutput, StageSpec, input_sha256
from ..config import hash_text
from ..constants import FINGERPRINT_CHARS
from ..errors import ConfigError, InputDataError
from .config import CorpusConfig, SourceConfig
from .filters import REASON, REASONS, TEXT, caption_ids, drop_reason, normalized_text
from .readers import IMAGE_ID, RAW, ROW_OK, SPLIT, check_source_file, read_source

log = logging.getLogger(__name__)

SPEC = StageSpec(name="corpus", version="1", modules=("tomcap.corpus",))
SHARD_PATTERN = "captions-{:05d}.parquet"
SHARD_GLOB = "captions-*.parquet"
OUTPUT_COLUMNS = ("caption_id", TEXT, "source", IMAGE_ID, SPLIT)
PARQUET_COMPRESSION = "zstd"


def upstream_fingerprints(config: CorpusConfig) -> dict[str, str]:
    """Content hashes of the source files: a changed file changes the key, a moved one does not."""
    out = {}
    for src in config.sources:
        path = check_source_file(Path(src.path))
        out[f"source:{src.source_name}"] = input_sha256(path)[:FINGERPRINT_CHARS]
    return out


def _sample_seed(seed: int, name: str) -> int:
    return int(hash_text(f"{seed}:{name}", 8), 16)


def _process_source(src: SourceConfig, cfg: CorpusConfig) -> tuple[pl.DataFrame, dict[str, int]]:
    """Read, normalise and filter one source; returns kept rows and counts per reason."""
    fmt, lf = read_source(src)
    lf = lf.with_columns(normalized_text(pl.col(RAW), cfg.filters).alias(TEXT)).drop(RAW)
    lf = lf.with_columns(drop_reason(pl.col(TEXT), cfg.filters).alias(REASON))
    try:
        df = lf.collect(engine="streaming")
    except pl.exceptions.PolarsError as err:
        raise InputDataError(f"cannot parse as {fmt} ({str(err).splitlines()[0]})", path=src.path,
                             fix="check the rows of the file (column count, quoting, encoding) "
                                 "or the source's 'format'") from None
    if ROW_OK in df.columns:
        bad = df.with_row_index("_line", offset=1).filter(~pl.col(ROW_OK))
        if bad.height:
            raise InputDataError(f"line {bad['_line'][0]} has the wrong number of columns ({bad.height} such rows)",
                                 path=src.path,
                                 fix="every row needs exactly the format's columns (caption<TAB>url for cc3m_tsv)")
        df = df.drop(ROW_OK)
    counts = {"rows_in": df.height, "format": fmt}
    reasons = dict(df.group_by(REASON).len().iter_rows())
    counts.update({r: int(reasons.get(r, 0)) for r in REASONS})
    kept = df.filter(pl.col(REASON).is_null()).drop(REASON)
    if cfg.filters.dedupe:
        before = kept.height
        kept = kept.unique(subset=TEXT, keep="first", maintain_order=True)
        counts["duplicate"] = before - kept.height
    if src.max_rows is not None and kept.height > src.max_rows:
        counts["capped"] = kept.height - src.max_rows
        kept = (kept.with_row_index("_i").sample(n=src.max_rows, seed=_sample_seed(cfg.seed, src.source_name))
                .sort("_i").drop("_i"))
    return kept.with_columns(pl.lit(src.source_name).alias("source")), counts


def build_corpus_frame(config: CorpusConfig) -> tuple[pl.DataFrame, dict[str, dict[str, int]]]:
    """The filtered corpus as one frame (columns OUTPUT_COLUMNS) and per-source counts."""
    if not config.sources:
        raise ConfigError("the corpus config has no sources",
                          fix="add 'corpus.sources: [{path: FILE}]' to the config or pass --source FILE")
    frames, per_source = [], {}
    for src in tqdm(config.sources, desc="corpus sources", unit="file", disable=None):
        kept, counts = _process_source(src, config)
        frames.append(kept)
        per_source[src.source_name] = counts
    df = pl.concat(frames, how="vertical")
    if config.filters.dedupe:
        # Cross-source duplicates: the first source that has a caption keeps it.
        first = df.with_row_index("_i").unique(subset=TEXT, keep="first", maintain_order=True)
        dropped = df.with_row_index("_i").join(first.select("_i"), on="_i", how="anti")
        for name, n in dropped.group_by("source").len().iter_rows():
            per_source[name]["duplicate"] = per_source[name].get("duplicate", 0) + int(n)
        df = first.drop("_i")
    for name, counts in per_source.items():
        counts["rows_out"] = int(df.filter(pl.col("source") == name).height)
    df = df.with_columns(caption_ids(df[TEXT])).select(OUTPUT_COLUMNS)
    if df.height == 0:
        total_in = sum(c["rows_in"] for c in per_source.values())
        raise InputDataError(
            f"the corpus is empty after filtering ({total_in} rows read; dropped per source: {per_source})",
            path=config.sources[0].path,
            fix="loosen corpus.filters (min_words/max_words/drop_non_printable) or add sources with captions",
        )
    return df, per_source


def _write_shards(df: pl.DataFrame, out_dir: Path, shard_rows: int) -> list[str]:
    names = []
    for i, start in enumerate(range(0, df.height, shard_rows)):
        name = SHARD_PATTERN.format(i)
        df.slice(start, shard_rows).write_parquet(out_dir / name, compression=PARQUET_COMPRESSION)
        names.append(name)
    return names


def run_corpus(config: CorpusConfig, data_dir: Path | str, *, force: bool = False) -> ArtifactRef:
    """Build (or reuse) the corpus artifact for ``config`` under ``data_dir``."""
    upstream = upstream_fingerprints(config)

    def build(tmp: Path) -> BuildOutput:
        df, per_source = build_corpus_frame(config)
        shards = _write_shards(df, tmp, config.shard_rows)
        rows_in = sum(c["rows_in"] for c in per_source.values())
        return BuildOutput(rows={"rows_in": rows_in, "rows_out": df.height, "per_source": per_source},
                           info={"shards": shards, "columns": list(OUTPUT_COLUMNS)})

    return ArtifactStore(data_dir).build(SPEC, config, upstream, build, force=force)


def scan_corpus(ref: ArtifactRef) -> pl.LazyFrame:
    """Lazy frame over a corpus artifact's shards, in corpus order."""
    shards = ref.manifest().info["shards"]
    return pl.scan_parquet([ref.dir / s for s in shards])


def read_corpus(ref: ArtifactRef) -> pl.DataFrame:
    """The whole corpus (columns caption_id, text, source, image_id, split), in corpus order."""
    return scan_corpus(ref).collect()
