import numpy as np
import pytest

from shoploop.models.evaluate import is_heldout, ndcg_at_k
from shoploop.models.retrieval import hybrid_candidates, top_k


def test_ndcg_is_one_for_the_ideal_order_and_lower_otherwise():
    grades = {"a": 3, "b": 2, "c": 0}
    assert ndcg_at_k(["a", "b", "c"], grades) == pytest.approx(1.0)
    assert ndcg_at_k(["c", "b", "a"], grades) < ndcg_at_k(["b", "a", "c"], grades) < 1.0
    assert ndcg_at_k(["x", "y"], {"x": 0}) == 0.0


def test_ndcg_counts_unjudged_items_as_irrelevant():
    assert ndcg_at_k(["new", "a"], {"a": 3}) == pytest.approx(1 / np.log2(3))


def test_heldout_split_is_stable_and_about_a_fifth():
    ids = [f"q{i}" for i in range(2000)]
    share = np.mean([is_heldout(q) for q in ids])
    assert 0.15 < share < 0.25
    assert [is_heldout(q) for q in ids] == [is_heldout(q) for q in ids]


def test_top_k_orders_by_score():
    assert top_k(np.array([0.1, 0.9, 0.5, 0.7]), 3).tolist() == [1, 3, 2]


def test_hybrid_candidates_take_from_both_retrievers():
    bm25 = np.array([5.0, 0.0, 0.0, 1.0, 0.0])
    dense = np.array([0.0, 0.9, 0.1, 0.0, 0.2])
    assert set(hybrid_candidates(bm25, dense, 2).tolist()) == {0, 1}
    # an item matching no query word is no lexical candidate: the dense list's top beats it
    assert set(hybrid_candidates(np.array([5.0, 0, 0, 0, 0]), np.array([0, 0, 0, 0, 1.0]), 2).tolist()) == {0, 4}


def test_gate_compares_champion_and_challenger_on_the_same_test_set():
    from shoploop.models.registry import gate

    stored = {"tag": "old", "metrics": {"model": 0.70}}  # scored on its own, older test set
    challenger = {"model": 0.80, "bm25": 0.60, "champion": {"tag": "old", "model": 0.85}}
    ok, reason = gate(challenger, stored)
    assert not ok and "same held-out queries" in reason
    assert gate({**challenger, "champion": {"tag": "old", "model": 0.79}}, stored)[0]
    assert not gate({"model": 0.5, "bm25": 0.6}, None)[0]


def test_without_search_labels_the_gate_judges_recommendation():
    from shoploop.models.registry import gate

    # given a version with no search labels, whose recommender beats popularity
    rec = {"served": {"ndcg@10": 0.08}, "popularity": {"ndcg@10": 0.02}}
    unmeasured = {"metric": "none", "n_queries": 0, "recommend": rec}
    # when gated / then it may serve unless the champion recommends better; with nothing measurable
    # at all only a first version serves
    assert gate(unmeasured, None)[0]
    assert not gate(unmeasured, {"tag": "old", "metrics": {"recommend": {"served": {"ndcg@10": 0.09}}}})[0]
    assert not gate({**unmeasured, "recommend": {**rec, "popularity": {"ndcg@10": 0.1}}}, None)[0]
    assert gate({"metric": "none", "n_queries": 0, "recommend": {}}, None)[0]
    assert not gate({"metric": "none", "n_queries": 0, "recommend": {}}, {"tag": "old", "metrics": {}})[0]


def test_spelling_correction_uses_the_catalogs_words_and_leaves_known_words_alone():
    from shoploop.models.retrieval import LexicalIndex

    index = LexicalIndex.build(["red cast iron pan", "cast iron pot", "iron kettle", "icon sticker"])
    assert index.correct("Red cast iorn pan") == "Red cast iron pan"  # neighbours swapped
    assert index.correct("irron kettle") == "iron kettle"             # a letter too many
    assert index.correct("icon kettle") == "icon kettle"              # known words are never changed
    assert index.correct("zzzz mat") == "zzzz mat"                    # nothing one edit away: kept
    assert index.correct("ikon") == "iron"  # one edit from "icon" and "iron": the word more items use


def test_words_the_shoppers_use_are_not_corrected_to_catalog_words():
    from shoploop.models.retrieval import LexicalIndex

    queries = ["phone cover", "red phone cover", "cover for phone", "phnoe cover"]
    index = LexicalIndex.build(["blue phone case", "hand over bag"], queries)
    assert index.correct("blue phone cover") == "blue phone cover"  # "cover" is in 4 queries: a word, not a typo
    assert index.correct("blue phnoe cover") == "blue phone cover"  # a typo in one query stays a typo


