"""Learning signals: what trains is what the data holds, and unjudged means unknown, never irrelevant."""

import numpy as np
import pandas as pd
import pytest

from shoploop.models import labels
from shoploop.models.finetune import training_triplets
from shoploop.models.ranker import ITEM_FEATURES, RankerConfig, SeedRanker
from shoploop.models.ranker_rows import (
    JUDGED,
    LOG_WEIGHTS,
    LOGGED,
    RELEVANCE_TOLERANCE,
    UNJUDGED,
    UNJUDGED_WEIGHTS,
    RankerRows,
    choose_scale,
    clearly_better,
    judged_rows,
)
from shoploop.models.retrieval import LexicalIndex

COLOURS = ["red", "blue", "green", "black", "white", "grey"]
TYPES = ["kettle", "skillet", "lamp", "chair", "drill"]
ITEMS = [f"{c} {t}" for t in TYPES for c in COLOURS]  # 30 items, one of each colour and type


def _judgments(per_query: int, queries: int = 5) -> pd.DataFrame:
    return pd.DataFrame([{"query_id": f"q{q}", "query_text": f"query {q}", "item_id": f"i{i}", "grade": (q + i) % 4}
                         for q in range(queries) for i in range(per_query)])


def _logs(clicked: bool = True) -> pd.DataFrame:
    return pd.DataFrame({"query_id": ["q1"] * 4, "query_text": ["red kettle"] * 4, "item_id": ["i0", "i1", "i2", "i3"],
                         "session_id": ["s1"] * 4, "position": [1, 2, 3, 4],
                         "clicked": [False, False, clicked, False], "carted": [False, False, False, False],
                         "purchased": [False, False, False, False]})


@pytest.mark.parametrize("judged, logs, mode, complete", [
    (_judgments(60), _logs(), "judgments+logs", True),
    (_judgments(7), _logs(), "judgments+logs", False),
    (_judgments(7), _logs(clicked=False), "judgments", False),
    (_judgments(0), _logs(), "logs", False),
    (_judgments(0), _logs(clicked=False), "none", False),
])
def test_the_plan_takes_what_the_data_holds(judged, logs, mode, complete):
    # given judgments of some depth and logs with or without a click / when planned / then
    plan = labels.plan(judged, logs, n_items=5000)
    assert plan.mode == mode
    assert plan.judgments_complete is complete


def test_completeness_is_judged_against_the_catalog_size():
    # a small shop's simulator judges 20-odd items a query: every relevant one, so complete; a
    # real catalog's handful of judged items a query is sparse whatever the catalog
    assert labels.is_complete(_judgments(21), n_items=400)
    assert not labels.is_complete(_judgments(7), n_items=400)
    assert not labels.is_complete(_judgments(21), n_items=54_667)


def test_insisting_on_a_signal_the_data_lacks_is_a_clear_error():
    with pytest.raises(ValueError, match="no search logs with clicks"):
        labels.plan(_judgments(7), _logs(clicked=False), 5000, "logs")
    assert labels.plan(_judgments(60), _logs(), 5000, "logs").mode == "logs"  # the simulator's judgments withheld


def test_implicit_grades_order_purchase_cart_click_skip():
    logs = _logs().assign(clicked=[True, True, True, False], carted=[True, True, False, False],
                          purchased=[True, False, False, False])
    assert labels.implicit_grades(logs).tolist() == [3, 2, 1, 0]


def _sessions(item: str, positions: list[int], clicks: list[bool], carted: bool = False) -> pd.DataFrame:
    """One logged pair shown in several sessions of query q1."""
    n = len(positions)
    return pd.DataFrame({"query_id": ["q1"] * n, "query_text": ["red kettle"] * n, "item_id": [item] * n,
                         "session_id": [f"s{k}" for k in range(n)], "position": positions, "clicked": clicks,
                         "carted": [carted and c for c in clicks], "purchased": [False] * n})


