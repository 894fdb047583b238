"""nearest_caption baseline: each image's top-1 datastore caption (brute-force checked), COCO ids, cached, scored."""
from __future__ import annotations

import json

import numpy as np
import pytest
from flow_helpers import world_datastore  # tests/ is on sys.path (pytest rootdir conftest)

from tomcap.corpus import read_corpus
from tomcap.embed.store import EmbeddingSet
from tomcap.evaluate.config import EvaluateConfig
from tomcap.evaluate.stage import run_evaluate
from tomcap.generate.nearest import NearestConfig, run_nearest

CLIP = "tomcap-test-tiny"


def test_nearest_caption_is_the_brute_force_top1(tmp_path):
    world, data, corpus, embed, index, images = world_datastore(tmp_path, n_scenes=40, n_test=5, seed=3, clip=CLIP)
    cfg = NearestConfig(annotations=world.test_annotations, batch_size=2)
    ref = run_nearest(cfg, data, index=index, images=images)
    results = json.loads(ref.file("results.json").read_text())
    coco = json.loads(world.test_annotations.read_text())
    assert sorted(r["image_id"] for r in results) == sorted(im["id"] for im in coco["images"])
    texts = read_corpus(corpus)["text"].to_list()
    txt, img = EmbeddingSet.open(embed), EmbeddingSet.open(images)
    best = np.argmax(np.asarray(img.array(np.float32)) @ np.asarray(txt.array(np.float32)).T, axis=1)
    by_file = {im["file_name"]: im["id"] for im in coco["images"]}
    expected = {by_file[f]: texts[b] for f, b in zip(img.ids["file"].to_list(), best)}
    assert {r["image_id"]: r["caption"] for r in results} == expected
    assert run_nearest(cfg, data, index=index, images=images).cached
    ev = run_evaluate(EvaluateConfig(refs=world.test_annotations, results=[ref.file("results.json")], meteor=False),
                      data)
    assert json.loads(ev.file("metrics.json").read_text())["n_images"] == 5


def test_clip_metrics_read_the_stored_test_image_embeddings(tmp_path):
    """With evaluate's CLIP = the test images' CLIP, CLIPScore reads the image-embedding artifact instead of
    encoding the images again; another CLIP (another random-init seed) encodes them itself."""
    world, data, corpus, embed, index, images = world_datastore(tmp_path, n_scenes=30, n_test=4, seed=4, clip=CLIP)
    res = run_nearest(NearestConfig(annotations=world.test_annotations), data, index=index, images=images)
    base = dict(refs=world.test_annotations, images=world.test_images_dir, clip_model=CLIP, meteor=False)
    stored = run_evaluate(EvaluateConfig(**base), data, generate=res, images=images)
    encoded = run_evaluate(EvaluateConfig(**base, clip_batch_size=3), data, generate=res)
    other = run_evaluate(EvaluateConfig(**base, clip_init_seed=1), data, generate=res, images=images)
    info = {n: r.manifest().info for n, r in (("stored", stored), ("encoded", encoded), ("other", other))}
    assert info["stored"]["clip_images"] == f"stored:{images.fingerprint}"
    assert info["encoded"]["clip_images"] == info["other"]["clip_images"] == "encoded"
    assert stored.manifest().upstream["image_embed"] == images.fingerprint
    assert "image_embed" not in other.manifest().upstream
    m = {n: json.loads(r.file("metrics.json").read_text()) for n, r in (("s", stored), ("e", encoded), ("o", other))}
    assert m["s"]["CLIPScore"] == pytest.approx(m["e"]["CLIPScore"], abs=1e-4)  # float32 artifact: same numbers
    assert m["o"]["CLIPScore"] != pytest.approx(m["e"]["CLIPScore"], abs=1e-4)  # a different random CLIP
