"""Training at corpus scale reads rows per batch: exclusions as group codes, embeddings as a view over the
memory-mapped shards, the corpus tokenised once into flat arrays (issue 17)."""
from __future__ import annotations

import numpy as np
import pytest

from flow_helpers import world_datastore
from tomcap.train.data import NO_GROUP, Exclusions, PromptTokens, ShardRows, exclusion_rows


def _reference_rows(store_groups, query_groups, own):
    """What the per-caption lists held before: every store row of the query's group, plus its own row."""
    out = []
    for g, o in zip(query_groups, own):
        rows = set(np.flatnonzero(store_groups == g).tolist()) if g != NO_GROUP else set()
        if o >= 0:
            rows.add(int(o))
        out.append(sorted(rows))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exclusions_equal_the_per_caption_lists(seed):
    rng = np.random.default_rng(seed)
    store = rng.integers(-1, 30, 400)  # -1 = NO_GROUP: captions without an image id
    query = rng.integers(-1, 40, 150)  # groups 30..39 exist only on the query side
    own = np.where(rng.random(150) < 0.7, rng.integers(0, 400, 150), -1)
    ex = Exclusions(store, query, own)
    want = _reference_rows(store, query, own)
    assert [ex[i].tolist() for i in range(len(ex))] == want
    assert ex.sizes().tolist() == [len(w) for w in want]
    assert [r.tolist() for r in exclusion_rows(store, query, own)] == want
    idx = rng.permutation(150)[:40]
    sub = ex.subset(idx)
    assert [sub[i].tolist() for i in range(len(sub))] == [want[i] for i in idx]
    assert Exclusions.none(5).sizes().tolist() == [0] * 5 and Exclusions.none(5)[3].size == 0


def test_datastore_exclusions_match_the_datastore_lookup(tmp_path):
    from tomcap.corpus.stage import read_corpus
    from tomcap.embed.store import EmbeddingSet
    from tomcap.index import Datastore
    from tomcap.train.index_glue import datastore_retrieval

    _, _, corpus, embed, index, _ = world_datastore(tmp_path, 30, 2, 5)
    df = read_corpus(corpus)
    _, ex = datastore_retrieval(index, EmbeddingSet.open(embed), df)
    store = Datastore.open(index)
    own = store.rows_for_caption_ids(df["caption_id"].to_list())
    same = store.rows_for_image_ids(df["image_id"].to_list())
    want = [np.union1d(s, [o]).tolist() if o >= 0 else sorted(s.tolist()) for s, o in zip(same, own.tolist())]
    assert [ex[i].tolist() for i in range(len(ex))] == want
    assert ex.sizes().mean() == pytest.approx(np.mean([len(w) for w in want]))
    assert max(ex.sizes()) > 1  # the world has several captions per image: the groups are exercised


def test_train_inputs_are_views_over_the_shards(tmp_path):
    from tomcap.train.stage import _corpus_and_embeddings

    _, _, corpus, embed, _, _ = world_datastore(tmp_path, 20, 2, 6)
    df, view, emb = _corpus_and_embeddings(corpus, embed)
    assert isinstance(view, ShardRows) and view.shape == (df.height, emb.dim)
    assert all(isinstance(s, np.memmap) for s in emb.shards)  # nothing was copied into RAM
    np.testing.assert_array_equal(view[np.array([3, 0])], emb.rows(np.array([3, 0])))
    sub = view.take(np.array([5, 1, 2]))
    np.testing.assert_array_equal(sub[np.array([1])], emb.rows(np.array([1])))


def test_prompt_tokens_hold_the_corpus_as_flat_arrays(tmp_path):
    import polars as pl

    from tomcap.model import AdaptorConfig, build_adaptor
    from tomcap.model.tiny import make_random_gpt2

    captions = ["a red ball on the grass", "two blue cubes", "a green cone near a yellow ball"] * 3
    model = build_adaptor(AdaptorConfig(gpt2_dir=make_random_gpt2(tmp_path / "gpt2", captions * 4), clip_dim=8, k=1))
    tok = PromptTokens(model, captions)
    assert tok._targets.dtype == np.int32 and len(tok._starts) == len(captions) + 1
    for i, c in enumerate(captions):
        assert tok.target(i) == model.tokenizer(" " + c, add_special_tokens=False)["input_ids"] + [model.eos_id]
    assert tok.verified(captions)
    series = PromptTokens(model, pl.Series(captions))  # the train stage passes the corpus column itself
    assert np.array_equal(series._targets, tok._targets) and series.verified(pl.Series(captions))