def test_the_click_model_sums_expected_examinations_and_smooths_attractiveness():
    # given an item shown twice at the top (clicked once) and twice at position 2 (never clicked),
    # where only half the shoppers examine position 2
    logs = _sessions("i0", [1, 1, 2, 2], [True, False, False, False])
    pairs = labels.click_model(logs, np.array([1.0, 0.5]))
    # then it was examined 1 + 1 + 0.5 + 0.5 = 3 times, clicked once, and with every pair's mean
    # (1 / 3) as the prior its attractiveness stays 1 / 3
    pair = pairs.iloc[0]
    assert pair["examinations"] == pytest.approx(3.0) and pair["clicks"] == 1
    assert pair["attractiveness"] == pytest.approx(1 / 3)


def test_confident_labels_keep_clicks_the_position_does_not_explain_and_examined_skips():
    propensities = np.array([1.0, 0.5, 0.25, 0.2, 0.2])
    logs = pd.concat([
        _sessions("often", [3, 3, 3, 3], [True, True, True, False]),      # clicked far above its slot's examination
        _sessions("top", [1, 1, 1, 1, 1, 1], [True] + [False] * 5),       # one click at the top in six: the slot's doing
        _sessions("cart", [1], [True], carted=True),                      # added to a cart: a positive whatever its rate
        _sessions("skipped", [1, 2], [False, False]),                     # examined 1.5 times, never clicked
        _sessions("unseen", [5, 5], [False, False]),                      # examined 0.4 times: unknown
    ])
    positives, skips = labels.confident_labels(labels.click_model(logs, propensities))
    assert sorted(positives["item_id"]) == ["cart", "often"]
    assert dict(zip(positives["item_id"], positives["grade"])) == {"cart": labels.CART, "often": labels.CLICK}
    assert skips["item_id"].tolist() == ["skipped"]


def _rows(complete: bool, n_queries: int = 160):
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(len(ITEMS), 8)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    row_of = {f"i{i}": i for i in range(len(ITEMS))}
    # each query judges its type's items of two colours (sparse) or all six (complete)
    judged = []
    for q in range(n_queries):
        t = q % len(TYPES)
        for c in range(len(COLOURS) if complete else 2):
            judged.append({"query_id": f"q{q}", "query_text": f"{COLOURS[(q + c) % 6]} {TYPES[t]}",
                           "item_id": f"i{t * 6 + (q + c) % 6}", "grade": 3 if c == 0 else 2})
    judged = pd.DataFrame(judged)
    queries = judged[["query_id", "query_text"]].drop_duplicates("query_id")
    q_emb = embeddings[[row_of[i] for i in judged.drop_duplicates("query_id")["item_id"]]]
    feats = rng.random((len(ITEMS), len(ITEM_FEATURES)))
    return judged_rows(queries, judged, q_emb, embeddings, feats, feats.mean(0), row_of,
                       LexicalIndex.build(ITEMS), complete), judged


def test_sparse_judgments_never_make_an_unjudged_item_a_full_negative():
    # given sparse judgments (two judged items a query) / when the ranker rows and weights are built
    rows, judged = _rows(complete=False)
    plan = labels.LabelPlan(True, False, False, 2.0, "test")
    scale, config, report = choose_scale(rows, plan, RankerConfig(embedding_dim=8, epochs=2))
    # then every judged pair is a row with its grade, every other row is unjudged with target 0,
    # and an unjudged row weighs at most the largest weak weight tried, measured on validation queries
    # (by the judged pools' Spearman), as is whether the ranker weighs the text
    assert (rows.kind == JUDGED).sum() == len(judged)
    assert set(rows.kind) == {JUDGED, UNJUDGED}
    assert (rows.target[rows.kind == UNJUDGED] == 0).all()
    assert scale[UNJUDGED] in UNJUDGED_WEIGHTS and scale[UNJUDGED] < 1.0
    assert report["validation_queries"] >= 10 and len(report["unjudged_weight_validation_spearman"]) == len(UNJUDGED_WEIGHTS)
    with_text, alone = report["text_validation_spearman"].values()
    errors = report["validation_spearman_standard_error"]
    assert config.text == report["ranker_text"] and (not config.text or with_text > alone) and errors["text"] >= 0
    # and the fitted ranker serves only where it orders the pools better than the encoder alone, beyond noise
    fitted, encoder = report["encoder_alone_validation_spearman"].values()
    assert fitted == (with_text if config.text else alone)
    assert (config.fixed or fitted > encoder) and errors["encoder"] >= 0 and report["ranker_fixed"] == (list(config.fixed) or None)
    assert (rows.fit(scale, config).losses == []) == bool(config.fixed)


