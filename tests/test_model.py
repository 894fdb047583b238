"""The adaptor on a tiny random-init GPT-2: trainable set, LoRA placement, prompts, conditions, checkpoints."""
from __future__ import annotations

import json

import pytest
import torch

from tomcap.errors import ConfigError
from tomcap.model import (IGNORE_INDEX, AdaptorConfig, build_adaptor, load_adaptor, load_optimizer_state,
                          load_weights, save_checkpoint)
from tomcap.model.adaptor import fuse_activations
from tomcap.model.tiny import make_random_gpt2

TEXTS = [f"a {c} {s} next to a {c2} {s2}" for c in ("red", "blue", "green") for s in ("cube", "ball", "cone")
         for c2 in ("small", "big") for s2 in ("tree", "house")] * 4
CLIP_DIM = 16


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    return make_random_gpt2(tmp_path_factory.mktemp("gpt2"), TEXTS)


@pytest.fixture()
def cfg(gpt2_dir):
    return AdaptorConfig(gpt2_dir=gpt2_dir, clip_dim=CLIP_DIM, k=2, lora_rank=4)


def test_trainable_set_and_lora_placement(cfg):
    model = build_adaptor(cfg)
    trainable = model.trainable_named_parameters()
    lora = [n for n in trainable if "lora_" in n]
    assert lora and all(".attn.c_attn." in n for n in lora), lora
    assert not any("crossattention" in n for n, _ in model.named_modules() if "lora" in n)
    cross = {n: p for n, p in model.named_parameters() if "crossattention" in n or "ln_cross_attn" in n}
    assert cross and all(p.requires_grad for p in cross.values())
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert any(".attn.c_attn.base_layer.weight" in n for n in frozen)
    assert any("wte" in n for n in frozen) and any(".mlp." in n for n in frozen)
    assert {"proj.weight", "proj.bias", "role", "null"} <= set(trainable)
    c = model.param_counts()
    assert 0 < c.trainable < c.total


def test_lora_on_c_proj_stays_in_self_attention(gpt2_dir):
    model = build_adaptor(AdaptorConfig(gpt2_dir=gpt2_dir, clip_dim=CLIP_DIM, lora_targets=("c_attn", "c_proj")))
    lora = [n for n in model.trainable_named_parameters() if "lora_A" in n]
    assert any(".attn.c_proj." in n for n in lora)
    assert not any(".mlp." in n or "crossattention" in n for n in lora)


def test_rslora_scaling(cfg):
    model = build_adaptor(cfg)
    layer = model.decoder.transformer.h[0].attn.c_attn
    assert layer.scaling["default"] == pytest.approx(cfg.lora_alpha / cfg.lora_rank ** 0.5)


def test_prompt_template_and_budget(cfg):
    model = build_adaptor(cfg)
    assert model.prompt_text(["a red cube.", "a blue ball"]) == \
        "Similar images show: a red cube. a blue ball. This image shows:"
    assert model.prompt_text(None) == model.prompt_text([]) == "This image shows:"
    full = model.prompt_ids(["a red cube", "a blue ball"])
    assert full[0] == model.eos_id
    short = model.prompt_ids(["a red cube", "a blue ball"], budget=len(full) - 1)
    assert short == model.prompt_ids(["a red cube"])
    ids, labels = model.example_ids(["a red cube"], "a green cone")
    n_prompt = len(model.prompt_ids(["a red cube"]))
    assert labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert ids[n_prompt:] == labels[n_prompt:] == model.target_ids("a green cone")
    assert labels[-1] == model.eos_id
    assert model.decode(model.target_ids("a green cone")) == "a green cone"


def test_example_fits_max_length(gpt2_dir):
    model = build_adaptor(AdaptorConfig(gpt2_dir=gpt2_dir, clip_dim=CLIP_DIM, max_length=24))
    ids, labels = model.example_ids(["a red cube next to a big tree"] * 5, "a green cone next to a small house")
    assert len(ids) == len(labels) <= 24
    assert sum(1 for x in labels if x != IGNORE_INDEX) > 0


