"""Recommendation: candidates pooled from every source, the served path's guarantees, and the
bundle keeping the co-occurrence model. A tiny seeded catalog and an untrained SASRec: these tests
assert what the code guarantees, not what training learns."""

import numpy as np
import pandas as pd
import pytest

N_ITEMS = 40


@pytest.fixture
def engine():
    """A recommendation-only bundle over 40 items: each shopper walks the catalog in steps of one,
    so an item's co-occurrence neighbour is the next item."""
    import torch

    from shoploop.models.bundle import ModelBundle
    from shoploop.models.ranker import ITEM_FEATURES
    from shoploop.models.retrieval import DenseIndex, LexicalIndex
    from shoploop.models.sequence import CoOccurrence, SASRec, SASRecConfig
    from shoploop.serving.predict import SearchEngine, frame_lookup

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(N_ITEMS, 16)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    walks = [[(start + step) % N_ITEMS for step in range(4)] for start in range(N_ITEMS)]
    cooc = CoOccurrence.fit([w[:-1] for w in walks], [w[-1] for w in walks], N_ITEMS)
    item_ids = [f"i{r}" for r in range(N_ITEMS)]
    catalog = pd.DataFrame({"item_id": item_ids, "title": [f"item {r}" for r in range(N_ITEMS)], "brand": None,
                            "category_path": "Office", "price": 1.0})
    sasrec = SASRec(embeddings, SASRecConfig(hidden=8, layers=1, heads=1)).eval()
    bundle = ModelBundle(ranker=None, catalog=catalog, item_embeddings=embeddings,
                         lexical=LexicalIndex.build(catalog["title"].tolist()), user_sequences={"u1": [3, 4, 5]},
                         popular=np.argsort(-cooc.popularity, kind="stable"), dense=DenseIndex.build(embeddings),
                         sasrec=sasrec, cooccurrence=cooc)
    features = pd.DataFrame(np.nan, index=item_ids, columns=ITEM_FEATURES)
    return SearchEngine(bundle, None, frame_lookup(features))


def test_cooccurrence_counts_what_followed_more_than_what_came_before():
    # given one sequence a -> b -> c
    from shoploop.models.sequence import CoOccurrence

    cooc = CoOccurrence.fit([[0, 1]], [2], 4)
    # when a history ends with b
    counts = cooc.counts([[1]])[0]
    # then c (next) counts fully, a (before) half, an item never seen with b not at all
    assert counts.tolist() == [0.5, 0.0, 1.0, 0.0]
    # and b one step further back in the history (item 3 came after it) weighs 0.8 as much
    assert cooc.counts([[1, 3]])[0][2] == pytest.approx(0.8 * counts[2])


def test_source_ranks_put_owned_and_unscored_items_past_the_depth():
    from shoploop.models.recommender import source_ranks

    # given scores where item 1 is best, item 3 has no evidence and the shopper owns item 0
    scores = np.array([9.0, 5.0, 4.0, -np.inf, 1.0])
    # when ranked three deep
    ranks = source_ranks(scores, history=[0], depth=3)
    # then the owned and the unscored items sit at the depth; the rest in score order
    assert ranks.tolist() == [3, 0, 1, 3, 2]


def test_candidates_include_the_cooccurrence_neighbours_of_the_latest_item(engine):
    # given a shopper whose latest item is 20 (in training, 20 was always followed by 21 and 22)
    rows, feats = engine.recommend_candidates([18, 19, 20], float("nan"))
    # then 21 and 22 are candidates, whatever SASRec (untrained) thinks, and the features say why
    from shoploop.models.recommender import RERANK_FEATURES

    assert {21, 22} <= set(rows.tolist())
    cooc_rank = feats[:, RERANK_FEATURES.index("cooc_rank")]
    assert cooc_rank[rows.tolist().index(21)] == 0.0  # log1p(rank 0): the strongest neighbour
    assert feats.shape == (len(rows), len(RERANK_FEATURES)) and np.isfinite(feats).all()


