"""Index choice, datastore build (Flat and IVF), search with exclusions, helpers, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tomcap.cli.main import main
from tomcap.corpus import CorpusConfig, SourceConfig, read_corpus, run_corpus
from tomcap.embed import EmbedConfig, EmbeddingSet, run_embed
from tomcap.errors import ConfigError, InputDataError
from tomcap.index import NO_ROW, Datastore, IndexConfig, choose_index, run_index
from tomcap.index.select import FLAT_MAX_ROWS, PQFS_MAX_ROWS

SLICE = Path(__file__).parent / "fixtures" / "embed" / "karpathy_slice.json"


def test_choose_index_is_a_pure_function_of_n_dim_memory():
    gib = 2**30
    assert choose_index(1000, 512, gib).key == "Flat"
    assert choose_index(FLAT_MAX_ROWS, 512, gib).key == "Flat"
    big = choose_index(1_000_000, 512, 8 * gib)
    assert big.key == "IVF4096,PQ128x4fs,Refine(SQfp16)" and big.nprobe == 32 and big.train_rows <= 1_000_000
    assert choose_index(1_000_000, 512, gib).key == "IVF4096,SQ8"  # fp16 refine copies (1 GB) do not fit
    assert choose_index(1_000_000, 510, 8 * gib).key == "IVF4096,SQ8"  # PQ needs dim divisible by 4
    assert choose_index(10_000_000, 512, 8 * gib).nlist > big.nlist  # nlist grows with N
    assert choose_index(PQFS_MAX_ROWS + 1, 512, 64 * gib).key.endswith(",SQ8")  # 4-bit codes rank too coarsely
    assert choose_index(50_000, 512, 40 * 2**20).key.endswith("SQ8")  # Flat (100 MB) does not fit 40 MiB
    assert choose_index(1_000_000, 512, 400 * 2**20).key.endswith("SQ4")
    with pytest.raises(ConfigError, match="memory_budget_gb"):
        choose_index(1_000_000, 512, 2**20)
    assert choose_index(1_000_000, 512, 8 * gib) == big  # deterministic


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("idx")
    src = tmp / "caps.json"
    src.write_text(SLICE.read_text())
    data = tmp / "data"
    corpus = run_corpus(CorpusConfig(sources=[SourceConfig(path=src)]), data)
    embed = run_embed(EmbedConfig(model="tomcap-test-tiny", device="cpu"), data, corpus=corpus)
    return data, corpus, embed


def test_flat_datastore_search_and_helpers(built):
    data, corpus, embed = built
    ref = run_index(IndexConfig(), data, embed=embed, corpus=corpus)
    info = json.loads((ref.dir / "index.json").read_text())
    assert info["index_key"] == "Flat" and info["recall@10"] == 1.0 and info["n"] == len(read_corpus(corpus))
    assert ref.manifest().info["qps"] > 0 and "qps" not in info  # timings: manifest only (stable content)
    again = run_index(IndexConfig(), data, embed=embed, corpus=corpus, force=True)
    assert again.fingerprint == ref.fingerprint  # a rebuild of the same index has the same content
    ds = Datastore.open(ref.dir)
    assert ds.memory_mapped and ds.dim == 32 and ds.model_fingerprint == EmbeddingSet.open(embed).model_fingerprint
    q = ds.embeddings(np.arange(5))
    res = ds.search(q, k=3)
    assert res.rows.shape == (5, 3) and res.rows.dtype == np.int64 and res.scores.dtype == np.float32
    assert res.rows[:, 0].tolist() == [0, 1, 2, 3, 4]  # a stored vector finds itself first
    # Exclude the caption itself and every caption of its image (as training does).
    img = ds.meta["image_id"].to_list()[:5]
    excl = [np.union1d(a, [i]) for i, a in enumerate(ds.rows_for_image_ids(img))]
    assert all(len(e) >= 5 for e in excl)  # COCO images have >= 5 captions
    res = ds.search(q, k=4, exclude_rows=excl)
    for i in range(5):
        assert not np.isin(res.rows[i], excl[i]).any() and (res.rows[i] != NO_ROW).all()
        assert np.all(np.diff(res.scores[i]) <= 1e-6)
    assert ds.rows_for_caption_ids(ds.caption_ids([7, 3]) + ["nope"]).tolist() == [7, 3, NO_ROW]
    assert ds.texts(np.array([[0, 1]])) == [ds.meta["text"].to_list()[:2]]
    np.testing.assert_allclose(ds.embeddings([0]), EmbeddingSet.open(embed).rows([0]))


def test_flat_search_is_exact_with_exclusions_and_matches_faiss(built, monkeypatch):
    """The flat datastore searches by NumPy product + top-k (tomcap.index.exact), exclusions masked first: the rows
    FAISS's over-fetch + filter returns, in blocks or not, and NO_ROW where fewer than k rows are left."""
    import faiss

    from tomcap.index import exact

    data, corpus, embed = built
    ds = Datastore.open(run_index(IndexConfig(), data, embed=embed, corpus=corpus).dir)
    assert ds._flat is not None and ds._flat.shape == (len(ds), ds.dim)
    rng = np.random.default_rng(0)
    q = ds.embeddings(rng.integers(len(ds), size=40)) + 0.3 * rng.standard_normal((40, ds.dim)).astype(np.float32)
    excl = [rng.choice(len(ds), size=rng.integers(0, 9), replace=False) for _ in range(40)]
    got = {k: ds.search(q, k, excl) for k in (1, 3)}
    monkeypatch.setattr(exact, "ROW_BLOCK", 7)  # many blocks, merged
    blocked = ds.search(q, 3, excl)
    ds._flat = None  # FAISS's path: over-fetch and filter
    for k, res in got.items():
        ref = ds.search(q, k, excl)
        assert np.array_equal(res.rows, ref.rows) and np.allclose(res.scores, ref.scores, atol=1e-5)
    assert np.array_equal(blocked.rows, got[3].rows)
    # Fewer rows than k after exclusion; ties go to the lower row.
    vectors = np.eye(3, dtype=np.float32)
    scores, rows = exact.exact_top_k(vectors, vectors, 4, NO_ROW, [np.array([0]), np.array([], np.int64),
                                                                   np.arange(3)])
    assert rows.tolist() == [[1, 2, NO_ROW, NO_ROW], [1, 0, 2, NO_ROW], [NO_ROW] * 4]
    assert np.isneginf(scores[2]).all() and scores[0, :2].tolist() == [0, 0]
    ivf = faiss.index_factory(3, "IVF1,Flat", faiss.METRIC_INNER_PRODUCT)
    assert exact.flat_vectors(ivf) is None and exact.flat_vectors(faiss.IndexFlatL2(3)) is None


