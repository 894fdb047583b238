"""Prefect events tomcap emits (the 'retrain' deployment's trigger listens for them)."""
from __future__ import annotations

from pathlib import Path

from prefect.events import emit_event

from tomcap.constants import CORPUS_UPDATED_EVENT, FINGERPRINT_CHARS


def emit_corpus_updated(path: Path, fingerprint: str) -> None:
    """Announce that a corpus file landed or changed; the payload carries its path."""
    emit_event(
        event=CORPUS_UPDATED_EVENT,
        resource={"prefect.resource.id": f"tomcap.corpus.{fingerprint[:FINGERPRINT_CHARS]}",
                  "prefect.resource.name": Path(path).name},
        payload={"path": str(Path(path).resolve()), "fingerprint": fingerprint},
    )
