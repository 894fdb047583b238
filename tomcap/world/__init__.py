"""The embedded offline world: procedural scenes with captions and the two small models trained on them.

They play the roles OpenAI CLIP and GPT-2 play for users with network:
``load_clip(WORLD_CLIP_NAME, pretrained=str(WORLD_CLIP_WEIGHTS))`` and
``AutoModelForCausalLM.from_pretrained(WORLD_GPT2_DIR)`` / ``AutoTokenizer.from_pretrained(WORLD_GPT2_DIR)``.
"""
from __future__ import annotations

from ..constants import SHIPPED_MODELS_DIR
from .captions import CaptionAttributes, parse_caption, scene_attributes, scene_captions
from .config import ClipTrainConfig, Gpt2TrainConfig, WorldConfig
from .export import WorldPaths, generate_world, world_paths
from .render import render_batch, render_scene
from .scenes import BACKGROUNDS, COLORS, SHAPES, SIZES, Scene, SceneObject, scene_stream

WORLD_CLIP_NAME = "tomcap-world-clip"
"""open_clip architecture name of the world CLIP (``tomcap/model_configs/tomcap-world-clip.json``)."""
WORLD_CLIP_WEIGHTS = SHIPPED_MODELS_DIR / "tomcap-world-clip.safetensors"
"""Shipped world CLIP weights (fp16 safetensors; loaded into fp32 parameters)."""
WORLD_GPT2_DIR = SHIPPED_MODELS_DIR / "tomcap-world-gpt2"
"""Shipped world GPT-2 folder (config.json, model.safetensors, tokenizer.json, tokenizer_config.json)."""
MODEL_CARD = SHIPPED_MODELS_DIR / "README.md"

__all__ = [
    "BACKGROUNDS", "COLORS", "SHAPES", "SIZES", "CaptionAttributes", "ClipTrainConfig", "Gpt2TrainConfig",
    "MODEL_CARD", "Scene", "SceneObject", "WORLD_CLIP_NAME", "WORLD_CLIP_WEIGHTS", "WORLD_GPT2_DIR", "WorldConfig",
    "WorldPaths", "generate_world", "parse_caption", "render_batch", "render_scene", "scene_attributes",
    "scene_captions", "scene_stream", "world_paths",
]