def test_condition_states_and_null_path(cfg):
    model = build_adaptor(cfg).eval()
    emb = torch.randn(3, 1 + cfg.k, CLIP_DIM)
    states, mask = model.condition_states(emb, keep=torch.tensor([True, False, True]))
    assert states.shape == (3, 1 + cfg.k, model.d_model)
    assert torch.equal(states[1, 0], model.null_states()[0])
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 1]]
    assert torch.allclose(states[0], model.project(emb[:1])[0], atol=1e-6)
    ids = torch.tensor([model.prompt_ids(None)])
    with torch.no_grad():
        a = model(ids, condition=None).logits
        b = model(ids, encoder_hidden_states=model.null_states()[None]).logits
        c = model(ids, condition=emb[:1]).logits
    assert torch.allclose(a, b) and not torch.allclose(a, c)
    with pytest.raises(ConfigError, match="dim"):
        model.project(torch.randn(1, 2, CLIP_DIM + 1))


def test_condition_tokens_map_each_embedding_to_a_sequence(cfg, tmp_path):
    """``condition_tokens`` m: m states per embedding, the query's first; a dropped row keeps only the null state
    (what the unconditional stream of guided decoding sees), and the checkpoint rebuilds the same mapping."""
    m = 3
    model = build_adaptor(cfg.model_copy(update={"condition_tokens": m})).eval()
    emb = torch.randn(2, 1 + cfg.k, CLIP_DIM)
    states = model.project(emb)
    assert states.shape == (2, (1 + cfg.k) * m, model.d_model)
    flat = model.proj(emb).reshape(2, 1 + cfg.k, m, model.d_model)
    assert torch.allclose(states[:, :m], flat[:, 0] + model.role[0], atol=1e-6)
    assert torch.allclose(states[:, m:2 * m], flat[:, 1] + model.role[1], atol=1e-6)
    assert len({tuple(s.round(decimals=4).tolist()) for s in states[0, :m]}) == m  # m different states, not copies
    dropped, mask = model.condition_states(emb, keep=torch.tensor([True, False]))
    assert mask.tolist() == [[1] * (1 + cfg.k) * m, [1] + [0] * ((1 + cfg.k) * m - 1)]
    ids = torch.tensor([model.prompt_ids(None)])
    with torch.no_grad():
        a = model(ids, encoder_hidden_states=dropped[1:], encoder_attention_mask=mask[1:]).logits
        b = model(ids, condition=None).logits
    assert torch.allclose(a, b, atol=1e-5)
    save_checkpoint(tmp_path / "ck", model, step=0)
    loaded = load_adaptor(tmp_path / "ck").eval()
    assert loaded.config.condition_tokens == m
    assert torch.allclose(loaded.project(emb), states, atol=1e-6)


def test_mlp_mapper_is_non_linear_trainable_and_rebuilt_from_the_checkpoint(cfg, tmp_path):
    """``mapper_hidden`` > 0: ClipCap's MLP between a CLIP embedding and its condition states (the linear map's
    states are additive in the embedding, the MLP's are not); the checkpoint rebuilds it; 0 keeps the linear
    map and the cache key of adaptors from before the field."""
    model = build_adaptor(cfg.model_copy(update={"mapper_hidden": 24, "condition_tokens": 2})).eval()
    assert {"proj.0.weight", "proj.2.weight"} <= set(model.trainable_named_parameters())
    a, b = torch.randn(1, 1 + cfg.k, CLIP_DIM), torch.randn(1, 1 + cfg.k, CLIP_DIM)
    with torch.no_grad():
        gap = model.project(a + b) - model.project(a) - model.project(b) + model.project(torch.zeros_like(a))
    assert gap.abs().max() > 1e-3
    linear = build_adaptor(cfg).eval()
    with torch.no_grad():
        lin_gap = linear.project(a + b) - linear.project(a) - linear.project(b) + linear.project(torch.zeros_like(a))
    assert lin_gap.abs().max() < 1e-5
    save_checkpoint(tmp_path / "ck", model, step=0)
    loaded = load_adaptor(tmp_path / "ck").eval()
    assert loaded.config.mapper_hidden == 24
    assert torch.allclose(loaded.project(a), model.project(a), atol=1e-6)
    assert "mapper_hidden" not in cfg.key_dict() and cfg.model_copy(update={"mapper_hidden": 24}).key_dict() != \
        cfg.key_dict()