def test_a_richer_ranker_must_beat_the_simpler_beyond_the_noise_of_its_validation_queries():
    rng = np.random.default_rng(3)
    simpler = pd.Series(rng.uniform(-1, 1, 300), index=[f"q{i}" for i in range(300)])
    # a steady gain on every query is clear; the same mean gain as noise of +-0.5 a query is not
    assert clearly_better(simpler + 0.02, simpler)[0]
    noise = rng.normal(0, 0.5, 300)
    noisy = simpler + 0.005 + noise - noise.mean()
    better, error = clearly_better(noisy, simpler)
    assert not better and error > 0.02
    # a simpler ranker that is better, or a tie, keeps the simpler; only the queries both could score count
    assert not clearly_better(simpler, simpler + 0.02)[0] and not clearly_better(simpler, simpler)[0]
    assert clearly_better((simpler + 0.02).iloc[:50], simpler)[0]
    assert clearly_better(simpler.iloc[:1] + 0.02, simpler) == (True, None)


def test_a_ranker_without_text_weighs_the_features_alone():
    # given rows whose target follows one feature / when a ranker is fitted with text off
    rng = np.random.default_rng(3)
    hq, hi, hf = (rng.normal(size=(400, n)).astype(np.float32) for n in (8, 8, len(ITEM_FEATURES) + 4))
    target = (hf[:, 0] > 0).astype(np.float32)
    ranker = SeedRanker.fit_averaged(RankerConfig(embedding_dim=8, epochs=20, batch_size=50, lr=0.05, text=False, averaged_fits=2), hq, hi, hf, target)
    # then its text weights are exactly zero, and it learnt the feature
    weight = ranker.theta.weight.detach().numpy()[0]
    assert (weight[:24] == 0).all() and weight[24] > 0.5
    assert RankerConfig(**ranker.state()["config"]).text is False


def test_the_encoder_alone_orders_by_the_cosine_and_is_saved_as_such():
    # given a ranker that weighs the cosine alone / when it scores candidates, saved and loaded again
    rng = np.random.default_rng(4)
    hq, hi = rng.normal(size=8).astype(np.float32), rng.normal(size=(30, 8)).astype(np.float32)
    hf = rng.normal(size=(30, len(ITEM_FEATURES) + 4)).astype(np.float32)
    ranker = SeedRanker.from_state(SeedRanker.matching(RankerConfig(embedding_dim=8, fixed=("cosine",))).state())
    # then its order is the cosine's, whatever the other features say
    cosine = hf[:, len(ITEM_FEATURES) + 1]
    assert ranker.config.fixed == ("cosine",)
    assert (np.argsort(-ranker.score(hq, hi, hf), kind="stable") == np.argsort(-cosine, kind="stable")).all()


def test_complete_judgments_make_unjudged_candidates_full_negatives():
    rows, _ = _rows(complete=True)
    scale, config, _ = choose_scale(rows, labels.LabelPlan(True, False, True, 60.0, "test"), RankerConfig(embedding_dim=8, epochs=2))
    assert scale[UNJUDGED] == 1.0 and config.text  # complete judgments: the text is always weighed


