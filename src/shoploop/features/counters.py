"""Real-time item counters: each item's search impressions, clicks and purchases of the trailing 24
hours, kept from the feedback the service accepts and pushed to Feast's online store (push source
``item_counters_push``), where every worker and replica reads them per request.

The durable event log is the source of truth, and the counters are one consumer of it (``Feeder``):
the service's first worker tails the log (every file a worker commits, each read once), counts its
events once by ``event_id`` and pushes the items touched, within a fraction of a second of their
acknowledgement. However many workers accept feedback, one process counts, so the counts in the
online store are the whole shop's. At start (or after a crash) the feeder rebuilds the counters from
the log's last two days, so a restart loses nothing; and the ``item_counters`` mart (dbt) computes the
same counts from the same log as the offline history that training sets are joined against. Counts are
kept in hourly buckets; the window is the current hour and the 23 before it, so the counters just
before the top of an hour equal the mart's snapshot at that hour.

The counters follow the warehouse's attribution rules (``int_events_attributed``): a search click or
purchase counts only when its session was shown the item, and a session's repeated clicks on one
item count once, so a bot or a client that lost its impression logging cannot push CTR past 1.
Unlike the mart, a click read before its impression (in an earlier poll) is not counted here.
"""

from __future__ import annotations

import logging
import threading
import time
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
    days = {landing.partition_dir(settings.landing, "events", day).name for day in (now.date() - timedelta(days=1), now.date())}

    def read(files) -> list[pd.DataFrame]:
        frames = [pd.read_parquet(path, columns=COLUMNS) for path in files if path.parent.name in days]
        return [frame[frame["ts"] > now - timedelta(hours=WINDOW_HOURS)] for frame in frames]

    frames = landing.read_files(settings.landing, "events", read)  # whatever a compaction does meanwhile
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


# How often the feeder looks for newly committed log files, and how long it remembers the event ids it
# counted (a client that lost an acknowledgement and sends the same event again within it counts once).
POLL_SECONDS = 0.1
COMPACT_SECONDS = 60
RETRY_WINDOW = timedelta(minutes=10)
COLUMNS = ["event_id", "session_id", "item_id", "event_type", "surface", "ts"]
logger = logging.getLogger("shoploop.features.counters")


class Feeder:
    """The one consumer of the event log that keeps the real-time counters in the online store."""

    def __init__(self, settings: Settings, store) -> None:
        self.settings, self.store = settings, store
        self.counters = LiveCounters()
        self.consumed: dict = {}  # arrival day -> names of the log files already counted
        self.recent: dict[str, datetime] = {}  # event id -> when it was counted (RETRY_WINDOW)
        self.pushed_at: datetime | None = None
        self._consumed_lock = threading.Lock()  # the counting thread and the compacting one share ``consumed``

    def catch_up(self, now: datetime | None = None) -> set[str]:
        """Count every log file of today's and yesterday's partitions not counted yet, each event once;
        push the items touched. Returns them."""
        from shoploop.features import stream

        now = now or _now()
        days = (now.date() - timedelta(days=1), now.date())
        with self._consumed_lock:
            self.consumed = {day: self.consumed.get(day, set()) for day in days}
            fresh = [(day, path) for day in days for path in stream.partition_files(self.settings, day)
                     if path.name not in self.consumed[day]]
        if not fresh:
            return set()
        frames, read = [], []
        for day, path in fresh:
            frame, sources = pd.read_parquet(path, columns=COLUMNS), stream.sources_of(path)
            with self._consumed_lock:
                if sources:  # a compacted file: only the rows of the commit files not counted yet
                    start, keep = 0, np.zeros(len(frame), bool)
                    for name, rows in sources:
                        keep[start:start + rows] = name not in self.consumed[day]
                        start += rows
                        read.append((day, name))
                    frame = frame[keep]
            frames.append(frame)
            read.append((day, path.name))
        touched = self.count(pd.concat(frames, ignore_index=True), now)
        with self._consumed_lock:  # read only once counted: a pass that fails half-way reads them all again
            for day, name in read:
                self.consumed[day].add(name)
        return touched

    def count(self, events: pd.DataFrame, now: datetime) -> set[str]:
        """Count these events (COLUMNS) once each by ``event_id``, within the window; push the items
        touched to the online store and return them."""
        events = events.drop_duplicates("event_id")
        events = events[~events["event_id"].isin(self.recent.keys()) & (events["ts"] > now - timedelta(hours=WINDOW_HOURS))]
        for event_id in events["event_id"]:
            self.recent[event_id] = now
        if len(self.recent) > 100_000 or (self.pushed_at and self.pushed_at.minute != now.minute):
            self.recent = {e: at for e, at in self.recent.items() if at > now - RETRY_WINDOW}
        touched = self.counters.add(events.sort_values("ts", kind="stable"))  # impressions known before clicks
        push(self.store, self.counters, touched, now)
        self.pushed_at = now
        return touched

    def compact(self, day) -> dict | None:
        """Merge the log files of a day the feeder has counted into one, and count that file as read.
        Safe beside a running ``catch_up``: only files already counted are merged, and a merged file the
        feeder lists before it is marked read holds only sources it counted (``stream.sources_of``)."""
        from shoploop.features import stream

        with self._consumed_lock:
            done = set(self.consumed.get(day, set()))
        counted = [p for p in stream.partition_files(self.settings, day) if p.name in done]
        if len(counted) < stream.COMPACT_FROM_FILES:
            return None
        result = stream.compact(self.settings, day, files=counted)
        if not result["compacted"]:  # deferred: a reader holds the log
            return result
        with self._consumed_lock:
            self.consumed.setdefault(day, set()).update({result["into"], *result["sources"]})
        return result

    def run_forever(self) -> None:
        """Poll the log; a failure is logged and retried."""
        while True:
            try:
                self.catch_up()
            except Exception:  # the events are durable: the next poll reads them again
                logger.exception("counting the event log failed; retrying")
            time.sleep(POLL_SECONDS)

    def compact_forever(self) -> None:
        """Once a minute, compact what was counted. A thread of its own: merging a busy day's thousands of
        commit files takes seconds, and counting (what /search reads) must not wait for it."""
        while True:
            time.sleep(COMPACT_SECONDS)
            try:
                with self._consumed_lock:
                    days = list(self.consumed)
                for day in days:
                    self.compact(day)
            except Exception:  # the next pass tries again; nothing is lost, the files stay as they are
                logger.exception("compacting the event log failed; retrying")

    def start(self) -> "Feeder":
        self.catch_up()  # the whole window first: the service answers with counts, not zeros
        threading.Thread(target=self.run_forever, name="counters-feeder", daemon=True).start()
        threading.Thread(target=self.compact_forever, name="event-log-compactor", daemon=True).start()
        return self