def test_incremental_forward_matches_full(cfg):
    """The call tomcap.generate.streams makes: prompt, then one token with the KV cache."""
    model = build_adaptor(cfg).eval()
    enc = model.project(torch.randn(1, 1 + cfg.k, CLIP_DIM))
    ids = torch.tensor([model.prompt_ids(["a red cube"]) + model.target_ids("a blue ball")[:3]])
    with torch.no_grad():
        full = model.decoder(input_ids=ids, encoder_hidden_states=enc).logits[:, -1]
        first = model.decoder(input_ids=ids[:, :-1], encoder_hidden_states=enc, use_cache=True)
        step = model.decoder(input_ids=ids[:, -1:], encoder_hidden_states=enc, past_key_values=first.past_key_values,
                             use_cache=True).logits[:, -1]
    assert torch.allclose(full, step, atol=1e-5)


def _step(model, opt, seed):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # GPT-2's dropout draws from the global generator
    ids = torch.tensor([model.example_ids(["a red cube"], "a blue ball")[0]])
    cond = torch.randn(1, 1 + model.config.k, CLIP_DIM, generator=gen)
    loss = model(ids, condition=cond).logits.float().pow(2).mean()
    loss.backward()
    opt.step()
    opt.zero_grad()


def test_checkpoint_round_trip(cfg, tmp_path):
    """Weights and AdamW moments survive save/load: one more step on both sides gives equal weights."""
    model = build_adaptor(cfg)
    fuse_activations(model)  # as training runs it; load_adaptor returns it fused
    opt = torch.optim.AdamW(model.trainable_named_parameters().values(), lr=1e-2)
    _step(model, opt, seed=1)
    save_checkpoint(tmp_path / "ck", model, step=1, optimizer=opt, train_config={"lr": 1e-2})
    assert sorted(f.name for f in (tmp_path / "ck").iterdir()) == \
        ["adaptor.safetensors", "checkpoint.json", "optimizer.safetensors"]
    loaded = load_adaptor(tmp_path / "ck").train()
    for n, p in model.trainable_named_parameters().items():
        assert torch.equal(p, loaded.trainable_named_parameters()[n]), n
    opt2 = torch.optim.AdamW(loaded.trainable_named_parameters().values(), lr=0.5)
    load_optimizer_state(opt2, loaded, tmp_path / "ck")
    assert opt2.param_groups[0]["lr"] == 1e-2
    _step(model, opt, seed=2)
    _step(loaded, opt2, seed=2)
    for n, p in model.trainable_named_parameters().items():
        assert torch.allclose(p, loaded.trainable_named_parameters()[n], atol=1e-6), n


def test_mismatched_checkpoint_is_rejected(cfg, gpt2_dir, tmp_path):
    model = build_adaptor(cfg)
    save_checkpoint(tmp_path / "ck", model, step=0)
    other = build_adaptor(AdaptorConfig(gpt2_dir=gpt2_dir, clip_dim=CLIP_DIM + 4, k=2, lora_rank=4))
    with pytest.raises(ConfigError, match="clip_dim") as err:
        load_weights(other, tmp_path / "ck")
    assert "checkpoint.json" in str(err.value)
    # A hand-edited config whose weights no longer fit: names the weights file.
    meta = json.loads((tmp_path / "ck" / "checkpoint.json").read_text())
    meta["adaptor"]["lora_rank"] = 8
    (tmp_path / "ck" / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="do not match"):
        load_adaptor(tmp_path / "ck")


