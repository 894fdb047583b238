"""The TOMCap adaptor: a frozen Hugging Face GPT-2 with cross-attention and rsLoRA.

Trainable parts: every block's cross-attention (+ its ``ln_cross_attn``), a linear projection of
CLIP embeddings to the decoder width, two learned role vectors (query vs retrieved caption), a
learned null condition (for classifier-free guidance) and rank-stabilised LoRA on the
*self*-attention projections. Everything else of GPT-2 stays frozen.

Cross-attention keys/values ("condition states") are ``[query, retrieved_1..K]``: CLIP embeddings
(B, 1+K, D_clip) projected to (B, 1+K, d_model). The prompt is SmallCap's template with the K
retrieved captions; the unconditional prompt (and condition) drops them.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .config import AdaptorConfig
from .entities import EntityHead, hint_texts

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
"""Label value cross-entropy skips (prompt and padding positions)."""
ROLE_QUERY, ROLE_RETRIEVED = 0, 1
PROJ_INIT_STD = 0.02
"""Init std of the role and null vectors, GPT-2's own initializer range."""
_CROSS_PATTERNS = ("crossattention", "ln_cross_attn")
ENTITY_PREFIX = "entities."
"""Name prefix of the entity head's tensors in a checkpoint's weights file."""


def lora_target_regex(targets: tuple[str, ...]) -> str:
    """Regex (full match) of GPT-2 *self*-attention modules only: ``transformer.h.<i>.attn.<target>``."""
    return r".*\.h\.\d+\.attn\.(" + "|".join(re.escape(t) for t in targets) + r")"


def hub_load_kwargs(source: str) -> dict[str, Any]:
    """``from_pretrained`` keywords for a hub name: cache-only when offline and cached; offline and not
    cached fails here at once, naming the weights and the fix (a local folder is passed through)."""
    from pathlib import Path

    from ..hub import cache_location, cached_file, hub_endpoint, hub_reachable

    if Path(source).is_dir() or Path(source).is_absolute() or source.startswith((".", "~")) or hub_reachable():
        return {}  # a local folder (a missing one is reported by from_pretrained's OSError below)
    try:
        if cached_file(source, ("config.json",)):
            return {"local_files_only": True}
    except ValueError:  # not a valid hub id: a relative folder that does not exist
        return {}
    raise ConfigError(f"GPT-2 weights '{source}' are not in the local Hugging Face cache ({cache_location()}) and "
                      f"{hub_endpoint()} is unreachable (offline)",
                      fix="set train.model.gpt2_dir to a local GPT-2 folder (config.json, model.safetensors, tokenizer "
                          "files: save_pretrained on a machine with network), or fill HF_HOME's cache and copy it")


def load_tokenizer(source: str) -> Any:
    """The decoder's tokenizer; pad falls back to eos (GPT-2 has no pad token)."""
    from transformers import AutoTokenizer

    kwargs = hub_load_kwargs(source)
    try:
        tok = AutoTokenizer.from_pretrained(source, **kwargs)
    except OSError as err:
        raise ConfigError(f"cannot load the GPT-2 tokenizer '{source}' ({str(err).splitlines()[0]})",
                          fix="set model.gpt2_dir to a folder with tokenizer files "
                              "(e.g. data/models/tomcap-world-gpt2) "
                              "or model.gpt2 to a cached Hugging Face name") from None
    if tok.eos_token_id is None:
        raise ConfigError(f"the tokenizer of '{source}' has no eos token", fix="use a GPT-2 style tokenizer with eos")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


DROPOUT_FIELDS = ("resid_pdrop", "embd_pdrop", "attn_pdrop")
"""GPT-2 config fields that ``AdaptorConfig.decoder_dropout`` overrides."""


