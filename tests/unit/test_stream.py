"""The embedded event log: group commit (durable before the acknowledgement, one write per group) and
compaction of small files (nothing lost, nothing counted twice, whatever the order of a crash)."""

import shutil
import threading
import time
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from shoploop.data import landing
from shoploop.features import counters, stream
from shoploop.settings import Settings


def _event(i: int, kind: str = "impression", session: str | None = None) -> dict:
    return {"event_id": f"e{i}", "session_id": session or f"s{i}", "event_type": kind, "item_id": f"i{i % 7}",
            "surface": "search", "position": 1}


def _today() -> datetime:
    return datetime.now(timezone.utc)


def test_concurrent_batches_share_commits_and_every_acknowledged_event_is_in_the_log(tmp_path):
    # given 60 clients sending at once / when each hears back / then its event is in the log once, and
    # the log wrote fewer files than it got batches (the batches that arrived during a write shared the next)
    settings = Settings(home=tmp_path)
    log = stream.EventLog(settings)
    start, acknowledged = threading.Barrier(60), []

    def client(i: int) -> None:
        start.wait()
        acknowledged.extend(log.record([_event(i)]))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    files = stream.partition_files(settings, _today().date())
    logged = landing.read_table(settings.landing, "events")["event_id"]
    assert sorted(acknowledged) == sorted(logged) and len(logged) == 60 and logged.is_unique
    assert log.batches == 60 and log.groups == len(files) < 60


def test_a_failed_commit_acknowledges_nothing_and_the_log_goes_on(tmp_path, monkeypatch):
    settings = Settings(home=tmp_path)
    log = stream.EventLog(settings)
    real = landing.append_table

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(landing, "append_table", full_disk)
    with pytest.raises(OSError, match="No space"):
        log.record([_event(1)])
    monkeypatch.setattr(landing, "append_table", real)
    assert log.record([_event(2)]) == ["e2"]
    assert landing.read_table(settings.landing, "events")["event_id"].tolist() == ["e2"]


def test_compaction_merges_small_files_and_an_interrupted_one_counts_nothing_twice(tmp_path):
    # given 40 one-request files (a session's impression and, later, its click) / when they are compacted
    # / then one file holds every event once; and if a crash had left a source file beside the merged one,
    # the counters rebuilt from the log are the same
    settings = Settings(home=tmp_path)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    for i in range(20):
        stream.record_events(settings, [_event(i)])
        stream.record_events(settings, [_event(100 + i, "click", session=f"s{i}") | {"item_id": f"i{i % 7}"}])
    day = _today().date()
    sources = stream.partition_files(settings, day)
    kept = tmp_path / "kept.parquet"
    shutil.copy(sources[0], kept)
    before = counters.from_log(settings, now + timedelta(minutes=1)).values([f"i{k}" for k in range(7)], now)

    result = stream.compact(settings, day)

    files = stream.partition_files(settings, day)
    events = landing.read_table(settings.landing, "events")
    assert result["compacted"] == 40 and len(files) == 1 and files[0].name.startswith("compacted-")
    assert len(events) == 40 and events["event_id"].is_unique
    shutil.copy(kept, sources[0])  # the crash: a source not yet removed when the process died
    assert len(landing.read_table(settings.landing, "events")) == 40  # a reader takes its rows once
    after = counters.from_log(settings, now + timedelta(minutes=1)).values([f"i{k}" for k in range(7)], now)
    pd.testing.assert_frame_equal(before.drop(columns="event_timestamp"), after.drop(columns="event_timestamp"))
    # the next compaction takes it back in: the event is then held twice, and still counts once
    assert stream.compact(settings, day, min_files=2)["compacted"] == 2
    assert landing.read_table(settings.landing, "events")["event_id"].nunique() == 40
    again = counters.from_log(settings, now + timedelta(minutes=1)).values([f"i{k}" for k in range(7)], now)
    pd.testing.assert_frame_equal(before.drop(columns="event_timestamp"), again.drop(columns="event_timestamp"))


def test_a_reader_that_cannot_list_again_holds_compaction_off_until_it_is_done(tmp_path):
    # given a day of one-request files and a reader that lists them and opens them later (dbt's
    # read_parquet) / when a compaction comes while it reads / then it waits for the next pass and every
    # listed file is still there; once the reader is done the next pass compacts
    settings = Settings(home=tmp_path)
    for i in range(30):
        stream.record_events(settings, [_event(i)])
    day = _today().date()
    with stream.no_compaction(settings), stream.no_compaction(settings):  # readers share the log
        listed = stream.partition_files(settings, day)
        result = stream.compact(settings, day, min_files=2)
        assert result["compacted"] == 0 and result["deferred"] and all(p.exists() for p in listed)
    assert stream.compact(settings, day, min_files=2)["compacted"] == 30
    assert len(landing.read_table(settings.landing, "events")) == 30


