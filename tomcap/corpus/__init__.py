"""Corpus stage: read caption files of many formats, filter, dedupe, write sharded Parquet."""
from .config import CorpusConfig, FilterConfig, SourceConfig
from .filters import caption_id
from .readers import detect_format
from .stage import SPEC, build_corpus_frame, read_corpus, run_corpus, scan_corpus, upstream_fingerprints

__all__ = [
    "SPEC",
    "CorpusConfig",
    "FilterConfig",
    "SourceConfig",
    "build_corpus_frame",
    "caption_id",
    "detect_format",
    "read_corpus",
    "run_corpus",
    "scan_corpus",
    "upstream_fingerprints",
]
