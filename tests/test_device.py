"""Device and precision policy: ``auto`` is CUDA when present and bf16 only where it is safe and fast.

The CUDA tests run the real stages' code on the GPU and compare with the CPU; a CPU-only machine
skips them (it does not fail them)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tomcap.device import resolve_device, resolve_precision
from tomcap.embed.config import EmbedConfig, ImageEmbedConfig
from tomcap.evaluate.config import EvaluateConfig
from tomcap.train.config import TrainConfig

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
SLICE = Path(__file__).parent / "fixtures" / "embed" / "karpathy_slice.json"


def test_auto_device_and_precision_policy():
    assert resolve_device("auto", cuda_available=True) == torch.device("cuda")
    assert resolve_device(None, cuda_available=False) == torch.device("cpu")
    assert resolve_device("cpu", cuda_available=True) == torch.device("cpu")
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert resolve_precision("auto", cuda, bf16_ok=True) == "bf16"
    assert resolve_precision("auto", cuda, bf16_ok=False) == "fp32"
    assert resolve_precision("auto", cpu, bf16_ok=True) == "fp32"  # CPU bf16 autocast: slower without native bf16
    assert resolve_precision("bf16", cpu) == "bf16"  # an explicit choice stays
    for cfg in (EmbedConfig(), ImageEmbedConfig(), TrainConfig(), EvaluateConfig()):
        assert cfg.device == "auto"
    # Where it runs is not part of what it computes: cache keys do not see the device.
    assert EmbedConfig(device="cuda").fingerprint() == EmbedConfig().fingerprint()
    assert TrainConfig(device="cuda").fingerprint() == TrainConfig().fingerprint()


@needs_cuda
def test_cuda_text_embeddings_match_cpu():
    from tomcap.clip import load_clip
    from tomcap.embed import encode_texts

    caps = [c for r in json.loads(SLICE.read_text()) for c in r["captions"]][:64]
    torch.manual_seed(0)
    cpu = load_clip("tomcap-test-tiny", device="cpu")
    gpu = load_clip("tomcap-test-tiny", device="auto")
    gpu.model.load_state_dict(cpu.model.state_dict())
    assert gpu.device.type == "cuda"
    a = encode_texts(cpu, caps, batch_size=16)
    b = encode_texts(gpu, caps, batch_size=16, precision="auto")  # bf16 autocast on the GPU
    assert np.abs(a - b).max() < 0.05 and float(np.mean(np.sum(a * b, axis=1))) > 0.99


@needs_cuda
def test_cuda_adaptor_loads_there_and_generates(tmp_path):
    from tomcap.generate.captioner import caption_batch
    from tomcap.generate.decoding import DecodeConfig
    from tomcap.model import AdaptorConfig, build_adaptor, load_adaptor, save_checkpoint
    from tomcap.model.tiny import make_random_gpt2

    gpt2 = make_random_gpt2(tmp_path / "gpt2", ["a red cube on a table", "a blue ball near a tree"] * 20)
    model = build_adaptor(AdaptorConfig(gpt2_dir=gpt2, clip_dim=16, k=1))
    save_checkpoint(tmp_path / "ck", model, step=0)
    loaded = load_adaptor(tmp_path / "ck")  # device "auto"
    assert next(loaded.parameters()).device.type == "cuda"
    img = np.random.default_rng(0).normal(size=(2, 16)).astype(np.float32)
    cfg = DecodeConfig(strategy="beam", beam_size=2, max_new_tokens=5, guidance_scale=1.5)
    on_gpu = [c.text for c in caption_batch(loaded, img, [["a red cube"]] * 2, img[:, None], cfg)]
    on_cpu = [c.text for c in caption_batch(load_adaptor(tmp_path / "ck", device="cpu"), img, [["a red cube"]] * 2,
                                            img[:, None], cfg)]
    assert on_gpu == on_cpu
