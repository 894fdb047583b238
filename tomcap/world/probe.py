"""Re-measure the shipped models' numbers: CLIP zero-shot attributes, retrieval, modality gap; GPT-2 perplexity.

Everything here is computed on a held-out evaluation split of a :class:`WorldConfig` (regenerated
from its seed, pixel-identical to the PNG files ``generate_world`` writes; validation to choose, test to
report), so the model cards' numbers can be re-measured on any machine with ``tomcap world probe``.
"""
from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import torch

from .captions import canonical_caption, scene_captions
from .config import WorldConfig
from .render import render_batch
from .scenes import COLORS, COLS, ROWS, SHAPES, SIZES, Scene, SceneObject
from .splits import TEST_STREAM, split_scenes

ENCODE_BATCH = 256
ZERO_SHOT_ATTRIBUTES = ("color", "shape", "size", "position")


def image_tensor(images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> normalised float [N, 3, H, W], as open_clip's preprocess does for H = image_size."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (x - m) / s


def preprocess_stats(model: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Normalisation mean and std of an open_clip model (the values its ``preprocess`` uses)."""
    import open_clip

    cfg = open_clip.get_model_preprocess_cfg(model)
    return tuple(cfg["mean"]), tuple(cfg["std"])


@torch.no_grad()
def encode_images(model: Any, images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """L2-normalised image embeddings [N, D] of uint8 images [N, H, W, 3]."""
    mean, std = preprocess_stats(model)
    out = []
    for i in range(0, len(images), ENCODE_BATCH):
        x = image_tensor(images[i:i + ENCODE_BATCH], mean, std).to(device)
        out.append(torch.nn.functional.normalize(model.encode_image(x).float(), dim=-1).cpu())
    return torch.cat(out)


@torch.no_grad()
def encode_texts(model: Any, tokenizer: Any, texts: list[str], device: torch.device | str = "cpu") -> torch.Tensor:
    """L2-normalised text embeddings [N, D]."""
    out = []
    for i in range(0, len(texts), ENCODE_BATCH):
        tok = tokenizer(texts[i:i + ENCODE_BATCH]).to(device)
        out.append(torch.nn.functional.normalize(model.encode_text(tok).float(), dim=-1).cpu())
    return torch.cat(out)


def modality_gap(img: torch.Tensor, txt: torch.Tensor) -> float:
    """Centroid distance ||mean(img) - mean(txt)|| of L2-normalised embeddings (Liang et al. 2022)."""
    return float((img.mean(0) - txt.mean(0)).norm())


def zero_shot_single(model: Any, tokenizer: Any, scenes: list[Scene], image_size: int,
                     device: torch.device | str = "cpu") -> dict[str, float]:
    """Per-attribute accuracy of zero-shot classification of one-object scenes.

    The prompts are the canonical captions of all size x colour x shape x cell combinations. For
    an attribute, a value's probability is the sum of the softmax probabilities (at the model's own
    logit scale) of the prompts that carry it, i.e. the other attributes are marginalised out
    (``zero_shot_<attr>``); ``zero_shot_<attr>_joint`` scores the single nearest prompt instead,
    and ``zero_shot_all_joint`` needs all four attributes of the nearest prompt right.
    """
    singles = [s for s in scenes if len(s.objects) == 1]
    if not singles:
        raise ValueError("no one-object scenes in the sample: raise n_images or single_object_share")
    classes = list(itertools.product(SIZES, COLORS, SHAPES, range(len(ROWS)), range(len(COLS))))
    txt = encode_texts(model, tokenizer, [canonical_caption(*c) for c in classes], device)
    img = encode_images(model, render_batch(singles, image_size), device)
    probs = (float(model.logit_scale.detach().exp()) * img @ txt.T).softmax(1)  # [N, C]
    values = {
        "size": [c[0] for c in classes], "color": [c[1] for c in classes], "shape": [c[2] for c in classes],
        "position": [(c[3], c[4]) for c in classes],
    }
    truth = {
        "size": [s.objects[0].size for s in singles], "color": [s.objects[0].color for s in singles],
        "shape": [s.objects[0].shape for s in singles], "position": [(s.objects[0].row,
                                                                      s.objects[0].col) for s in singles],
    }
    nearest = probs.argmax(1).tolist()
    out: dict[str, float] = {"n_single": len(singles)}
    all_right = torch.ones(len(singles), dtype=torch.bool)
    for attr in ZERO_SHOT_ATTRIBUTES:
        names = sorted(set(values[attr]))
        member = torch.tensor([[v == n for v in values[attr]] for n in names], dtype=probs.dtype)  # [V, C]
        marginal = [names[i] for i in (probs @ member.T).argmax(1).tolist()]
        joint_right = torch.tensor([values[attr][p] == t for p, t in zip(nearest, truth[attr])])
        out[f"zero_shot_{attr}"] = sum(m == t for m, t in zip(marginal, truth[attr])) / len(singles)
        out[f"zero_shot_{attr}_joint"] = float(joint_right.float().mean())
        all_right &= joint_right
    out["zero_shot_all_joint"] = float(all_right.float().mean())
    return out


def _listing(objects: list[SceneObject]) -> str:
    """Canonical caption of a multi-object scene: every object with its grid position, in row-major order."""
    parts = [canonical_caption(o.size, o.color, o.shape, o.row, o.col) for o in objects]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def binding_probe(model: Any, tokenizer: Any, scenes: list[Scene], image_size: int,
                  device: torch.device | str = "cpu") -> dict[str, float]:
    """Per-object colour+shape binding on multi-object scenes (``binding_object``).

    For each object of a scene, the candidates are the scene's canonical caption with that one
    object's (colour, shape) replaced by every other pair (the other objects unchanged); the object
    counts as bound when the true caption scores highest. A bag-of-words model that knows which
    colours and shapes are present but not which go together fails the swaps of present values.
    ``binding_scene``: every object of the scene bound.
    """
    multi = [s for s in scenes if len(s.objects) > 1]
    if not multi:
        return {"n_multi": 0}
    img = encode_images(model, render_batch(multi, image_size), device)
    pairs = list(itertools.product(COLORS, SHAPES))
    right, scene_right = 0, 0
    total = 0
    for i, s in enumerate(multi):
        objs = list(s.objects)
        all_ok = True
        for j, o in enumerate(objs):
            others = {(p.color, p.shape) for k, p in enumerate(objs) if k != j}
            cands = [(c, sh) for c, sh in pairs if (c, sh) not in others]
            texts = [_listing([SceneObject(sh, c, o.size, o.row, o.col) if k == j else p for k, p in enumerate(objs)])
                     for c, sh in cands]
            sims = encode_texts(model, tokenizer, texts, device) @ img[i]
            ok = cands[int(sims.argmax())] == (o.color, o.shape)
            right += ok
            total += 1
            all_ok &= ok
        scene_right += all_ok
    return {"n_multi": len(multi), "binding_object": right / total, "binding_scene": scene_right / len(multi)}


def retrieval(img: torch.Tensor, txt: torch.Tensor, owners: torch.Tensor) -> dict[str, float]:
    """Recall@1 both ways; ``txt[j]`` describes image ``owners[j]``. img [N, D], txt [M, D], owners [M]."""
    sim = img @ txt.T
    i2t = (owners[sim.argmax(1)] == torch.arange(len(img))).float().mean()
    t2i = (sim.argmax(0) == owners).float().mean()
    return {"i2t_recall@1": float(i2t), "t2i_recall@1": float(t2i)}


def probe_clip(model: Any, tokenizer: Any, world: WorldConfig, n_images: int,
               device: torch.device | str = "cpu", split: str = TEST_STREAM,
               binding_images: int = 0) -> dict[str, float]:
    """All CLIP numbers of the model card on the first ``n_images`` scenes of ``split`` (``val`` while
    choosing a model, ``test`` for the card); the binding probe on the first ``binding_images`` of them."""
    model.eval()
    scenes = split_scenes(world, split, n_images)
    caps = [scene_captions(s, world.captions_per_image, world.seed, world.relation_share) for s in scenes]
    texts = [c for cs in caps for c in cs]
    owners = torch.tensor([i for i, cs in enumerate(caps) for _ in cs])
    img = encode_images(model, render_batch(scenes, world.image_size), device)
    txt = encode_texts(model, tokenizer, texts, device)
    out: dict[str, float] = {"n_images": len(scenes), "n_texts": len(texts)}
    out |= retrieval(img, txt, owners)
    out["modality_gap"] = modality_gap(img, txt)
    out["mean_cos_matched"] = float((img[owners] * txt).sum(1).mean())
    out |= zero_shot_single(model, tokenizer, scenes, world.image_size, device)
    if binding_images:
        out |= binding_probe(model, tokenizer, scenes[:binding_images], world.image_size, device)
    return out


@torch.no_grad()
def perplexity(model: Any, tokenizer: Any, texts: list[str], batch_size: int = 64,
               device: torch.device | str = "cpu") -> float:
    """Token-level perplexity of a causal LM on ``texts`` (each text + eos, padded per batch)."""
    model.eval()
    nll, count = 0.0, 0
    for i in range(0, len(texts), batch_size):
        enc = tokenizer([t + tokenizer.eos_token for t in texts[i:i + batch_size]], return_tensors="pt",
                        padding=True)
        ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        tgt, m = ids[:, 1:], mask[:, 1:].bool()
        loss = torch.nn.functional.cross_entropy(logits[m], tgt[m], reduction="sum")
        nll += float(loss)
        count += int(m.sum())
    return math.exp(nll / count)
