"""FAISS datastore: automatic index choice, build with measured recall/QPS, and the search API."""
from .config import IndexConfig
from .datastore import NO_ROW, Datastore, SearchResult
from .select import IndexChoice, choose_index
from .stage import SPEC, run_index, upstream_fingerprints

__all__ = ["Datastore", "IndexChoice", "IndexConfig", "NO_ROW", "SPEC", "SearchResult", "choose_index", "run_index",
           "upstream_fingerprints"]
