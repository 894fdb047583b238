"""Training-side view of a FAISS datastore (:class:`tomcap.index.Datastore`): search rows, exclusions."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..artifacts import ArtifactRef
from ..errors import InputDataError
from .data import NO_GROUP, Exclusions


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


def datastore_retrieval(index: ArtifactRef, emb: Any, df: Any) -> tuple[DatastoreRetrieval, Exclusions]:
    """(retrieval over the index artifact, rows each corpus caption must not retrieve).

    ``emb``: the text EmbeddingSet of the training corpus; the datastore must hold embeddings of the
    same CLIP model. Exclusions: the caption's own row (if the datastore has it) and every row of
    its image id, as group codes shared by datastore and corpus (columnar joins, no per-id Python objects:
    the datastore may hold millions of captions)."""
    from ..index import Datastore

    store = Datastore.open(index)
    if store.dim != emb.dim or store.model_fingerprint != emb.model_fingerprint:
        raise InputDataError(f"the datastore holds dim-{store.dim} embeddings of CLIP model {store.model_fingerprint}, "
                             f"the training captions dim-{emb.dim} embeddings of {emb.model_fingerprint}",
                             path=index.dir, fix="build the index from text embeddings of the same CLIP model")
    return DatastoreRetrieval(store), exclusions(store.meta, df)


def exclusions(store_meta: Any, df: Any) -> Exclusions:
    """Rows of a datastore (``store_meta``: caption_id, image_id per row) that each corpus caption (``df``)
    must not retrieve: its own row and every row of its image id."""
    import polars as pl

    from ..index import NO_ROW

    meta = store_meta.select("caption_id", "image_id").with_row_index("_row")
    own = (df.select("caption_id").with_row_index("_q")
           .join(meta.select("caption_id", "_row").unique("caption_id", keep="last"), on="caption_id", how="left")
           .sort("_q")["_row"].cast(pl.Int64).fill_null(NO_ROW).to_numpy())
    ids = pl.concat([meta["image_id"].cast(pl.String), df["image_id"].cast(pl.String)])
    codes = ids.rank("dense").cast(pl.Int64).fill_null(NO_GROUP).to_numpy()
    return Exclusions(codes[:meta.height], codes[meta.height:], own)
