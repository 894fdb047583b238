"""nearest_caption baseline: each image's top-1 datastore caption (brute-force checked), COCO ids, cached, scored."""
from __future__ import annotations

import json

import numpy as np
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
