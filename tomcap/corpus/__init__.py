"""Corpus stage: read caption files of many formats, filter, dedupe, write sharded Parquet."""
from .._lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "CorpusConfig": ".config", "FilterConfig": ".config", "SourceConfig": ".config", "caption_id": ".filters",
    "detect_format": ".readers", "SPEC": ".stage", "build_corpus_frame": ".stage", "read_corpus": ".stage",
    "run_corpus": ".stage", "scan_corpus": ".stage", "upstream_fingerprints": ".stage",
})
