"""Training-side view of a FAISS datastore (:class:`tomcap.index.Datastore`): search rows, exclusions."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..artifacts import ArtifactRef
from ..errors import InputDataError


@dataclass
class DatastoreRetrieval:
    """Adapts a Datastore to :class:`tomcap.train.data.RetrievalSource`."""

    store: Any  # tomcap.index.Datastore

    @property
    def dim(self) -> int:
        return self.store.dim

    def search(self, queries: np.ndarray, k: int, exclude_rows: list[np.ndarray]) -> np.ndarray:
        from ..index import NO_ROW

        rows = self.store.search(queries, k, exclude_rows).rows
        if (rows == NO_ROW).any():
            raise InputDataError(f"the datastore has fewer than k={k} captions left after excluding each query's image",
                                 path=self.store.ref.dir, fix="lower train.model.k or use a larger datastore")
        return rows

    def embeddings(self, rows: np.ndarray) -> np.ndarray:
        return self.store.embeddings(rows)

    def texts(self, rows: np.ndarray) -> list[str]:
        return self.store.texts(np.asarray(rows).ravel())


def datastore_retrieval(index: ArtifactRef, emb: Any, df: Any) -> tuple[DatastoreRetrieval, list[np.ndarray]]:
    """(retrieval over the index artifact, rows each corpus caption must not retrieve).

    ``emb``: the text EmbeddingSet of the training corpus; the datastore must hold embeddings of the
    same CLIP model. Exclusions: the caption's own row (if the datastore has it) and every row of
    its image id."""
    from ..index import Datastore

    store = Datastore.open(index)
    if store.dim != emb.dim or store.model_fingerprint != emb.model_fingerprint:
        raise InputDataError(f"the datastore holds dim-{store.dim} embeddings of CLIP model {store.model_fingerprint}, "
                             f"the training captions dim-{emb.dim} embeddings of {emb.model_fingerprint}",
                             path=index.dir, fix="build the index from text embeddings of the same CLIP model")
    own = store.rows_for_caption_ids(df["caption_id"].to_list())
    same_image = store.rows_for_image_ids(df["image_id"].to_list())
    exclude = [np.union1d(s, [o]).astype(np.int64) if o >= 0 else s for s, o in zip(same_image, own.tolist())]
    return DatastoreRetrieval(store), exclude
