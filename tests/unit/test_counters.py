"""Real-time counters: the trailing-24-hour window, what is counted, and a rebuild after a restart."""

from datetime import datetime, timedelta

import pandas as pd

from shoploop.features import counters, stream
from shoploop.settings import Settings

NOW = datetime(2026, 11, 29, 15, 30)


def _events(*rows, session="s1") -> pd.DataFrame:
    """rows: (item_id, event_type, hours before NOW[, surface[, session]])."""
    return pd.DataFrame([{"item_id": r[0], "event_type": r[1], "ts": NOW - timedelta(hours=r[2]),
                          "surface": r[3] if len(r) > 3 else "search", "session_id": r[4] if len(r) > 4 else session}
                         for r in rows])


def test_counts_search_events_of_the_last_24_hours_only():
    live = counters.LiveCounters()
    touched = live.add(_events(("a", "impression", 0.1), ("a", "impression", 5), ("a", "click", 5),
                               ("a", "purchase", 23), ("a", "impression", 26),  # older than the window
                               ("a", "view", 1), ("a", "add_to_cart", 1),       # not counted
                               ("b", "click", 2, "recommend")))                  # not a search event
    assert touched == {"a"}
    row = live.values(["a", "b"], NOW).set_index("item_id")
    assert row.loc["a", ["impressions_24h", "clicks_24h", "purchases_24h"]].tolist() == [2, 1, 1]
    assert row.loc["b", ["impressions_24h", "clicks_24h", "purchases_24h"]].tolist() == [0, 0, 0]


def test_counts_age_out_as_time_passes_and_accumulate_across_batches():
    live = counters.LiveCounters()
    live.add(_events(("a", "impression", 1, "search", "s1"), ("a", "click", 1, "search", "s1")))
    live.add(_events(("a", "impression", 0.2, "search", "s2"), ("a", "click", 0.2, "search", "s2"),
                     ("a", "impression", 0.1, "search", "s3"), ("a", "click", 0.1, "search", "s3")))
    assert live.values(["a"], NOW)["clicks_24h"].item() == 3
    assert live.values(["a"], NOW + timedelta(hours=23, minutes=15))["clicks_24h"].item() == 2
    assert live.values(["a"], NOW + timedelta(hours=25))["clicks_24h"].item() == 0


def test_a_restart_rebuilds_the_counters_from_the_durable_log(tmp_path):
    settings = Settings(home=tmp_path)
    now = datetime.utcnow()
    sent = [{"session_id": "s1", "event_type": t, "item_id": "i1", "surface": "search", "ts": now - timedelta(hours=h)}
            for t, h in (("impression", 3), ("click", 0), ("impression", 0), ("purchase", 20))]
    stream.record_events(settings, [{"session_id": "s2", "event_type": "click", "item_id": "i1", "surface": "search"}])
    stream.record_events(settings, sent)
    stream.record_events(settings, [{"session_id": "s2", "event_type": "impression", "item_id": "i1", "surface": "search"}])
    rebuilt = counters.from_log(settings, now + timedelta(minutes=1))
    got = rebuilt.values(["i1"], now + timedelta(minutes=1)).iloc[0]
    assert [got.impressions_24h, got.clicks_24h, got.purchases_24h] == [3, 2, 1]


def test_clicks_without_an_impression_and_repeated_clicks_are_not_counted():
    # given a bot clicking an item it was never shown, and a shopper clicking one result five times
    live = counters.LiveCounters()
    live.add(_events(*[("a", "click", 0.5, "search", "bot")] * 40, ("a", "purchase", 0.5, "search", "bot")))
    live.add(_events(("b", "impression", 1), *[("b", "click", 0.9)] * 5, ("b", "purchase", 0.8)))
    got = live.values(["a", "b"], NOW).set_index("item_id")
    # then the bot's engagement counts nothing, and the shopper's clicks count once
    assert got.loc["a", ["impressions_24h", "clicks_24h", "purchases_24h"]].tolist() == [0, 0, 0]
    assert got.loc["b", ["impressions_24h", "clicks_24h", "purchases_24h"]].tolist() == [1, 1, 1]
    assert live.unattributed == 41 + 4
