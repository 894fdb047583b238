"""TOMCap adaptor: frozen GPT-2 + cross-attention + rsLoRA, and its checkpoints."""
from .adaptor import IGNORE_INDEX, ParamCounts, TomcapAdaptor, build_adaptor, load_decoder, load_tokenizer
from .checkpoint import (Checkpoint, load_adaptor, load_optimizer_state, load_weights, read_checkpoint,
                         save_checkpoint)
from .config import AdaptorConfig

__all__ = [
    "AdaptorConfig", "Checkpoint", "IGNORE_INDEX", "ParamCounts", "TomcapAdaptor", "build_adaptor", "load_adaptor",
    "load_decoder", "load_optimizer_state", "load_tokenizer", "load_weights", "read_checkpoint", "save_checkpoint",
]
