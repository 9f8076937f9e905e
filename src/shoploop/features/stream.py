"""The event stream, embedded default: a durable append-only log in the landing zone.

Every accepted batch is in an fsynced parquet file of today's ``events`` partition before the
request is answered, so an acknowledged event survives a crash or restart. ``EventLog`` commits in
groups: the batches of requests that arrive while a write is in progress wait for the next one and
share its file and its fsync (still durable before each acknowledgement), so concurrent clients cost
one fsync per group, not per request, and the partition holds one file per group. ``compact`` merges
a partition's small files into one that names the files it holds (the counters' feeder compacts what
it has counted once a minute, each build whatever has many files). Duplicate deliveries are harmless: staging deduplicates on
``event_id``, and so do the live counters when they rebuild from the log.
"""

from __future__ import annotations

import fcntl
import json
import threading
import uuid
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shoploop.data import landing
from shoploop.settings import Settings
from shoploop.warehouse.privacy import scrub

# A partition holding at least this many files is compacted (fewer: not worth a rewrite).
COMPACT_FROM_FILES = 32


def prepare(events: list[dict]) -> list[dict]:
    """Events as the log stores them, one dict a row in the contract's columns: event_id and ts filled
    when absent (ts as naive UTC), query text scrubbed. Plain rows, not a frame: the service prepares
    every request's events and a frame of a few rows cost more than the rest of the request's own work."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    columns = landing.CONTRACT["events"]
    rows = []
    for event in events:
        row = {column: event.get(column) for column in columns}
        row["event_id"] = row["event_id"] or str(uuid.uuid4())
        row["ts"] = (row["ts"].astimezone(timezone.utc).replace(tzinfo=None)
                     if row["ts"] is not None and row["ts"].tzinfo else row["ts"] or now)
        row["query_text"] = scrub(row["query_text"])
        rows.append(row)
    return rows


def as_rows(events: list[dict]) -> pd.DataFrame:
    """Events (see ``prepare``) as a frame in the contract's columns."""
    return pd.DataFrame(prepare(events), columns=list(landing.CONTRACT["events"]))


def as_table(rows: list[dict]) -> pa.Table:
    """Prepared rows as an Arrow table in the contract's schema (no pandas in between)."""
    return pa.Table.from_pylist(rows, schema=landing.schema("events"))


def record_events(settings: Settings, events: list[dict]) -> pd.DataFrame:
    """Append events in a file of their own (one request, no group); returns them as written."""
    frame = as_rows(events)
    if len(frame):
        # Partitioned by arrival day: a late event lands today, where an incremental build looks.
        landing.append(settings.landing, "events", _today(), frame, prefix="feedback")
    return frame


def _today() -> date:
    return datetime.now(timezone.utc).date()


class EventLog:
    """Group commit over the landing zone's event log (one per service worker)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pending: list[tuple[list[dict], threading.Event, list]] = []
        self._wake = threading.Condition()
        self.groups = self.batches = 0  # commits, and the request batches they carried
        threading.Thread(target=self._commit_forever, name="event-log-commit", daemon=True).start()

    def record(self, events: list[dict]) -> list[str]:
        """Append events; returns their event ids once they are durable (raises if the write failed: not
        acknowledged)."""
        rows = prepare(events)
        if not rows:
            return []
        done, outcome = threading.Event(), []
        with self._wake:
            self._pending.append((rows, done, outcome))
            self._wake.notify()
        done.wait()
        if outcome and outcome[0] is not None:
            raise outcome[0]
        return [row["event_id"] for row in rows]

    def _commit_forever(self) -> None:
        while True:
            with self._wake:
                while not self._pending:
                    self._wake.wait()
                group, self._pending = self._pending, []
            error = None
            try:
                landing.append_table(self.settings.landing, "events", _today(),
                                     as_table([row for rows, _, _ in group for row in rows]), prefix="feedback")
                self.groups, self.batches = self.groups + 1, self.batches + len(group)
            except Exception as failure:  # every request of the group hears of it: none is acknowledged
                error = failure
            for _, done, outcome in group:
                outcome.append(error)
                done.set()


def open_log(settings: Settings):
    """The service's event writer for the configured stream (``record(events)`` durable before it returns)."""
    if settings.event_stream == "embedded":
        return EventLog(settings)
    from shoploop.features import redis_stream

    return redis_stream.RedisEventLog(settings)


