"""TOMCap adaptor: frozen GPT-2 + cross-attention + rsLoRA, and its checkpoints."""
from .._lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "AdaptorConfig": ".config", "EntityConfig": ".config",
    **{n: ".entities" for n in ("EntityHead", "EntityVocabulary")},
    **{n: ".adaptor" for n in ("IGNORE_INDEX", "ParamCounts", "TomcapAdaptor", "build_adaptor", "load_decoder",
                               "load_tokenizer")},
    **{n: ".checkpoint" for n in ("Checkpoint", "load_adaptor", "load_optimizer_state", "load_weights",
                                  "read_checkpoint", "save_checkpoint")},
})
