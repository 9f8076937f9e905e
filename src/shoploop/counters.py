"""Real-time item counters: each item's search impressions, clicks and purchases of the trailing 24
hours, kept by the service from the feedback it accepts and pushed to Feast's online store
(push source ``item_counters_push``) so the very next ranking reads them.

The durable event log is the source of truth: at start the counters are rebuilt from its last two
days, so a restart loses nothing, and the ``item_counters`` mart (dbt) computes the same counts
from the same log as the offline history that training sets are joined against. Counts are kept in
hourly buckets; the window is the current hour and the 23 before it, so the counters just before
the top of an hour equal the mart's snapshot at that hour. One service worker owns its
counters (``workers=1`` in services/service.py); several workers would need a shared counter store.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

from shoploop.data import landing
from shoploop.models.ranker import COUNTERS
from shoploop.settings import Settings

PUSH_SOURCE = "item_counters_push"
# event_type -> counter, in COUNTERS' order
COUNTED = dict(zip(("impression", "click", "purchase"), COUNTERS))
WINDOW_HOURS = 24


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class LiveCounters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # item_id -> hour -> [impressions, clicks, purchases]
        self._hours: dict[str, dict[datetime, np.ndarray]] = defaultdict(dict)

    def add(self, events: pd.DataFrame) -> set[str]:
        """Count search events (columns item_id, event_type, surface, ts as naive UTC); returns the items touched."""
        counted = events[events["event_type"].isin(COUNTED) & events["surface"].eq("search")]
        if counted.empty:
            return set()
        hours = pd.to_datetime(counted["ts"]).dt.floor("h")
        column = counted["event_type"].map(list(COUNTED).index)
        grouped = pd.crosstab([counted["item_id"], hours], column).reindex(columns=range(len(COUNTED)), fill_value=0)
        with self._lock:
            for (item_id, hour), counts in zip(grouped.index, grouped.to_numpy()):
                buckets = self._hours[item_id]
                key = hour.to_pydatetime()
                buckets[key] = buckets.get(key, 0) + counts
        return set(counted["item_id"])

    def items(self) -> list[str]:
        with self._lock:
            return list(self._hours)

    def values(self, item_ids: list[str], now: datetime | None = None) -> pd.DataFrame:
        """The counters of these items at ``now`` (default: the current time), as Feast's push wants them."""
        now = now or _now()
        start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=WINDOW_HOURS - 1)
        rows = []
        with self._lock:
            for item_id in item_ids:
                buckets = self._hours.get(item_id, {})
                for hour in [h for h in buckets if h < start]:  # aged out of the window
                    del buckets[hour]
                total = sum((c for h, c in buckets.items() if h <= now), np.zeros(len(COUNTED), np.int64))
                rows.append([item_id, *map(int, total)])
        frame = pd.DataFrame(rows, columns=["item_id", *COUNTERS])
        frame["event_timestamp"] = pd.Timestamp(now, tz="UTC")
        return frame


def from_log(settings: Settings, now: datetime | None = None) -> LiveCounters:
    """Counters rebuilt from the durable event log (the arrival-day partitions of today and yesterday)."""
    now = now or _now()
    counters = LiveCounters()
    for day in (now.date() - timedelta(days=1), now.date()):
        folder = landing.partition_dir(settings.landing, "events", day)
        for path in sorted(folder.glob("*.parquet")) if folder.exists() else []:
            frame = pd.read_parquet(path, columns=["item_id", "event_type", "surface", "ts"])
            counters.add(frame[frame["ts"] > now - timedelta(hours=WINDOW_HOURS)])
    return counters


def push(store, counters: LiveCounters, item_ids: set[str] | list[str], now: datetime | None = None) -> pd.DataFrame:
    """Write these items' current counters to the online store; returns what was pushed."""
    from feast.data_source import PushMode

    frame = counters.values(sorted(item_ids), now)
    if len(frame):
        # Online only: the offline history is the item_counters mart, built from the same log.
        store.push(PUSH_SOURCE, frame, to=PushMode.ONLINE)
    return frame