def start_consumers(settings: Settings, store):
    """Start the stream's consumers in this process: the real-time counters' feeder (returned) and, on
    Redis, the landing zone's consumer (the embedded log is the landing zone already)."""
    if settings.event_stream == "embedded":
        from shoploop.features import counters

        return counters.Feeder(settings, store).start()
    from shoploop.features import redis_stream

    return redis_stream.start_consumers(settings, store)


SOURCES_KEY, sources_of = landing.SOURCES_KEY, landing.sources_of  # what a compacted file holds


def _compaction_lock(settings: Settings):
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    return open(settings.run_dir / "compaction.lock", "a")


@contextmanager
def no_compaction(settings: Settings):
    """No compaction removes an event file while the block runs (one that starts meanwhile waits for the
    next pass). For a reader that lists the log's files and opens them later and cannot list again:
    dbt's ``read_parquet`` over the landing zone failed the daily refresh's transform when the live
    service's feeder compacted the day's files in between. Python readers list again instead
    (``landing.read_files``). Any number of readers at once; an exclusive ``flock`` for the compactor."""
    with _compaction_lock(settings) as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        yield


def compact(settings: Settings, day: date, min_files: int = COMPACT_FROM_FILES, files: list[Path] | None = None) -> dict:
    """Merge the small files of one day's event partition (or the given ones of it) into one file.

    The merged file keeps every row, grouped by the commit file it came from, and says so in its
    metadata (``sources_of``): a consumer that had read some of those files counts only the rest, so
    any number of consumers stay exact whoever compacts. Crash-safe in every order: the merged file is
    durable under its final name before any source is removed; a source left beside it by a crash is
    one its consumers already know (and staging deduplicates on ``event_id``). Files a writer adds
    meanwhile are not touched."""
    folder = landing.partition_dir(settings.landing, "events", day)
    files = partition_files(settings, day) if files is None else files
    if len(files) < min_files:
        return {"day": str(day), "files": len(files), "compacted": 0}
    with _compaction_lock(settings) as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a reader holds the log (no_compaction): the next pass compacts
            return {"day": str(day), "files": len(files), "compacted": 0, "deferred": True}
        return _merge(folder, day, files)


def _merge(folder: Path, day: date, files: list[Path]) -> dict:
    tables, sources = [], []
    for path in files:
        table = pq.read_table(path)
        tables.append(table)
        sources += sources_of(path) or [(path.name, table.num_rows)]  # a compacted source: its own sources
    contract = landing.schema("events")
    table = pa.concat_tables(tables, promote_options="default").select(contract.names).cast(contract)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), SOURCES_KEY: json.dumps(sources).encode()})
    target = folder / f"compacted-{uuid.uuid4().hex}.parquet"
    landing._write_durably(table, target)
    for path in files:
        path.unlink()
    landing.fsync_dir(folder)
    return {"day": str(day), "files": len(files), "compacted": len(files), "events": table.num_rows,
            "into": target.name, "sources": [name for name, _ in sources]}


def compact_all(settings: Settings, days: int = 9) -> list[dict]:
    """Compact the event partitions of the last ``days`` arrival days (today included) that hold many files."""
    today = _today()
    return [compact(settings, today - timedelta(days=n)) for n in range(days)]


def partition_files(settings: Settings, day: date) -> list[Path]:
    folder = landing.partition_dir(settings.landing, "events", day)
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith(".")) if folder.exists() else []
