from datetime import date

import pandas as pd
import pytest

from shoploop.data import landing
from shoploop.data.catalog import top_category
from shoploop.data.relevance import Intent, grade
from shoploop.data.simulator import MarketSimulator


@pytest.fixture(scope="module")
def tables():
    return MarketSimulator(seed=3, n_items=600, n_users=300, n_days=7, sessions_per_day=150).run(date(2026, 11, 29))


def test_same_seed_gives_the_same_shop(tables):
    # given the same seed and date / when simulated again / then every table is identical
    again = MarketSimulator(seed=3, n_items=600, n_users=300, n_days=7, sessions_per_day=150).run(date(2026, 11, 29))
    for name in tables:
        pd.testing.assert_frame_equal(tables[name], again[name])


def test_tables_fit_the_contract(tables):
    for name, frame in tables.items():
        if name != "query_types":  # the simulator's truth for evaluation, never landed
            assert landing.to_table(name, frame).num_rows == len(frame)


def test_every_query_has_a_type_and_each_type_occurs(tables):
    types = tables["query_types"]
    assert set(tables["judgments"]["query_id"]) <= set(types["query_id"])
    counts = types["query_type"].value_counts()
    assert set(counts.index) == {"exact", "paraphrase", "attribute-only", "misspelled"} and counts.min() >= 5


def test_catalog_has_variety(tables):
    items = tables["items"]
    assert items["category_path"].map(top_category).nunique() >= 5
    assert items["item_id"].is_unique
    # heavy-tailed prices: the top 1% costs several times the median
    assert items["price"].quantile(0.99) > 3 * items["price"].median()


def test_events_cover_seven_days_and_every_event_type(tables):
    events = tables["events"]
    assert events["ts"].dt.date.nunique() == 7
    assert set(events["event_type"]) == set(landing.EVENT_TYPES)
    assert events["event_id"].is_unique


def test_clicks_show_position_bias(tables):
    events = tables["events"]
    shown = events[events["event_type"] == "impression"].groupby("position").size()
    clicked = events[events["event_type"] == "click"].groupby("position").size()
    ctr = (clicked / shown).fillna(0)
    assert ctr[1] > ctr[5] > ctr[10]


def test_clicks_follow_relevance(tables):
    # given the graded judgments / when joined to impressions / then clicked items are more relevant
    events, judgments = tables["events"], tables["judgments"]
    grades = judgments.set_index(["query_id", "item_id"])["grade"]
    imp = events[events["event_type"] == "impression"].copy()
    clicks = events[events["event_type"] == "click"]
    clicked = set(zip(clicks["session_id"], clicks["item_id"]))
    imp["grade"] = [grades.get((q, i), 0) for q, i in zip(imp["query_id"], imp["item_id"])]
    imp["clicked"] = [(s, i) in clicked for s, i in zip(imp["session_id"], imp["item_id"])]
    assert imp.loc[imp["clicked"], "grade"].mean() > imp.loc[~imp["clicked"], "grade"].mean() + 0.5


def test_popularity_is_long_tailed(tables):
    clicks = tables["events"].query("event_type == 'click'")["item_id"].value_counts()
    top_decile = clicks.iloc[: max(1, len(clicks) // 10)].sum()
    assert top_decile / clicks.sum() > 0.3


def test_grades_follow_attributes():
    item = {"type": "frying pan", "colour": "red", "material": "cast iron", "brand": "Ferro", "price": 30.0}
    assert grade(Intent("frying pan", colour="red"), item) == 3
    assert grade(Intent("frying pan", colour="blue"), item) == 2
    assert grade(Intent("frying pan", max_price=20.0), item) == 2
    assert grade(Intent("spatula"), item) == 1  # a pan complements a spatula
    assert grade(Intent("yoga mat"), item) == 0


def test_judgments_grade_every_relevant_item(tables):
    judgments = tables["judgments"]
    assert set(judgments["grade"]) == {0, 1, 2, 3}
    per_query = judgments.groupby("query_id")["grade"].max()
    assert (per_query >= 2).mean() > 0.9


def test_some_products_are_relisted_under_a_second_id(tables):
    items = tables["items"]
    key = items["title"].str.lower().str.split().str.join(" ") + "|" + items["brand"] + "|" + items["category_path"]
    relisted = items[key.duplicated(keep=False)]
    assert key.duplicated().sum() >= 3 and relisted["item_id"].is_unique


def test_a_wave_of_new_items_does_not_exist_before_it_starts_and_the_shop_is_the_same_around_it():
    from shoploop.data.simulator import parse_drifts

    def shop(run_date):
        return MarketSimulator(seed=3, n_items=300, n_users=100, n_days=5, sessions_per_day=50,
                               drifts=parse_drifts("new_items@2026-11-28")).run(run_date)

    before, after = shop(date(2026, 11, 28)), shop(date(2026, 11, 30))
    # the day before the wave: none of its items in the catalog, none shown
    assert len(before["items"]) < len(after["items"])
    arrived = set(after["items"]["item_id"]) - set(before["items"]["item_id"])
    assert len(arrived) >= 30 and not arrived & set(before["events"]["item_id"])
    # the wave's items arrive on its day, and every other item is the one listed before
    created = after["items"].set_index("item_id").loc[sorted(arrived), "created_at"]
    assert (created >= pd.Timestamp("2026-11-28")).all()
    both = before["items"].merge(after["items"], on="item_id")
    assert len(both) == len(before["items"])
    assert (both["title_x"] == both["title_y"]).all() and (both["price_x"] == both["price_y"]).all()


def test_a_daily_run_lands_the_new_day_alone_and_the_logs_already_landed_stay(tmp_path):
    from datetime import timedelta

    from shoploop.data import simulate
    from shoploop.settings import Settings

    def landed() -> pd.DataFrame:
        return pd.concat([pd.read_parquet(f) for f in sorted((tmp_path / "landing" / "events").rglob("*.parquet"))])

    settings = Settings(home=tmp_path, seed=3, n_items=300, n_users=100, n_days=5, sessions_per_day=40)
    day = date(2026, 11, 29)
    # given a home holding the window before the day
    assert simulate(settings, day - timedelta(days=1))["event_days"] == 5
    before = landed()
    # when the day's run lands, then only its new day has sessions, under ids never landed before
    counts = simulate(settings, day)
    after = landed()
    new = after[after["ts"].dt.date == day - timedelta(days=1)]
    assert counts["event_days"] == 1 and counts["events"] == len(new) > 0
    assert after["event_id"].is_unique and not set(new["session_id"]) & set(before["session_id"])
    # and every event landed before is there, unchanged
    pd.testing.assert_frame_equal(after[after["ts"].dt.date < day - timedelta(days=1)].sort_values("event_id", ignore_index=True),
                                  before.sort_values("event_id", ignore_index=True))
    # and the new day's shoppers are not a replay of the window's first day
    first = before[before["ts"].dt.date == before["ts"].dt.date.min()]
    assert first.groupby("session_id")["query_id"].first().tolist() != new.groupby("session_id")["query_id"].first().tolist()
    # and running the same day again lands no events twice
    assert simulate(settings, day)["events"] == 0 and len(landed()) == len(after)
