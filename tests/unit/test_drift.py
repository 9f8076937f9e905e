"""Each drift scenario leaves a visible mark in the simulated data after its start, and none before."""

from datetime import date

import pandas as pd
import pytest

from shoploop.data.relevance import CATEGORIES
from shoploop.data.simulator import MarketSimulator, parse_drifts

RUN_DATE, START = date(2026, 11, 29), pd.Timestamp("2026-11-25")


def _events(drift: str) -> dict:
    return MarketSimulator(5, 600, 300, 8, 150, parse_drifts(drift)).run(RUN_DATE)


def _before_after(events: pd.DataFrame):
    return events[events["ts"] < START], events[events["ts"] >= START]


def test_trend_shift_moves_searches_to_sports():
    items = _events("trend_shift@2026-11-25")
    events = items["events"].merge(items["items"][["item_id", "category_path"]], on="item_id")
    sessions = events.drop_duplicates("session_id")
    before, after = _before_after(sessions)
    share = lambda f: f["category_path"].str.startswith("Sports").mean()  # noqa: E731
    assert share(after) > share(before) + 0.15


def test_price_shock_raises_electronics_prices_seen():
    tables = _events("price_shock@2026-11-25")
    events = tables["events"].merge(tables["items"][["item_id", "category_path"]], on="item_id")
    shown = events[(events["event_type"] == "impression") & events["category_path"].str.startswith("Electronics")]
    before, after = _before_after(shown)
    per_item = after.groupby("item_id")["price_seen"].mean() / before.groupby("item_id")["price_seen"].mean()
    assert per_item.dropna().round(2).eq(1.6).all()


def test_new_items_arrive_without_history_and_get_shown():
    tables = _events("new_items@2026-11-25")
    items = tables["items"]
    new = items.iloc[600:660]  # the wave comes on top of the 600-item catalog (relistings follow it)
    assert len(new) == 60 and (new["created_at"] >= START).all() and (new["review_count"] == 0).all()
    assert tables["events"]["item_id"].isin(new["item_id"]).any()


def test_vocab_shift_brings_new_query_words():
    before, after = _before_after(_events("vocab_shift@2026-11-25")["events"])
    unseen = ~after["query_text"].isin(set(before["query_text"]))
    assert unseen.mean() > 0.3


def test_shifted_query_forms_are_judged_only_once_shoppers_type_them():
    started = _events("vocab_shift@2026-11-25")
    before, after = _before_after(started["events"])
    new_words = set(after["query_text"].dropna()) - set(before["query_text"].dropna())
    judged = set(started["judgments"]["query_text"])
    assert new_words and len(new_words & judged) > 0.9 * len(new_words)
    simulator = lambda: MarketSimulator(5, 600, 300, 8, 150, parse_drifts("vocab_shift@2026-12-05"))  # noqa: E731
    pool = simulator().truth(RUN_DATE)[4]
    tomorrow = set(pool["shifted_text"].dropna()) - set(pool["query_text"])
    judged_ahead = set(simulator().run(RUN_DATE)["judgments"]["query_text"])
    assert tomorrow and not judged_ahead & tomorrow  # tomorrow's words are not judged today
    assert judged_ahead <= set(pool["query_text"])


def test_bots_click_blind_to_position():
    events = _events("bots@2026-11-25")["events"]
    bots = events[events["user_id"].str.startswith("bot-")]
    assert len(bots) and (bots["ts"] >= START).all()
    shown = bots[bots["event_type"] == "impression"].groupby("position").size()
    ctr = bots[bots["event_type"] == "click"].groupby("position").size() / shown
    assert ctr.max() - ctr.min() < 0.15 and ctr.mean() > 0.4
    assert not bots["event_type"].isin(["purchase", "add_to_cart"]).any()


def test_no_drift_means_no_bots_and_stable_prices():
    events = _events("")["events"]
    assert not events["user_id"].str.startswith("bot-").any()


@pytest.mark.parametrize("spec, message", [("meteor@2026-11-25", "unknown drift"), ("bots", "needs a start date")])
def test_bad_drift_specs_are_clear_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_drifts(spec)


def test_categories_cover_the_catalog():
    assert "Sports & Outdoors" in CATEGORIES and "Electronics" in CATEGORIES
