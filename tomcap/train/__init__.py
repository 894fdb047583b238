"""Text-only TOMCap training: batches (gap correction, noise, retrieval), the loop, the stage."""
from .._lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "TrainConfig": ".config", **{n: ".data" for n in ("ArrayRetrieval", "Batch", "BatchBuilder", "TrainData",
                                                       "add_noise", "exclusion_rows", "group_codes")},
    **{n: ".loop" for n in ("TrainResult", "batch_loss", "evaluate_loss", "get_lr", "train")},
})