def test_readers_see_every_event_once_while_the_log_is_written_and_compacted(tmp_path):
    # given a writer appending one-event files and a compactor merging them as fast as it can / when a
    # reader reads the table over and over meanwhile / then no read fails on a file removed under it,
    # and each read holds every event written before it started, once
    settings = Settings(home=tmp_path)
    day, done, written, failures, reads_done = _today().date(), threading.Event(), [], [], [0]
    reader_gone = threading.Event()  # a failed read ends the test: the writer must not wait for it then

    def writer() -> None:
        for i in range(300):
            while reads_done[0] < i // 40 and not reader_gone.is_set():  # reads go on while writing does
                time.sleep(0.001)
            stream.record_events(settings, [_event(i)])
            written.append(f"e{i}")
        done.set()

    def compactor() -> None:
        while not done.is_set():
            try:
                stream.compact(settings, day, min_files=2)
                time.sleep(0.01)
            except Exception as error:  # noqa: BLE001 - reported below
                failures.append(error)

    threads = [threading.Thread(target=writer), threading.Thread(target=compactor)]
    for thread in threads:
        thread.start()
    reads = 0
    try:
        while not done.is_set() or reads == 0:
            before = set(written)
            if not before:
                continue
            events = landing.read_table(settings.landing, "events")["event_id"]
            assert events.is_unique and before <= set(events)
            reads += 1
            reads_done[0] = reads
    finally:
        reader_gone.set()
    for thread in threads:
        thread.join()
    assert not failures and reads > 5 and len(landing.read_table(settings.landing, "events")) == 300


def test_a_partition_with_few_files_is_left_alone(tmp_path):
    settings = Settings(home=tmp_path)
    stream.record_events(settings, [_event(1)])
    assert stream.compact(settings, _today().date())["compacted"] == 0


class _Recorded:
    """The online store's push, recorded (the real store is exercised by the service tests)."""

    def __init__(self):
        self.rows: dict[str, tuple] = {}

    def push(self, source, frame, to=None):
        for row in frame.itertuples(index=False):
            self.rows[row.item_id] = (row.impressions_24h, row.clicks_24h, row.purchases_24h)


def test_one_feeder_counts_what_every_worker_commits_once_through_compaction_retries_and_restarts(tmp_path):
    # given two workers' logs and one feeder / when sessions are shown an item and click it, across both
    # workers, a client re-sends an event, and the counted files are compacted / then the counts are the
    # shop's, each event once; a feeder started afresh (a restart) reaches the same counts
    settings = Settings(home=tmp_path)
    workers = [stream.EventLog(settings), stream.EventLog(settings)]
    store = _Recorded()
    feeder = counters.Feeder(settings, store)
    for n in range(40):
        session = f"s{n}"
        workers[n % 2].record([_event(1000 + n, "impression", session) | {"item_id": "a"}])
        workers[(n + 1) % 2].record([_event(2000 + n, "click", session) | {"item_id": "a"}])
        if n % 10 == 9:
            feeder.catch_up()
    workers[0].record([_event(2000, "click", "s0") | {"item_id": "a"}])  # a retry of an event already counted
    feeder.catch_up()
    assert store.rows["a"] == (40, 40, 0)
    assert feeder.compact(_today().date())["compacted"] == 81
    assert feeder.catch_up() == set() and store.rows["a"] == (40, 40, 0)  # the merged file is not counted again
    restarted = _Recorded()
    counters.Feeder(settings, restarted).catch_up()
    assert restarted.rows["a"] == (40, 40, 0)


def test_a_second_consumer_stays_exact_when_another_compacts_what_it_half_read(tmp_path):
    # given two consumers of one log (two replicas' feeders) / when one compacts files the other had read
    # only some of / then the other counts exactly the rows it had not read, from the merged file
    settings = Settings(home=tmp_path)
    log = stream.EventLog(settings)
    first, second = counters.Feeder(settings, _Recorded()), counters.Feeder(settings, _Recorded())
    for n in range(20):
        log.record([_event(n, "impression", f"s{n}") | {"item_id": "a"}])
    first.catch_up(), second.catch_up()
    for n in range(20):
        log.record([_event(100 + n, "click", f"s{n}") | {"item_id": "a"}])
    first.catch_up()
    assert first.compact(_today().date())["compacted"] == 40  # the second has read the impressions only
    second.recent.clear()  # long after: the retry window no longer remembers those ids, the sources must tell
    second.catch_up()
    assert first.store.rows["a"] == second.store.rows["a"] == (20, 20, 0)


def test_counting_goes_on_while_another_thread_compacts_and_each_event_counts_once(tmp_path):
    # given a feeder whose compaction runs in a thread of its own (the service's) / when sessions keep
    # committing and the feeder keeps counting while compactions run beside it / then every event is
    # counted exactly once, and what compaction left is one merged file plus what came after it
    settings = Settings(home=tmp_path)
    log, store = stream.EventLog(settings), _Recorded()
    feeder = counters.Feeder(settings, store)
    stop, compacted = threading.Event(), []

    def compact_often() -> None:
        while not stop.is_set():
            result = feeder.compact(_today().date())
            if result:
                compacted.append(result["compacted"])

    compactor = threading.Thread(target=compact_often)
    compactor.start()
    for n in range(120):
        log.record([_event(3000 + n, "impression", f"c{n}") | {"item_id": "b"}])
        log.record([_event(4000 + n, "click", f"c{n}") | {"item_id": "b"}])
        feeder.catch_up()
    stop.set()
    compactor.join()
    feeder.catch_up()
    assert store.rows["b"] == (120, 120, 0) and compacted
    restarted = _Recorded()
    counters.Feeder(settings, restarted).catch_up()
    assert restarted.rows["b"] == (120, 120, 0)
