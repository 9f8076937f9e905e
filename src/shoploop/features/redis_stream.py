"""The event stream on Redis Streams, for replicas on several machines: ``SHOPLOOP_EVENT_STREAM=redis://host:6379/0``.

- ``/feedback`` adds each request's batch to one stream (``<prefix>:events``) as one entry (the events as
  an Arrow table in the data contract's types) and answers once Redis holds it. Whether an
  acknowledged entry survives a crash *of Redis* is the server's persistence setting (``appendonly
  yes``; ``appendfsync always`` is durable before the answer, ``everysec`` within a second): the service
  says at start when Redis keeps the stream in memory only. The stream keeps ``KEEP_HOURS``.
- The landing zone is fed by the consumer group ``landing``: the first worker of every replica reads
  entries no other consumer took, writes them to their arrival day's event partition (one durable file
  a read) and only then acknowledges them (XACK). A consumer killed in between has its entries
  delivered again: to itself when it restarts (its name is its host and port), or claimed by another
  replica after ``CLAIM_AFTER_MS`` (XAUTOCLAIM). An entry landed twice is deduplicated on ``event_id``
  by staging, so the effect is exactly once.
- The real-time counters are one consumer for the whole shop: attribution needs every event of a
  session in one place, so a consumer group's split would count wrong. The feeder that holds a lease in
  Redis (renewed as it reads, taken over by another replica's feeder within ``LEASE_MS`` of its death)
  reads the whole stream in order; at start or on taking over it rebuilds the counters from the
  window's entries, counting each ``event_id`` once. A redelivered or retried event never counts twice.

redis-py is the client (the one Redis's own documentation and Feast's Redis online store use).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import datetime

import pandas as pd
import pyarrow as pa

from shoploop.data import landing
from shoploop.features import counters, stream
from shoploop.settings import Settings

KEEP_HOURS = 48  # the counters' 24-hour window, and a day for a landing consumer that was down
GROUP = "landing"
CLAIM_AFTER_MS = 30_000  # an entry a consumer read and did not acknowledge for this long is taken over
LEASE_MS = 3_000  # the counters' feeder: a dead leader's lease runs out within this
READ_COUNT = 2_000  # entries per read
LAND_SECONDS = 0.5  # the landing consumer writes at most one file this often (more when a read is full)
logger = logging.getLogger("shoploop.features.redis_stream")


def connect(settings: Settings):
    import redis

    return redis.Redis.from_url(settings.event_stream, socket_timeout=10, socket_connect_timeout=5)


def stream_key(settings: Settings) -> str:
    return f"{settings.stream_prefix}:events"


def encode_table(table: pa.Table) -> bytes:
    """A stream entry's payload: the events as one Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def decode(entries: list) -> pd.DataFrame:
    """The events of stream entries ``[(id, {b"events": bytes}), ...]``, with each one's arrival time."""
    tables, arrived = [], []
    for entry_id, fields in entries:
        if not fields or b"events" not in fields:  # trimmed or foreign: nothing to read
            continue
        table = pa.ipc.open_stream(fields[b"events"]).read_all()
        tables.append(table)
        arrived += [int(entry_id.split(b"-")[0])] * table.num_rows
    if not tables:
        return pd.DataFrame(columns=[*landing.CONTRACT["events"], "arrived_ms"])
    frame = pa.concat_tables(tables).to_pandas()
    frame["arrived_ms"] = arrived
    return frame


def _ms_ago(hours: float) -> str:
    return f"{int((time.time() - hours * 3600) * 1000)}-0"


class RedisEventLog:
    """The service's writer: one XADD a request (same ``record`` as the embedded ``stream.EventLog``)."""

    def __init__(self, settings: Settings) -> None:
        self.redis, self.key = connect(settings), stream_key(settings)
        persistence = self.redis.config_get("appendonly").get("appendonly")
        if persistence == "no":
            logger.warning("Redis at %s keeps the event stream in memory only (appendonly no): an acknowledged "
                           "event not yet landed is lost if Redis crashes; set appendonly yes", settings.event_stream)

    def record(self, events: list[dict]) -> list[str]:
        rows = stream.prepare(events)
        if rows:
            self.redis.xadd(self.key, {"events": encode_table(stream.as_table(rows))}, minid=_ms_ago(KEEP_HOURS),
                            approximate=True)
        return [row["event_id"] for row in rows]


