"""Self-describing adaptor checkpoints: safetensors weights + optimizer state + one JSON.

A checkpoint folder holds ``adaptor.safetensors`` (trainable weights only: the frozen GPT-2 is
never copied, so a gpt2-124M checkpoint is ~6% of the decoder's size), optionally
``optimizer.safetensors`` (AdamW moments keyed by parameter name) and ``checkpoint.json`` (adaptor
config, train config, the base GPT-2 by name or folder plus its content fingerprint and shape,
tomcap version, step, optimizer hyper-parameters, free-form state). :func:`load_adaptor` rebuilds
the model from the folder and the named base decoder, and refuses a decoder whose content differs
from the one trained on; nothing is unpickled (no ``torch.load``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..config import canonical_json, hash_text
from ..manifest import input_sha256
from ..errors import ArtifactError, ConfigError, InputDataError
from .adaptor import TomcapAdaptor, build_adaptor, fuse_activations
from .config import AdaptorConfig

WEIGHTS_FILE = "adaptor.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
CHECKPOINT_JSON = "checkpoint.json"
CHECKPOINT_FORMAT = 1
_DECODER_SHAPE_KEYS = ("n_embd", "n_layer", "n_head", "vocab_size", "n_positions")


def _tomcap_version() -> str:
    try:
        return metadata.version("tomcap")
    except metadata.PackageNotFoundError:
        return "unknown"


def decoder_fingerprint(config: AdaptorConfig) -> str:
    """Content hash of the local GPT-2 folder (its files' names and sha256), or ``hub:<name>``
    (a hub model is pinned by its name). Equal to the train stage's upstream ``gpt2`` fingerprint."""
    if config.gpt2_dir is None:
        return f"hub:{config.gpt2}"
    d = Path(config.gpt2_dir)
    if not d.is_dir():
        raise InputDataError("GPT-2 folder not found", path=d,
                             fix="set train.model.gpt2_dir to a folder holding config.json, weights and tokenizer")
    files = {}
    for f in sorted(d.iterdir()):
        if f.is_file():
            files[f.name] = input_sha256(f)
    return hash_text(canonical_json(files))


def decoder_shape(model: TomcapAdaptor) -> dict[str, int]:
    """The GPT-2 hyper-parameters a checkpoint must agree with."""
    return {k: int(getattr(model.decoder.config, k)) for k in _DECODER_SHAPE_KEYS}


@dataclass
class Checkpoint:
    """What :func:`read_checkpoint` returns besides the weights."""

    adaptor: AdaptorConfig
    step: int
    train: dict[str, Any] | None
    state: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def _write_atomic_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def save_checkpoint(folder: Path, model: TomcapAdaptor, *, step: int, optimizer: torch.optim.Optimizer | None = None,
                    train_config: dict[str, Any] | None = None, state: dict[str, Any] | None = None) -> Path:
    """Write (or overwrite) a checkpoint folder; the JSON is written last so a torn write is detected."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CHECKPOINT_JSON).unlink(missing_ok=True)
    params = model.trainable_named_parameters()
    saved = params | model.entity_tensors()
    save_file({n: t.detach().contiguous().cpu() for n, t in saved.items()}, str(folder / WEIGHTS_FILE))
    opt_meta = None
    if optimizer is not None:
        tensors, opt_meta = _optimizer_tensors(optimizer, params)
        save_file(tensors, str(folder / OPTIMIZER_FILE))
    meta = {
        "format": CHECKPOINT_FORMAT,
        "tomcap_version": _tomcap_version(),
        "adaptor": model.config.model_dump(mode="json"),
        "decoder": {"source": model.config.decoder_source, "gpt2": model.config.gpt2,
                    "gpt2_dir": None if model.config.gpt2_dir is None else str(model.config.gpt2_dir),
                    "fingerprint": decoder_fingerprint(model.config), **decoder_shape(model)},
        "train": train_config,
        "step": int(step),
        "optimizer": opt_meta,
        "trainable": {n: list(p.shape) for n, p in params.items()},
        "state": state or {},
    }
    _write_atomic_json(folder / CHECKPOINT_JSON, meta)
    return folder


def _optimizer_tensors(optimizer: torch.optim.Optimizer, params: dict[str, torch.nn.Parameter]
                       ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """AdamW per-parameter state as ``<param>::<slot>`` tensors; group hyper-parameters as JSON."""
    by_id = {id(p): n for n, p in params.items()}
    tensors: dict[str, torch.Tensor] = {}
    for p, st in optimizer.state.items():
        name = by_id.get(id(p))
        if name is None:
            raise ArtifactError("the optimizer holds a parameter the adaptor does not train",
                                fix="build the optimizer from model.trainable_named_parameters()")
        for slot, value in st.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{name}::{slot}"] = t.detach().contiguous().cpu()
    groups = [{k: v for k, v in g.items() if k != "params"} | {"params": [by_id[id(p)] for p in g["params"]]}
              for g in optimizer.param_groups]
    return tensors, {"groups": groups}


def read_checkpoint(folder: Path) -> Checkpoint:
    """Parse ``checkpoint.json``; errors name the folder and what to do."""
    folder = Path(folder)
    path = folder / CHECKPOINT_JSON
    if not path.is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise ArtifactError("not a (complete) tomcap adaptor checkpoint: "
                            "checkpoint.json or adaptor.safetensors missing",
                            path=folder, fix="pass the folder written by 'tomcap train' (it holds checkpoint.json)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        adaptor = AdaptorConfig.model_validate(meta["adaptor"])
    except (ValueError, KeyError) as err:
        raise ArtifactError(f"checkpoint.json is invalid ({err.__class__.__name__}: {err})", path=path,
                            fix="retrain, or pass a checkpoint written by this version of tomcap") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ArtifactError(f"checkpoint format {meta.get('format')} is not {CHECKPOINT_FORMAT}", path=path,
                            fix="retrain with this version of tomcap")
    return Checkpoint(adaptor=adaptor, step=int(meta["step"]), train=meta.get("train"), state=meta.get("state", {}),
                      meta=meta)


def load_weights(model: TomcapAdaptor, folder: Path) -> Checkpoint:
    """Copy a checkpoint's trainable weights into ``model``; names, shapes and decoder must match."""
    folder = Path(folder)
    ckpt = read_checkpoint(folder)
    if ckpt.adaptor.key_dict() != model.config.key_dict():
        diff = {k: (v, model.config.key_dict().get(k)) for k, v in ckpt.adaptor.key_dict().items()
                if model.config.key_dict().get(k) != v}
        raise ConfigError(f"checkpoint adaptor config does not match the model: {diff} (checkpoint, model)",
                          path=folder / CHECKPOINT_JSON,
                          fix="use the model config the checkpoint was trained with (load_adaptor(folder) rebuilds it)")
    saved_shape = {k: ckpt.meta.get("decoder", {}).get(k) for k in _DECODER_SHAPE_KEYS}
    if saved_shape != decoder_shape(model):
        raise ConfigError(f"checkpoint was trained on a GPT-2 with {saved_shape}, this one has {decoder_shape(model)}",
                          path=folder / CHECKPOINT_JSON, fix="load it with the GPT-2 named in its checkpoint.json")
    tensors = load_file(str(folder / WEIGHTS_FILE))
    params = model.trainable_named_parameters() | model.entity_tensors()  # what save_checkpoint writes
    missing, extra = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
    bad = [n for n in set(params) & set(tensors) if tuple(tensors[n].shape) != tuple(params[n].shape)]
    if missing or extra or bad:
        raise ConfigError(f"checkpoint weights do not match the model (missing {missing[:3]}, unexpected {extra[:3]}, "
                          f"wrong shape {bad[:3]})", path=folder / WEIGHTS_FILE,
                          fix="use the adaptor config and GPT-2 the checkpoint was trained with")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(tensors[n].to(p.dtype))
    return ckpt


def load_optimizer_state(optimizer: torch.optim.Optimizer, model: TomcapAdaptor, folder: Path) -> None:
    """Restore AdamW moments and group hyper-parameters saved by :func:`save_checkpoint`."""
    folder = Path(folder)
    ckpt = read_checkpoint(folder)
    opt_meta = ckpt.meta.get("optimizer")
    if opt_meta is None or not (folder / OPTIMIZER_FILE).is_file():
        raise ArtifactError("checkpoint has no optimizer state", path=folder,
                            fix="resume only from checkpoints written during training")
    params = model.trainable_named_parameters()
    tensors = load_file(str(folder / OPTIMIZER_FILE))
    if len(opt_meta["groups"]) != len(optimizer.param_groups):
        raise ConfigError("optimizer parameter groups differ from the checkpoint's", path=folder / CHECKPOINT_JSON,
                          fix="resume with the same train config")
    for g, saved in zip(optimizer.param_groups, opt_meta["groups"]):
        g.update({k: (tuple(v) if isinstance(v, list) else v) for k, v in saved.items() if k != "params"})
    optimizer.state.clear()
    for key, t in tensors.items():
        name, slot = key.split("::")
        optimizer.state[params[name]][slot] = t.to(params[name].device)


def base_decoder_config(folder: Path, ckpt: Checkpoint, gpt2_dir: Path | None = None) -> AdaptorConfig:
    """The checkpoint's adaptor config pointing at its base GPT-2 (``gpt2_dir`` if the folder moved),
    after checking that the decoder found there is the one it was trained on (content fingerprint)."""
    cfg = ckpt.adaptor if gpt2_dir is None else ckpt.adaptor.model_copy(update={"gpt2_dir": Path(gpt2_dir)})
    saved = ckpt.meta.get("decoder", {}).get("fingerprint")
    if cfg.gpt2_dir is not None and not Path(cfg.gpt2_dir).is_dir():
        raise ConfigError(f"the base GPT-2 folder this checkpoint was trained on is missing: {cfg.gpt2_dir}",
                          path=Path(folder) / CHECKPOINT_JSON,
                          fix="restore that folder, or pass its new location (load_adaptor(folder, gpt2_dir=...))")
    if saved is not None and cfg.gpt2_dir is not None:
        found = decoder_fingerprint(cfg)
        if found != saved:
            raise ConfigError(f"the GPT-2 folder {cfg.gpt2_dir} holds another decoder (fingerprint {found[:12]}) than "
                              f"the one this checkpoint was trained on ({saved[:12]})",
                              path=Path(folder) / CHECKPOINT_JSON,
                              fix="pass the original GPT-2 folder (load_adaptor(folder, gpt2_dir=...)) or retrain")
    return cfg


def load_adaptor(folder: Path, device: str | torch.device | None = "auto",
                 gpt2_dir: Path | None = None) -> TomcapAdaptor:
    """Rebuild the adaptor from a checkpoint folder: its config JSON and trainable weights on top of the
    base GPT-2 it names (``gpt2_dir`` overrides the saved folder, e.g. after moving it). ``device``
    "auto": CUDA when present."""
    from ..device import resolve_device

    ckpt = read_checkpoint(folder)
    model = build_adaptor(base_decoder_config(folder, ckpt, gpt2_dir))
    load_weights(model, folder)
    fuse_activations(model)
    return model.to(resolve_device(device)).eval()