def load_decoder(source: str, dropout: float | None = None) -> nn.Module:
    """GPT-2 LM with (freshly initialised) cross-attention in every block; ``dropout`` overrides
    GPT-2's own residual/embedding/attention dropout (None keeps the checkpoint's)."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    # The load report lists the new cross-attention weights as missing: expected, so keep it quiet.
    kwargs = hub_load_kwargs(source)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        overrides = {} if dropout is None else {f: dropout for f in DROPOUT_FIELDS}
        return AutoModelForCausalLM.from_pretrained(source, add_cross_attention=True, **overrides, **kwargs)
    except OSError as err:
        raise ConfigError(f"cannot load the GPT-2 decoder '{source}' ({str(err).splitlines()[0]})",
                          fix="set model.gpt2_dir to a local GPT-2 folder "
                              "or model.gpt2 to a cached Hugging Face name") from None
    finally:
        hf_logging.set_verbosity(verbosity)


def shrink_cross_attention(decoder: nn.Module, factor: int) -> None:
    """Give every block's cross-attention an inner width of d_model / factor (SmallCap's reduced
    cross-attention): new q/kv/out projections, same heads, narrower head_dim. In place; the new
    weights are freshly initialised (Conv1D's normal(0.02)) from the current torch RNG."""
    from transformers.pytorch_utils import Conv1D

    for block in decoder.transformer.h:
        att = block.crossattention
        width = att.embed_dim // factor
        if width * factor != att.embed_dim or width % att.num_heads:
            raise ConfigError(f"cross_attention_reduce={factor} does not divide d_model={att.embed_dim} into "
                              f"{att.num_heads} heads",
                              fix="pick a factor such that d_model / factor is a multiple of n_head")
        att.head_dim, att.split_size = width // att.num_heads, width
        att.scaling = att.head_dim ** -0.5 if att.scale_attn_weights else 1.0
        if att.scale_attn_by_inverse_layer_idx:
            att.scaling /= float(att.layer_idx + 1)
        att.q_attn = Conv1D(width, att.embed_dim)
        att.c_attn = Conv1D(2 * width, att.embed_dim)
        att.c_proj = Conv1D(att.embed_dim, width)


def condition_mapper(clip_dim: int, out: int, hidden: int) -> nn.Module:
    """CLIP embedding -> concatenated condition states. The decoder's MLPs are frozen, so with a linear map the
    only trainable non-linearity between a CLIP embedding and the words is cross-attention's softmax; an
    object's colour-and-shape conjunction is not linear in the embedding. ``hidden`` > 0 adds ClipCap's MLP."""
    if hidden == 0:
        return nn.Linear(clip_dim, out)
    return nn.Sequential(nn.Linear(clip_dim, hidden), nn.Tanh(), nn.Linear(hidden, out))


@dataclass(frozen=True)
class ParamCounts:
    trainable: int
    total: int

    @property
    def share(self) -> float:
        return self.trainable / max(1, self.total)


class TomcapAdaptor(nn.Module):
    """GPT-2 + cross-attention + rsLoRA. ``config.clip_dim`` must be set (resolved)."""

    def __init__(self, config: AdaptorConfig, decoder: nn.Module | None = None, tokenizer: Any = None):
        super().__init__()
        if config.clip_dim is None:
            raise ConfigError("model.clip_dim is not resolved",
                              fix="set model.clip_dim or build through the train stage")
        from peft import LoraConfig, inject_adapter_in_model

        self.config = config
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(config.decoder_source)
        decoder = decoder if decoder is not None else load_decoder(config.decoder_source, config.decoder_dropout)
        if not getattr(decoder.config, "add_cross_attention", False):
            raise ConfigError("the decoder has no cross-attention", fix="load it with add_cross_attention=True")
        if config.cross_attention_reduce > 1:
            shrink_cross_attention(decoder, config.cross_attention_reduce)
        for p in decoder.parameters():
            p.requires_grad_(False)
        lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=lora_target_regex(config.lora_targets), use_rslora=True,
                          fan_in_fan_out=True, bias="none")
        self.decoder = inject_adapter_in_model(lora, decoder)
        for name, p in self.decoder.named_parameters():
            # inject_adapter_in_model leaves LoRA trainable; cross-attention is trained in full.
            p.requires_grad_("lora_" in name or any(c in name for c in _CROSS_PATTERNS))
        d_model = self.d_model
        self.proj = condition_mapper(config.clip_dim, d_model * config.condition_tokens, config.mapper_hidden)
        self.role = nn.Parameter(torch.randn(2, d_model) * PROJ_INIT_STD)
        self.null = nn.Parameter(torch.randn(1, d_model) * PROJ_INIT_STD)
        self.entities = self._entity_head(config)
        self.train()  # from_pretrained returns eval mode; keep every submodule's mode consistent
        counts = self.param_counts()
        log.info("adaptor: %d trainable / %d total parameters (%.2f%%)", counts.trainable, counts.total,
                 100 * counts.share)

    @staticmethod
    def _entity_head(config: AdaptorConfig) -> EntityHead | None:
        """The frozen entity head (trained before the adaptor, by the train stage), or None."""
        ents = config.entities
        if ents is None:
            return None
        if not ents.names:
            raise ConfigError("model.entities.names is empty (the vocabulary was not read)",
                              fix="train through the train stage, which fills them in from entities.vocabulary")
        head = EntityHead(config.clip_dim, len(ents.names), ents.hidden, ents.count_hidden, ents.max_entities)
        for p in head.parameters():
            p.requires_grad_(False)
        return head

    def entity_tensors(self) -> dict[str, Tensor]:
        """The entity head's weights and table by name (saved beside the trainable weights); {} without one."""
        if self.entities is None:
            return {}
        return {f"{ENTITY_PREFIX}{k}": v for k, v in self.entities.state_dict().items()}

    def choose_entities(self, query: Any) -> list[list[int]] | None:
        """The entity head's entities per row of query embeddings (B, D_clip), most probable first; None
        without entities."""
        ents = self.config.entities
        if self.entities is None or ents is None:
            return None
        return self.entities.predict(query, ents.threshold, ents.max_entities, ents.count_rule)

    def entity_hints(self, query: Any, given: list[list[int]] | None = None) -> tuple[list[str] | None, Any]:
        """(prompt lines or None, (B, max_entities, D_clip) cross-attention inputs or None) of query embeddings
        (B, D_clip): what the entity head predicts, as the config routes it. (None, None) without entities.
        ``given``: entity indices per row to use instead (training on caption hints); rows given [] are predicted."""
        ents = self.config.entities
        if self.entities is None or ents is None:
            return None, None
        if given is None:
            chosen = self.choose_entities(query)
        else:  # the head runs on the rows without caption hints only (most batches: none)
            if len(given) != len(query):
                raise ValueError(f"entity_hints: {len(given)} given rows for {len(query)} queries")
            need = [i for i, g in enumerate(given) if not g]
            predicted = iter(self.choose_entities(query[need]) if need else ())
            chosen = [g or next(predicted) for g in given]
        lines = hint_texts(ents.names, chosen) if ents.prompt else None
        states = self.entities.states(chosen, ents.max_entities) if ents.cross else None
        return lines, states

    # -- sizes and ids ---------------------------------------------------------------------------
    @property
    def d_model(self) -> int:
        return int(self.decoder.config.n_embd)

    @property
    def max_length(self) -> int:
        n_pos = int(self.decoder.config.n_positions)
        return min(self.config.max_length or n_pos, n_pos)

    @property
    def eos_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    def decode(self, ids: list[int]) -> str:
        """Caption text of generated ids (stops at eos, strips spaces)."""
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def param_counts(self) -> ParamCounts:
        params = list(self.parameters())
        return ParamCounts(trainable=sum(p.numel() for p in params if p.requires_grad),
                           total=sum(p.numel() for p in params))

    def trainable_named_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    # -- prompts ---------------------------------------------------------------------------------
    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_text(self, retrieved_texts: list[str] | None) -> str:
        """SmallCap template; ``None`` or [] gives the unconditional prompt (suffix only)."""
        c = self.config
        if not retrieved_texts:
            return c.prompt_suffix
        caps = " ".join(t.strip().rstrip(c.prompt_separator).strip() + c.prompt_separator for t in retrieved_texts)
        return f"{c.prompt_prefix} {caps} {c.prompt_suffix}"

    def prompt_ids(self, retrieved_texts: list[str] | None, budget: int | None = None) -> list[int]:
        """``[eos] + template ids``. With ``budget``, retrieved captions are dropped from the end
        until the prompt fits in ``budget`` tokens (the unconditional prompt always stays)."""
        texts = list(retrieved_texts or [])
        while True:
            ids = [self.eos_id] + self._ids(self.prompt_text(texts))
            if budget is None or len(ids) <= budget or not texts:
                return ids
            texts.pop()

    def target_ids(self, caption: str) -> list[int]:
        """Caption tokens as they follow the prompt (leading space, GPT-2 style) + eos."""
        return self._ids(" " + caption.strip()) + [self.eos_id]

    def example_ids(self, retrieved_texts: list[str] | None, caption: str) -> tuple[list[int], list[int]]:
        """(input ids, labels) of one training example; labels are IGNORE_INDEX on the prompt.

        The sequence fits ``max_length``: retrieved captions go first, then the caption's tail."""
        target = self.target_ids(caption)[: self.max_length - 2]
        prompt = self.prompt_ids(retrieved_texts, budget=self.max_length - len(target))
        target = target[: self.max_length - len(prompt)]
        return prompt + target, [IGNORE_INDEX] * len(prompt) + target

    # -- conditions ------------------------------------------------------------------------------
    def project(self, embeddings: Tensor) -> Tensor:
        """CLIP embeddings (B, 1+K, D_clip) -> condition states (B, (1+K) * m, d_model), m = ``condition_tokens``.

        Slot 0 (states 0..m-1) is the query (text embedding in training, image embedding at inference),
        the rest the retrieved caption embeddings; a learned role vector tells them apart. With one state
        per embedding a cross-attention head can only weigh the query against the retrieved captions, the
        same mix at every position; m > 1 states let heads pick different parts per position."""
        if embeddings.shape[-1] != self.config.clip_dim:
            raise ConfigError(f"condition embeddings have dim {embeddings.shape[-1]}, the adaptor expects "
                              f"{self.config.clip_dim}",
                              fix="use embeddings of the CLIP model the adaptor was trained with")
        x = self.proj(embeddings.to(self.role.dtype))
        m = self.config.condition_tokens
        b, s = x.shape[:2]
        n_ent, t = self._entity_slots()
        if n_ent and s <= n_ent:
            raise ConfigError(f"{s} condition embeddings, but the adaptor expects the query first and {n_ent} entity "
                              "inputs last", fix="build conditions with entity_hints (training and captioning do)")
        if n_ent:
            # Entity inputs keep only their first t states: each names one object, and cross-attention's cost
            # grows with the number of states (m per entity more than doubled them on the world).
            x = x.reshape(b, s, m, -1)
            x = torch.cat([x[:, : s - n_ent].reshape(b, (s - n_ent) * m, -1),
                           x[:, s - n_ent:, :t].reshape(b, n_ent * t, -1)], dim=1)
        else:
            x = x.reshape(b, s * m, -1)
        # Slice-and-add rather than ``self.role[index]``: index backward scatter-adds, whose
        # summation order is not fixed across runs, and resume must be bit-reproducible.
        return torch.cat([x[:, :m] + self.role[ROLE_QUERY], x[:, m:] + self.role[ROLE_RETRIEVED]], dim=1)

    def _entity_slots(self) -> tuple[int, int]:
        """(entity inputs at the end of a condition, states kept per entity); (0, 0) without them."""
        ents = self.config.entities
        if ents is None or not ents.cross:
            return 0, 0
        return ents.max_entities, ents.tokens or self.config.condition_tokens

    def null_states(self) -> Tensor:
        """The learned null condition (1, d_model): cross-attention input of unconditional streams."""
        return self.null

    def condition_states(self, embeddings: Tensor, keep: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Batch states and mask for training: (B, S, D_clip), keep (B,) bool -> ((B, S*m, d), (B, S*m) long).

        Rows with ``keep=False`` get the null condition in state 0 and every other state masked out (what the
        unconditional stream of guided decoding sees: the null state alone)."""
        states = self.project(embeddings)
        mask = torch.ones(states.shape[:2], dtype=torch.long, device=states.device)
        if keep is not None and not bool(keep.all()):
            drop = ~keep.to(states.device)
            null = self.null.to(states.dtype).expand(states.shape[0], 1, -1)
            states = torch.cat([torch.where(drop[:, None, None], null, states[:, :1]), states[:, 1:]], dim=1)
            mask[drop, 1:] = 0
        return states, mask

    # -- forward ---------------------------------------------------------------------------------
    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, condition: Tensor | None = None,
                encoder_hidden_states: Tensor | None = None, encoder_attention_mask: Tensor | None = None,
                past_key_values: Any = None, position_ids: Tensor | None = None, use_cache: bool = False) -> Any:
        """Decoder output (``.logits`` (B, T, V), ``.past_key_values``).

        Cross-attention input: ``encoder_hidden_states`` (B, S, d_model) if given, else ``condition``
        CLIP embeddings (B, S, D_clip) projected, else (``condition=None``) the null condition."""
        if encoder_hidden_states is None:
            if condition is not None:
                encoder_hidden_states = self.project(condition)
            else:
                encoder_hidden_states = self.null.expand(input_ids.shape[0], 1, -1)
        return self.decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                            encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask,
                            past_key_values=past_key_values, use_cache=use_cache)


    def caption_loss(self, input_ids: Tensor, attention_mask: Tensor, labels: Tensor, encoder_hidden_states: Tensor,
                     encoder_attention_mask: Tensor | None = None) -> Tensor:
        """Mean next-token cross-entropy over ``labels != IGNORE_INDEX`` (all (B, T); states (B, S, d)).

        The LM head runs only at positions that predict a caption token: in retrieval prompts most
        positions are prompt, and the (V x d) head is a third of this decoder's compute."""
        hidden = self.decoder.transformer(input_ids=input_ids, attention_mask=attention_mask,
                                          encoder_hidden_states=encoder_hidden_states,
                                          encoder_attention_mask=encoder_attention_mask,
                                          use_cache=False).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != IGNORE_INDEX
        logits = self.decoder.lm_head(hidden[:, :-1][keep]).float()
        return nn.functional.cross_entropy(logits, targets[keep])


def fuse_activations(model: nn.Module) -> int:
    """Swap GPT-2's Python ``gelu_new`` (six elementwise ops, each a pass over memory) for PyTorch's
    fused tanh GELU: the same formula, ~15% of a world-decoder training step. Training and captioning both
    run it (the same rounding in both). Returns the swaps."""
    from transformers.activations import NewGELUActivation

    swaps = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, NewGELUActivation):
                setattr(module, name, nn.GELU(approximate="tanh"))
                swaps += 1
    return swaps


def build_adaptor(config: AdaptorConfig, seed: int = 0) -> TomcapAdaptor:
    """A fresh adaptor; ``seed`` fixes the initialisation of every new (trainable) weight."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TomcapAdaptor(config)
