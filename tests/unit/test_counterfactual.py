"""The counterfactual click estimate recovers what a ranking would get under a known click model."""

import numpy as np
import pandas as pd

from shoploop.monitoring.counterfactual import expected_clicks, logged_clicks

THETA = np.array([1.0, 0.6, 0.35, 0.2])
ALPHA = {"a": 0.8, "b": 0.5, "c": 0.2, "d": 0.05}


def _logs(searches: int = 6000, seed: int = 0) -> pd.DataFrame:
    # a logging ranker that shuffles the four items for every search; clicks from the position-based model
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(searches):
        for position, item in enumerate(rng.permutation(list(ALPHA)), 1):
            clicked = rng.random() < THETA[position - 1] * ALPHA[item]
            rows.append(("q1", "red pan", item, f"s{s}", position, clicked))
    return pd.DataFrame(rows, columns=["query_id", "query_text", "item_id", "session_id", "position", "clicked"])


def test_the_estimate_matches_the_click_model_and_its_interval_holds_the_truth():
    logs = _logs()
    best = ["a", "b", "c", "d"]
    truth = float(sum(THETA[i] * ALPHA[item] for i, item in enumerate(best)))
    got = expected_clicks(logs, lambda text: best, THETA, k=4)
    assert got["ci95"][0] <= truth <= got["ci95"][1] or abs(got["clicks_per_search"] - truth) < 0.02
    assert abs(got["clicks_per_search"] - truth) < 0.03 and got["logged_slot_share"] == 1.0
    worst = expected_clicks(logs, lambda text: best[::-1], THETA, k=4)
    assert worst["clicks_per_search"] < got["clicks_per_search"]  # the better ranking is estimated better
    shuffled = logged_clicks(logs, THETA, k=4)  # a shuffling logger: every item's mean slot is about the same
    assert worst["clicks_per_search"] < shuffled["observed_clicks_per_search"] < got["clicks_per_search"]
    assert shuffled["logged_slot_share"] == 1.0


def test_an_item_never_logged_for_the_query_counts_nothing_and_is_reported():
    got = expected_clicks(_logs(500), lambda text: ["new-item", "a"], THETA, k=2)
    assert got["logged_slot_share"] == 0.5
    assert abs(got["clicks_per_search"] - THETA[1] * ALPHA["a"]) < 0.1
