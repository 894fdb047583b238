"""Scale-out embedding: row ranges mapped over a 2-worker Dask LocalCluster give the serial run's artifact."""
from __future__ import annotations

import numpy as np
import pytest

from tomcap.corpus import CorpusConfig, SourceConfig, run_corpus
from tomcap.embed import EmbeddingSet, run_embed
from tomcap.embed.shards import plan_row_ranges
from tomcap.errors import InputDataError
from tomcap.settings import PipelineConfig
from tomcap.world import WorldConfig, generate_world


def test_row_ranges_cover_the_corpus_once():
    assert plan_row_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert plan_row_ranges(3, 100) == [(0, 3)]
    with pytest.raises(InputDataError, match="no captions"):
        plan_row_ranges(0, 5)


@pytest.mark.prefect
@pytest.mark.slow
def test_dask_mapped_embedding_equals_the_serial_run(prefect_harness, tmp_path):
    from flows.embed import embed_mapped
    from flows.runners import task_runner

    world = generate_world(tmp_path / "world", WorldConfig(n_train_scenes=80, n_test_images=1, seed=2))
    corpus_cfg = CorpusConfig(sources=[SourceConfig(path=world.corpus_file, name="world")])
    cfg = PipelineConfig.model_validate({"clip": {"model": "tomcap-test-tiny"}, "corpus": corpus_cfg.model_dump(),
                                         "embed": {"dtype": "float32", "map_rows": 120},
                                         "runner": {"kind": "dask", "workers": 2, "processes": False}})
    embed_cfg = cfg.embed

    serial_dir, mapped_dir = tmp_path / "serial", tmp_path / "mapped"
    serial = run_embed(embed_cfg.model_copy(update={"map_rows": None}), serial_dir,
                       corpus=run_corpus(corpus_cfg, serial_dir))
    corpus = run_corpus(corpus_cfg, mapped_dir)
    mapped = embed_mapped.with_options(task_runner=task_runner(cfg.runner))(cfg, str(mapped_dir), corpus)

    shard_dirs = sorted((mapped_dir / "artifacts" / "embed_shard").iterdir())
    n = EmbeddingSet.open(serial).ids.height
    assert len(shard_dirs) == len(plan_row_ranges(n, 120)) > 1
    assert mapped.key == serial.key
    a, b = EmbeddingSet.open(serial), EmbeddingSet.open(mapped)
    # Equal up to float rounding: each task sorts and batches its own rows by length, and BLAS results
    # depend on the batch shape (float16 storage usually hides it; float32 here shows ~3e-7).
    np.testing.assert_allclose(a.array(np.float32), b.array(np.float32), rtol=0, atol=1e-5)
    assert a.ids["caption_id"].to_list() == b.ids["caption_id"].to_list()
    assert mapped.manifest().rows["encoded"] == 0  # the assembly only copied the shards