def test_missing_decoder_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="gpt2_dir"):
        build_adaptor(AdaptorConfig(gpt2_dir=tmp_path / "nope", clip_dim=CLIP_DIM))


def test_reduced_cross_attention(gpt2_dir, tmp_path):
    cfg = AdaptorConfig(gpt2_dir=gpt2_dir, clip_dim=CLIP_DIM, k=2, cross_attention_reduce=4)
    model = build_adaptor(cfg).eval()
    full = build_adaptor(cfg.model_copy(update={"cross_attention_reduce": 1}))
    assert AdaptorConfig().cross_attention_reduce == 4
    att = model.decoder.transformer.h[0].crossattention
    assert (att.q_attn.weight.shape == (32, 8) and att.c_attn.weight.shape == (32, 16)
            and att.c_proj.weight.shape == (8, 32))
    assert model.param_counts().trainable < full.param_counts().trainable
    enc = model.project(torch.randn(1, 3, CLIP_DIM))
    ids = torch.tensor([model.prompt_ids(["a red cube"]) + model.target_ids("a blue ball")[:3]])
    with torch.no_grad():
        whole = model.decoder(input_ids=ids, encoder_hidden_states=enc).logits[:, -1]
        first = model.decoder(input_ids=ids[:, :-1], encoder_hidden_states=enc, use_cache=True)
        step = model.decoder(input_ids=ids[:, -1:], encoder_hidden_states=enc, past_key_values=first.past_key_values,
                             use_cache=True).logits[:, -1]
    assert torch.allclose(whole, step, atol=1e-5)
    save_checkpoint(tmp_path / "ck", model, step=0)
    loaded = load_adaptor(tmp_path / "ck")
    fuse_activations(model)  # load_adaptor's decoder runs the fused GELU: compare like with like
    with torch.no_grad():
        again = loaded.decoder(input_ids=ids, encoder_hidden_states=loaded.project(torch.zeros(1, 3, CLIP_DIM))).logits
        ref = model.decoder(input_ids=ids, encoder_hidden_states=model.project(torch.zeros(1, 3, CLIP_DIM))).logits
    assert torch.allclose(again, ref, atol=1e-6)
    with pytest.raises(ConfigError, match="cross_attention_reduce"):
        build_adaptor(cfg.model_copy(update={"cross_attention_reduce": 3}))


def test_decoder_dropout_override(gpt2_dir):
    base = build_adaptor(AdaptorConfig(gpt2_dir=gpt2_dir, clip_dim=CLIP_DIM, k=0, lora_rank=4))
    off = build_adaptor(AdaptorConfig(gpt2_dir=gpt2_dir, clip_dim=CLIP_DIM, k=0, lora_rank=4, decoder_dropout=0.0))
    drops = lambda m: {mod.p for mod in m.modules() if isinstance(mod, torch.nn.Dropout)}  # noqa: E731
    assert drops(base) == {0.1} and drops(off) == {0.0}
    assert off.decoder.config.resid_pdrop == off.decoder.config.attn_pdrop == 0.0


def test_caption_loss_equals_full_logits_loss(cfg):
    model = build_adaptor(cfg).eval()
    examples = [model.example_ids(["a red cube next to a big tree"], "a blue ball next to a small house"),
                model.example_ids(None, "a green cone")]
    width = max(len(x) for x, _ in examples)
    ids = torch.tensor([x + [model.pad_id] * (width - len(x)) for x, _ in examples])
    labels = torch.tensor([y + [IGNORE_INDEX] * (width - len(y)) for _, y in examples])
    mask = (torch.arange(width)[None] < torch.tensor([[len(x)] for x, _ in examples])).long()
    states, enc_mask = model.condition_states(torch.randn(2, 3, CLIP_DIM), torch.tensor([True, False]))
    with torch.no_grad():
        logits = model(ids, attention_mask=mask, encoder_hidden_states=states, encoder_attention_mask=enc_mask).logits
        full = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                 labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX)
        fast = model.caption_loss(ids, mask, labels, states, enc_mask)
    assert torch.allclose(full, fast, atol=1e-6)
