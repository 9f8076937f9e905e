"""Propensities estimated from simulated logs match the simulator's true examination curve."""

from datetime import date

import numpy as np

from shoploop.data.simulator import MarketSimulator
from shoploop.models.bias import estimate_propensities, ipw_weights


def test_intervention_harvesting_recovers_the_examination_curve():
    # given logs from the simulator, whose shoppers examine position k with probability (1/k)^0.9
    events = MarketSimulator(seed=5, n_items=600, n_users=400, n_days=10, sessions_per_day=400).run(date(2026, 11, 29))["events"]
    human = events[~events["user_id"].str.startswith("bot-")]
    shown = human[human["event_type"] == "impression"]
    clicks = set(zip(*human.loc[human["event_type"] == "click", ["session_id", "item_id"]].T.values))
    logs = shown.assign(clicked=[(s, i) in clicks for s, i in zip(shown["session_id"], shown["item_id"])])
    # when propensities are estimated from the logs alone
    p = estimate_propensities(logs[["query_id", "item_id", "position", "clicked"]])
    truth = (1.0 / np.arange(1, 11)) ** 0.9
    # then they follow the truth (the curve falls, and the top positions are close)
    assert p[0] == 1.0 and p[4] < p[1] < p[0]
    assert np.abs(p[:5] - truth[:5]).max() < 0.12, p.round(3)


def test_ipw_weights_upweight_clicks_low_on_the_page():
    p = np.array([1.0, 0.5, 0.25])
    w = ipw_weights(np.array([1, 3, 3]), np.array([True, True, False]), p)
    assert w.tolist() == [1.0, 4.0, 1.0]
