"""Real-time item counters: each item's search impressions, clicks and purchases of the trailing 24
hours, kept by the service from the feedback it accepts and pushed to Feast's online store
(push source ``item_counters_push``) so the very next ranking reads them.

The durable event log is the source of truth: at start the counters are rebuilt from its last two
days, so a restart loses nothing, and the ``item_counters`` mart (dbt) computes the same counts
from the same log as the offline history that training sets are joined against. Counts are kept in
hourly buckets; the window is the current hour and the 23 before it, so the counters just before
the top of an hour equal the mart's snapshot at that hour. One service worker owns its
counters (``workers=1`` in services/service.py); several workers would need a shared counter store.

The counters follow the warehouse's attribution rules (``int_events_attributed``): a search click or
purchase counts only when its session was shown the item, and a session's repeated clicks on one
item count once, so a bot or a client that lost its impression logging cannot push CTR past 1.
Unlike the mart, a click that arrives before its impression is not counted here.
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
        # (session_id, item_id) -> hour of its latest search impression; and the pairs already clicked
        self._shown: dict[tuple[str, str], datetime] = {}
        self._clicked: set[tuple[str, str]] = set()
        self._swept: datetime | None = None
        self.unattributed = 0  # engagement not counted: no impression in its session, or a repeated click

    def _attributed(self, counted: pd.DataFrame, hours: pd.Series) -> np.ndarray:
        """Which of these search events count (the mart's rules), remembering impressions and clicks."""
        pairs = list(zip(counted["session_id"], counted["item_id"]))
        types = counted["event_type"].tolist()
        for pair, kind, hour in zip(pairs, types, hours):  # a batch's impressions first: order within it is the client's
            if kind == "impression" and pair[0] is not None:
                self._shown[pair] = max(self._shown.get(pair, hour), hour)
        keep = np.ones(len(pairs), bool)
        for i, (pair, kind) in enumerate(zip(pairs, types)):
            if kind == "impression":
                continue
            if pair not in self._shown or (kind == "click" and pair in self._clicked):
                keep[i] = False
            elif kind == "click":
                self._clicked.add(pair)
        self.unattributed += int((~keep).sum())
        return keep

    def _forget_sessions(self, start: datetime) -> None:
        """Sessions whose last impression left the window can no longer be attributed to."""
        for pair in [p for p, hour in self._shown.items() if hour < start - timedelta(hours=1)]:
            del self._shown[pair]
            self._clicked.discard(pair)

    def add(self, events: pd.DataFrame) -> set[str]:
        """Count search events (columns session_id, item_id, event_type, surface, ts as naive UTC); returns
        the items touched."""
        counted = events[events["event_type"].isin(COUNTED) & events["surface"].eq("search")]
        if counted.empty:
            return set()
        hours = pd.to_datetime(counted["ts"]).dt.floor("h")
        with self._lock:
            keep = self._attributed(counted, [hour.to_pydatetime() for hour in hours])
            hour = _now().replace(minute=0, second=0, microsecond=0)
            if hour != self._swept:  # at most once an hour: a sweep reads every remembered session
                self._swept = hour
                self._forget_sessions(hour - timedelta(hours=WINDOW_HOURS - 1))
        counted, hours = counted[keep], hours[keep]
        if counted.empty:
            return set()
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
    """Counters rebuilt from the durable event log (the arrival-day partitions of today and yesterday),
    read as one batch so every impression is known before the clicks it explains."""
    now = now or _now()
    counters = LiveCounters()
    frames = []
    for day in (now.date() - timedelta(days=1), now.date()):
        folder = landing.partition_dir(settings.landing, "events", day)
        for path in sorted(folder.glob("*.parquet")) if folder.exists() else []:
            frame = pd.read_parquet(path, columns=["event_id", "session_id", "item_id", "event_type", "surface", "ts"])
            frames.append(frame[frame["ts"] > now - timedelta(hours=WINDOW_HOURS)])
    if frames:
        # an event in two files (a compaction cut short, a client's retry) counts once
        events = pd.concat(frames, ignore_index=True).drop_duplicates("event_id")
        counters.add(events.sort_values("ts", kind="stable"))
    return counters


def push(store, counters: LiveCounters, item_ids: set[str] | list[str], now: datetime | None = None) -> pd.DataFrame:
    """Write these items' current counters to the online store; returns what was pushed."""
    from feast.data_source import PushMode

    frame = counters.values(sorted(item_ids), now)
    if len(frame):
        # Online only: the offline history is the item_counters mart, built from the same log.
        store.push(PUSH_SOURCE, frame, to=PushMode.ONLINE)
    return frame
