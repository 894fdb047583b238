"""FAISS datastore: automatic index choice, build with measured recall/QPS, and the search API."""
from .._lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "IndexConfig": ".config", "NO_ROW": ".datastore", "Datastore": ".datastore", "SearchResult": ".datastore",
    "IndexChoice": ".select", "choose_index": ".select", "SPEC": ".stage", "run_index": ".stage",
    "upstream_fingerprints": ".stage",
})