def _with_logs(rows: RankerRows, seed: int = 1) -> RankerRows:
    """The judged rows, each item's "rating" set to a quality of its own, and one logged pair per judged
    (query, item) whose attractiveness follows the grade and that quality: judges grade relevance,
    shoppers also click on quality."""
    rating = ITEM_FEATURES.index("rating")
    keys = [h.tobytes() for h in rows.hi]
    item = np.array([{k: i for i, k in enumerate(dict.fromkeys(keys))}[k] for k in keys])
    rows.hf[:, rating] = np.random.default_rng(seed).normal(size=item.max() + 1)[item]
    judged = np.flatnonzero(rows.kind == JUDGED)
    attract = 1 / (1 + np.exp(-(-2.0 + 0.8 * rows.grade[judged] + 1.5 * rows.hf[judged, rating])))
    logged = RankerRows(hq=rows.hq[judged], hi=rows.hi[judged], hf=rows.hf[judged], target=attract.astype(np.float32),
                        weight=np.ones(len(judged), np.float32), kind=np.full(len(judged), LOGGED),
                        query_id=rows.query_id[judged], grade=np.full(len(judged), -1))
    return RankerRows.concat([rows, logged])


def test_the_log_weight_is_the_one_shoppers_clicks_favour_among_the_most_relevant():
    # given complete judgments, and logs whose clicks also follow a quality the judges did not grade
    rows, _ = _rows(complete=True)
    both = _with_logs(rows)
    # when the label weights are chosen with judgments and logs together
    scale, _, report = choose_scale(both, labels.LabelPlan(True, True, True, 60.0, "test"), RankerConfig(embedding_dim=8, epochs=4))
    ndcg, clicks = report["log_weight_validation_ndcg@10"], report["log_weight_validation_click_ndcg@10"]
    # then both criteria are measured for every weight, the chosen one keeps judged nDCG within the
    # tolerance of the best, and no weight within it orders the logged pairs better by clicks
    assert set(ndcg) == set(clicks) == set(LOG_WEIGHTS)
    assert ndcg[scale[LOGGED]] >= max(ndcg.values()) - RELEVANCE_TOLERANCE
    assert all(clicks[w] <= clicks[scale[LOGGED]] for w in LOG_WEIGHTS if ndcg[w] >= max(ndcg.values()) - RELEVANCE_TOLERANCE)
    # and here the quality is worth learning: a weight above 0 orders shoppers' clicks better than none
    assert scale[LOGGED] > 0 and clicks[scale[LOGGED]] > clicks[0.0]


def test_click_ndcg_ranks_logged_pairs_by_their_attractiveness():
    # given one validation query's three logged pairs and a ranker that scores by the "rating" feature
    import torch

    from shoploop.models.ranker import SeedRanker

    config = RankerConfig(embedding_dim=2)
    ranker = SeedRanker(config)
    with torch.no_grad():
        ranker.theta.weight.zero_()
        ranker.theta.weight[0, 3 * 2 + ITEM_FEATURES.index("rating")] = 1.0
    hf = np.zeros((3, config.n_features), np.float32)
    hf[:, ITEM_FEATURES.index("rating")] = [3.0, 2.0, 1.0]
    rows = RankerRows(hq=np.ones((3, 2), np.float32), hi=np.ones((3, 2), np.float32), hf=hf,
                      target=np.array([0.6, 0.3, 0.1], np.float32), weight=np.ones(3, np.float32),
                      kind=np.full(3, LOGGED), query_id=np.array(["v"] * 3, dtype=object), grade=np.full(3, -1))
    # then the order the shoppers' clicks favour scores 1, the reverse less, as DCG computes it
    assert rows.validation_click_ndcg(ranker, np.array(["v"], dtype=object)) == pytest.approx(1.0)
    rows.hf[:, ITEM_FEATURES.index("rating")] = [1.0, 2.0, 3.0]
    d = 1 / np.log2(np.arange(2, 5))
    assert rows.validation_click_ndcg(ranker, np.array(["v"], dtype=object)) == pytest.approx(
        (np.array([0.1, 0.3, 0.6]) @ d) / (np.array([0.6, 0.3, 0.1]) @ d))
    # and a query with no logged pair gives no number
    assert np.isnan(rows.validation_click_ndcg(ranker, np.array(["w"], dtype=object)))