def test_the_request_path_scores_as_the_trained_network_does():
    # the ranker's score() (numpy, no concatenation) equals σ(forward()) of the network it was trained as
    import torch

    from shoploop.models.ranker import RankerConfig, SeedRanker

    rng = np.random.default_rng(3)
    ranker = SeedRanker(RankerConfig(embedding_dim=8, n_features=5))
    with torch.no_grad():
        ranker.theta.weight.normal_()
        ranker.feature_mean.copy_(torch.from_numpy(rng.normal(size=5).astype(np.float32)))
        ranker.feature_std.copy_(torch.from_numpy(rng.uniform(0.5, 2, size=5).astype(np.float32)))
    q, items, feats = rng.normal(size=8).astype(np.float32), rng.normal(size=(30, 8)).astype(np.float32), rng.normal(size=(30, 5))
    with torch.no_grad():
        expected = torch.sigmoid(ranker(torch.from_numpy(np.tile(q, (30, 1))), torch.from_numpy(items),
                                        torch.from_numpy(feats.astype(np.float32)))).numpy()
    np.testing.assert_allclose(ranker.score(q, items, feats), expected, rtol=1e-5, atol=1e-6)


def test_click_ndcg_is_one_for_clicks_on_top_and_falls_as_they_sink():
    from shoploop.models.evaluate import click_ndcg

    assert click_ndcg([1]) == 1.0 and click_ndcg([2, 1]) == 1.0
    assert click_ndcg([2]) == pytest.approx(1 / np.log2(3))
    assert 1.0 > click_ndcg([1, 3]) > click_ndcg([2, 3]) > click_ndcg([9, 10]) > 0
    with pytest.raises(ValueError):
        click_ndcg([])


class _FixedRanker:
    """A ranker with a fixed answer per query text (model_ndcg reads item_ids and search_rows)."""

    item_ids = ["a", "b", "c"]

    def search_rows(self, text, k):
        return (np.array([0, 1, 2]) if text == "good" else np.array([2, 1, 0]))[:k], None


def test_traffic_weighted_ndcg_weighs_each_query_by_its_searches():
    import pandas as pd

    from shoploop.models.evaluate import model_ndcg, query_ndcg, traffic_weighted

    # given two held-out queries judged alike, one answered in the ideal order and one reversed
    held = [q for q in (f"q{i}" for i in range(200)) if is_heldout(q)][:2]
    judgments = pd.DataFrame([{"query_id": q, "query_text": text, "item_id": item, "grade": grade}
                              for q, text in zip(held, ("good", "bad")) for item, grade in (("a", 3), ("b", 1), ("c", 0))])
    good, bad = 1.0, ndcg_at_k(["c", "b", "a"], {"a": 3, "b": 1}, 10)
    # then counted once each query weighs the same, weighted by searches the busy one decides
    assert model_ndcg(_FixedRanker(), judgments) == pytest.approx((good + bad) / 2, abs=1e-4)
    traffic = pd.Series({held[0]: 9, held[1]: 1})
    assert traffic_weighted(query_ndcg(_FixedRanker(), judgments), traffic) == pytest.approx((9 * good + bad) / 10, abs=1e-4)
    # and with no logged search of a held-out query there is no weighted figure
    assert traffic_weighted(query_ndcg(_FixedRanker(), judgments), pd.Series({"other": 5})) is None


def test_the_ranker_is_the_mean_of_its_seeded_fits_and_the_same_whatever_ran_before():
    import torch

    from shoploop.models.ranker import RankerConfig, SeedRanker

    rng = np.random.default_rng(5)
    n = 400
    q, i, f = (rng.normal(size=(n, 8)).astype(np.float32), rng.normal(size=(n, 8)).astype(np.float32),
               rng.normal(size=(n, 5)))
    target = (f[:, 0] + rng.normal(0, 0.5, n) > 0).astype(np.float32)
    config = RankerConfig(embedding_dim=8, n_features=5, epochs=2, batch_size=64, averaged_fits=3)
    # given the same rows / when fitted twice, the global random state moved between / then the same weights
    first = SeedRanker.fit_averaged(config, q, i, f, target)
    torch.rand(10)
    again = SeedRanker.fit_averaged(config, q, i, f, target)
    torch.testing.assert_close(first.theta.weight, again.theta.weight)
    # and they are the mean of the fits from seeds 7, 8 and 9
    singles = []
    for seed in (7, 8, 9):
        single = SeedRanker(RankerConfig(embedding_dim=8, n_features=5, epochs=2, batch_size=64, seed=seed))
        single.fit(q, i, f, target)
        singles.append(single.theta.weight)
    torch.testing.assert_close(first.theta.weight, torch.stack(singles).mean(0))
    assert len(first.losses) == 2 and all(isinstance(x, float) for x in first.losses)
    # the rows laid out once for every fit (SeedRanker.design) are what forward builds per batch
    x, _, _ = SeedRanker.design(q, i, f)
    with torch.no_grad():
        torch.testing.assert_close(first.theta(x).squeeze(-1), first(*(torch.from_numpy(a.astype(np.float32)) for a in (q, i, f))))
    # and the averaged ranker still learnt the signal: the informative feature ranks the positives higher
    scores = first.score(q[0], i, f)
    assert scores[target == 1].mean() > scores[target == 0].mean()


def test_small_fits_run_on_one_thread_and_give_the_count_back_even_on_error():
    import torch

    from shoploop.models import one_thread

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    seen = []

    @one_thread()
    def fit(fail: bool):
        seen.append(torch.get_num_threads())
        if fail:
            raise ValueError("bad rows")

    try:
        fit(False)
        with pytest.raises(ValueError):
            fit(True)
        assert seen == [1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)  # the tests after this one run as they would have