class Lander:
    """A consumer of the group ``landing``: stream entries into the landing zone, each acknowledged once written."""

    def __init__(self, settings: Settings, name: str | None = None) -> None:
        self.settings, self.redis, self.key = settings, connect(settings), stream_key(settings)
        self.name = name or f"{socket.gethostname()}:{settings.service_port}"
        self.landed = 0
        self._ensure_group()
        self._own_pending = True  # first what this consumer read before a restart and never acknowledged

    def _ensure_group(self) -> None:
        import redis

        try:
            self.redis.xgroup_create(self.key, GROUP, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):  # the group exists: another replica made it
                raise

    def step(self, block_ms: int = 500) -> int:
        """Land one read's worth of entries; returns how many events were written."""
        entries = []
        if self._own_pending:
            entries = self.redis.xreadgroup(GROUP, self.name, {self.key: "0"}, count=READ_COUNT)[0][1]
            self._own_pending = bool(entries)
        if not entries:
            entries = self.redis.xautoclaim(self.key, GROUP, self.name, CLAIM_AFTER_MS, "0-0", count=READ_COUNT)[1]
        if not entries:
            read = self.redis.xreadgroup(GROUP, self.name, {self.key: ">"}, count=READ_COUNT, block=block_ms)
            entries = read[0][1] if read else []
        if not entries:
            return 0
        events = decode(entries)
        if len(events):
            arrival_day = pd.to_datetime(events.pop("arrived_ms"), unit="ms").dt.date
            for day, frame in events.groupby(arrival_day):  # partitioned by arrival day, as the embedded log
                landing.append(self.settings.landing, "events", day, frame, prefix="redis")
        self.redis.xack(self.key, GROUP, *[entry_id for entry_id, _ in entries])
        self.landed += len(events)
        return len(events)

    def run_forever(self) -> None:
        """Land what arrived, at most one file every LAND_SECONDS (a busy stream: a file per READ_COUNT entries)."""
        while True:
            started = time.monotonic()
            try:
                if self.step() < READ_COUNT:
                    time.sleep(max(0.0, LAND_SECONDS - (time.monotonic() - started)))
            except Exception as error:  # unacknowledged entries are read again
                if "NOGROUP" in str(error):  # the stream was deleted (by an operator): start it again
                    logger.warning("the event stream %s or its group was deleted; making them again", self.key)
                    try:
                        self._ensure_group()
                        continue
                    except Exception:
                        pass
                logger.exception("landing the event stream failed; retrying")
                time.sleep(1)


class StreamFeeder(counters.Feeder):
    """The real-time counters from the Redis stream: one leader for the whole shop, by lease."""

    RENEW = ("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) "
             "else return 0 end")

    def __init__(self, settings: Settings, store, name: str | None = None) -> None:
        super().__init__(settings, store)
        self.redis, self.key = connect(settings), stream_key(settings)
        self.lease = f"{settings.stream_prefix}:counters-leader"
        self.name = name or f"{socket.gethostname()}:{settings.service_port}:{os.getpid()}"
        self.last_id: str | bytes | None = None  # None: (re)build from the window's first entry
        self._renew = self.redis.register_script(self.RENEW)

    def leads(self) -> bool:
        """Hold (or take) the counters' lease; a feeder that just took it starts over from the window."""
        if self._renew(keys=[self.lease], args=[self.name, LEASE_MS]):
            return True
        if self.redis.set(self.lease, self.name, nx=True, px=LEASE_MS):
            self.counters, self.recent, self.last_id = counters.LiveCounters(), {}, None
            return True
        return False

    def catch_up(self, now: datetime | None = None, block_ms: int = 0) -> set[str]:
        """Count the entries after the last one read (at start, the whole window's), each event once."""
        now = now or counters._now()
        start = self.last_id or _ms_ago(counters.WINDOW_HOURS)
        if self.last_id is None:  # the whole window at once: impressions known before the clicks they explain
            entries, page = [], self.redis.xrange(self.key, min=start, count=READ_COUNT)
            while page:
                entries += page
                page = self.redis.xrange(self.key, min=b"(" + page[-1][0], count=READ_COUNT)
        else:
            read = self.redis.xread({self.key: start}, count=READ_COUNT, block=block_ms or None)
            entries = read[0][1] if read else []
        if not entries:
            self.last_id = self.last_id or start
            return set()
        self.last_id = entries[-1][0]
        events = decode(entries)
        return self.count(events[counters.COLUMNS], now) if len(events) else set()

    def run_forever(self) -> None:
        """Count and push what arrived, at most once every POLL_SECONDS: a push to the online store costs
        the same for one event as for a thousand, so a busy stream is counted in batches."""
        while True:
            started = time.monotonic()
            try:
                if self.leads():
                    self.catch_up(block_ms=int(counters.POLL_SECONDS * 1000))
                    time.sleep(max(0.0, counters.POLL_SECONDS - (time.monotonic() - started)))
                else:
                    time.sleep(LEASE_MS / 3000)
            except Exception:
                logger.exception("counting the event stream failed; retrying")
                time.sleep(1)

    def start(self) -> "StreamFeeder":
        if self.leads():
            self.catch_up()
        threading.Thread(target=self.run_forever, name="counters-feeder", daemon=True).start()
        return self


def start_consumers(settings: Settings, store) -> StreamFeeder:
    lander = Lander(settings)
    threading.Thread(target=lander.run_forever, name="stream-lander", daemon=True).start()
    return StreamFeeder(settings, store).start()