def test_sparse_triplets_take_negatives_only_from_labelled_items():
    # given one query judging two items relevant and one irrelevant, the rest unjudged
    embeddings = np.eye(len(ITEMS), dtype=np.float32)
    queries = pd.DataFrame({"query_id": ["q"], "query_text": ["red kettle"]})
    grades = {"q": {0: 3, 1: 2, 2: 0}}
    # when the triplets are built without unlabelled negatives
    triplets = training_triplets(queries, grades, {}, ITEMS, LexicalIndex.build(ITEMS), embeddings, embeddings[:1], 7,
                                 unlabelled_negatives=False)
    # then the positive is the best-graded item and every negative was judged irrelevant
    assert triplets and {t[1] for t in triplets} == {ITEMS[0]} and {t[2] for t in triplets} == {ITEMS[2]}


def test_logs_only_triplets_learn_from_clicks_against_examined_skips():
    embeddings = np.eye(len(ITEMS), dtype=np.float32)
    queries = pd.DataFrame({"query_id": ["q"], "query_text": ["red kettle"]})
    # a purchase (grade 3) and a click (1) on the query; item 4 was examined and skipped
    triplets = training_triplets(queries, {"q": {0: 3, 3: 1}}, {"q": [4]}, ITEMS, LexicalIndex.build(ITEMS), embeddings,
                                 embeddings[:1], 7, min_grade=labels.CLICK, unlabelled_negatives=False)
    assert [(t[1], t[2]) for t in triplets] == [(ITEMS[0], ITEMS[4])]
    # implicit grades (top_only False): the click is a positive too, both against the skip alone, although
    # the zero-shot retriever ranks other red kettles' neighbours high (unlogged: unknown, never a negative)
    triplets = training_triplets(queries, {"q": {0: 3, 3: 1}}, {"q": [4]}, ITEMS, LexicalIndex.build(ITEMS), embeddings,
                                 embeddings[:1], 7, min_grade=labels.CLICK, unlabelled_negatives=False, top_only=False)
    assert sorted((t[1], t[2]) for t in triplets) == sorted([(ITEMS[0], ITEMS[4]), (ITEMS[3], ITEMS[4])])


def test_a_query_with_no_known_negative_learns_against_random_items():
    embeddings = np.eye(len(ITEMS), dtype=np.float32)
    queries = pd.DataFrame({"query_id": ["q"], "query_text": ["red kettle"]})
    # given a purchase and a cart and no examined skip / when the triplets are built
    triplets = training_triplets(queries, {"q": {0: 3, 6: 2}}, {}, ITEMS, LexicalIndex.build(ITEMS), embeddings,
                                 embeddings[:1], 7, min_grade=labels.CLICK, unlabelled_negatives=False, top_only=False)
    # then both positives train, each against a catalog item the logs did not make a positive
    assert {t[1] for t in triplets} == {ITEMS[0], ITEMS[6]}
    assert all(t[2] in ITEMS and t[2] not in (ITEMS[0], ITEMS[6]) for t in triplets)


def test_the_encoder_learns_from_carts_and_purchases_once_enough_queries_have_them():
    # given confident positives of every grade / when enough queries have a cart or a purchase / then
    # the encoder's positives are those alone; with too few, every confident positive (clicks too)
    def positives(strong_queries: int) -> pd.DataFrame:
        rows = [{"query_id": f"q{q}", "query_text": "t", "item_id": "i1", "grade": labels.CLICK} for q in range(80)]
        rows += [{"query_id": f"q{q}", "query_text": "t", "item_id": "i2", "grade": labels.CART + q % 2}
                 for q in range(strong_queries)]
        return pd.DataFrame(rows)

    chosen, said = labels.encoder_positives(positives(labels.ENCODER_MIN_QUERIES))
    assert set(chosen["grade"]) == {labels.CART, labels.PURCHASE} and said == "carts and purchases"
    chosen, said = labels.encoder_positives(positives(labels.ENCODER_MIN_QUERIES - 1))
    assert len(chosen) == 80 + labels.ENCODER_MIN_QUERIES - 1 and said.startswith("clicks, carts and purchases")
