"""Text-only TOMCap training: batches (gap correction, noise, retrieval), the loop, the stage."""
from .config import TrainConfig
from .data import ArrayRetrieval, Batch, BatchBuilder, TrainData, add_noise, exclusion_rows, group_codes
from .loop import TrainResult, batch_loss, evaluate_loss, get_lr, train

__all__ = [
    "ArrayRetrieval", "Batch", "BatchBuilder", "TrainConfig", "TrainData", "TrainResult", "add_noise", "batch_loss",
    "evaluate_loss", "exclusion_rows", "get_lr", "group_codes", "train",
]