def test_ivf_datastore_tunes_nprobe(built):
    data, corpus, embed = built
    ref = run_index(IndexConfig(index_key="IVF8,SQ8", target_recall=0.9), data, embed=embed, corpus=corpus)
    info = ref.manifest().info
    assert info["index_key"] == "IVF8,SQ8" and info["nprobe"] >= 1
    assert info["recall@10"] >= 0.9 or info["nprobe"] == 8
    ds = Datastore.open(ref)
    res = ds.search(ds.embeddings(np.arange(3)), k=5, exclude_rows=[np.array([0]), np.array([1]), np.array([],
                                                                                                           np.int64)])
    assert 0 not in res.rows[0] and 1 not in res.rows[1]


def test_fast_scan_refine_datastore(built):
    data, corpus, embed = built
    ref = run_index(IndexConfig(index_key="IVF8,PQ8x4fs,Refine(SQfp16)", target_recall=0.9), data, embed=embed,
                    corpus=corpus)
    info = ref.manifest().info
    assert info["refine_k_factor"] == 16 and (info["recall@10"] >= 0.9 or info["nprobe"] == 8)
    ds = Datastore.open(ref)
    assert ds.index.k_factor == 16
    q = ds.embeddings(np.arange(4))
    res = ds.search(q, k=3, exclude_rows=[np.array([i]) for i in range(4)])
    assert not any(i in res.rows[i] for i in range(4))
    # Refined scores are inner products of the (fp16) stored vectors: they match a direct recomputation.
    np.testing.assert_allclose(res.scores, np.einsum("qd,qkd->qk", q, ds.embeddings(res.rows)), atol=1e-3)


def test_wrong_dim_and_bad_key(built, tmp_path, capsys):
    data, corpus, embed = built
    ds = Datastore.open(run_index(IndexConfig(), data, embed=embed, corpus=corpus))
    with pytest.raises(InputDataError, match="dim-32"):
        ds.search(np.zeros((2, 64), np.float32), k=3)
    with pytest.raises(InputDataError, match="exclusion lists"):
        ds.search(np.zeros((2, 32), np.float32), k=3, exclude_rows=[np.array([0])])
    before = set((data / "artifacts" / "index").iterdir())
    from tomcap.errors import ArtifactError

    with pytest.raises(ArtifactError, match="index_key"):
        run_index(IndexConfig(index_key="NotAnIndex"), data, embed=embed, corpus=corpus)
    assert set((data / "artifacts" / "index").iterdir()) == before  # no partial folder
    assert main(["index", "--embed", str(embed.dir), "--corpus", str(corpus.dir), "--data-dir", str(data),
                 "--index-key", "NotAnIndex"]) == 2
    assert "index_key" in capsys.readouterr().err
    assert main(["index", "--embed", str(embed.dir), "--corpus", str(corpus.dir), "--data-dir", str(data),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["stage"] == "index"


def test_two_clips_with_one_text_tower_get_their_own_index(built, tmp_path):
    """Only the image tower differs: the caption vectors are the same, but each index names its CLIP."""
    import torch
    from safetensors.torch import save_file

    from tomcap.clip import load_seeded_clip

    data, corpus, _ = built
    state = load_seeded_clip("tomcap-test-tiny", None, "cpu", 0).model.state_dict()
    files = {}
    for name, delta in (("a", 0.0), ("b", 0.5)):
        moved = {k: (v + delta if k.startswith("visual.") and v.is_floating_point() else v).contiguous()
                 for k, v in state.items()}
        files[name] = tmp_path / f"{name}.safetensors"
        save_file({k: v.to(torch.float32) for k, v in moved.items()}, str(files[name]))
    embeds = {n: run_embed(EmbedConfig(model="tomcap-test-tiny", pretrained=str(f), device="cpu"), data, corpus=corpus)
              for n, f in files.items()}
    assert embeds["a"].fingerprint == embeds["b"].fingerprint  # the text tower is shared
    indexes = {n: run_index(IndexConfig(eval_queries=8), data, embed=e, corpus=corpus) for n, e in embeds.items()}
    assert indexes["a"].key != indexes["b"].key
    for n in files:
        assert Datastore.open(indexes[n]).model_fingerprint == EmbeddingSet.open(embeds[n]).model_fingerprint
