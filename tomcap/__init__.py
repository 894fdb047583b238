"""tomcap: text-only trained image captioning (TOMCap) as a pipeline of typed stages.

The library never imports Prefect; ``tasks/`` and ``flows/`` wrap it.
"""
from .artifacts import ArtifactRef, ArtifactStore, Manifest, StageSpec, load_ref, read_manifest
from .errors import ArtifactError, ConfigError, InputDataError, TomcapError

__version__ = "0.1.0"

__all__ = [
    "ArtifactError",
    "ArtifactRef",
    "ArtifactStore",
    "ConfigError",
    "InputDataError",
    "Manifest",
    "StageSpec",
    "TomcapError",
    "__version__",
    "load_ref",
    "read_manifest",
]