def test_no_source_recommends_what_the_shopper_already_has(engine):
    # given a history that includes the most popular items and the neighbours of its own items
    history = [5, 6, 7, 8, int(engine.bundle.popular[0])]
    # when the served path returns everything it would rank
    rows, feats = engine.recommend_candidates(history, float("nan"))
    top, _ = engine.recommend_rows(history, float("nan"), k=len(rows))
    # then none of it is in the history, and nothing is shown twice
    assert not set(rows.tolist()) & set(history)
    assert sorted(top.tolist()) == sorted(rows.tolist())


def test_a_fitted_reranker_trusts_the_source_that_finds_the_next_item(engine):
    # given validation shoppers whose next item is always the co-occurrence neighbour of their latest
    from shoploop.models.recommender import fit_reranker

    starts = range(0, N_ITEMS, 2)
    histories = [[(s + i) % N_ITEMS for i in range(3)] for s in starts]
    targets = [(s + 3) % N_ITEMS for s in starts]
    engine.bundle.reranker, rows = fit_reranker(engine, ([f"u{s}" for s in starts], histories, targets))
    # when a new shopper (odd start: not trained on) is served
    top, _ = engine.recommend_rows([1, 2, 3], float("nan"), k=3)
    # then their latest item's neighbour comes first
    assert rows == len(targets)
    assert top[0] == 4


def test_bundle_round_trips_the_cooccurrence_model_and_reranker(engine, tmp_path):
    from shoploop.models.bundle import ModelBundle
    from shoploop.models.recommender import fit_reranker

    # given a bundle with a co-occurrence model and a fitted re-ranker
    engine.bundle.reranker, _ = fit_reranker(engine, (["u"] * 4, [[0, 1, 2], [5, 6, 7], [10, 11, 12], [20, 21, 22]],
                                                      [3, 8, 13, 23]))
    # when saved and loaded
    engine.bundle.save(tmp_path / "bundle")
    loaded = ModelBundle.load(tmp_path / "bundle")
    # then co-occurrence scores, popularity and the re-ranker's scores are unchanged
    history = [[7, 8, 9]]
    np.testing.assert_allclose(loaded.cooccurrence.scores(history), engine.bundle.cooccurrence.scores(history))
    np.testing.assert_array_equal(loaded.cooccurrence.popularity, engine.bundle.cooccurrence.popularity)
    feats = engine.recommend_candidates([7, 8, 9], float("nan"))[1]
    np.testing.assert_allclose(loaded.reranker.score(feats), engine.bundle.reranker.score(feats))
    assert loaded.ranker is None


def test_a_shop_version_adds_its_seed_rankers_score_and_the_price_gap(engine):
    # given a version with a seed ranker (zero-shot: sigma(bm25 + cosine)) and items priced by row
    from shoploop.models.ranker import ITEM_FEATURES, RankerConfig, SeedRanker
    from shoploop.models.recommender import RERANK_FEATURES
    from shoploop.serving.predict import SearchEngine, frame_lookup

    engine.bundle.ranker = SeedRanker.zero_shot(RankerConfig(embedding_dim=16))
    features = pd.DataFrame(np.nan, index=engine.item_ids, columns=ITEM_FEATURES)
    features["log_price"] = np.log1p(np.arange(N_ITEMS))
    priced = SearchEngine(engine.bundle, None, frame_lookup(features))
    # when a shopper whose price level is item 21's is served
    rows, feats = priced.recommend_candidates([18, 19, 20], user_log_price=float(np.log1p(21)))
    column = {name: feats[:, RERANK_FEATURES.index(name)] for name in RERANK_FEATURES}
    # then the ranker scores each candidate against the taste vector (no query words: sigma(cosine))
    np.testing.assert_allclose(column["ranker"], 1 / (1 + np.exp(-column["text_cosine"])), rtol=1e-5)
    # and the price gap is 0 at the shopper's level and grows away from it
    at = {r: g for r, g in zip(rows.tolist(), column["price_gap"])}
    assert at[21] == pytest.approx(0.0) and at[22] < at[30]
