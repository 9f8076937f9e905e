"""The Redis Streams event backend against a real Redis server (127.0.0.1:6379, or SHOPLOOP_TEST_REDIS):
every acknowledged event lands once whichever consumer dies, and the counters count each event once
through retries and a change of leader. Each test uses key prefix of its own, removed afterwards."""

import os
import uuid

import pandas as pd
import pytest
from conftest import need

from shoploop.data import landing
from shoploop.features import redis_stream, stream
from shoploop.settings import Settings

REDIS_URL = os.environ.get("SHOPLOOP_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _redis_up() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def settings(tmp_path):
    import redis

    need(_redis_up(), f"no Redis server at {REDIS_URL} (set SHOPLOOP_TEST_REDIS): the Redis Streams backend's tests need one")
    prefix = f"shoploop-test-{uuid.uuid4().hex[:10]}"
    yield Settings(home=tmp_path, event_stream=REDIS_URL, stream_prefix=prefix)
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


class _Recorded:
    """The online store's push, recorded: what the feeder would write to Feast."""

    def __init__(self):
        self.rows = {}

    def push(self, source, frame, to=None):
        for row in frame.itertuples(index=False):
            self.rows[row.item_id] = (row.impressions_24h, row.clicks_24h, row.purchases_24h)


def _session(n: int, item: str = "a") -> list[dict]:
    return [{"event_id": f"{kind}-{n}", "session_id": f"s{n}", "event_type": kind, "item_id": item,
             "surface": "search", "position": 1} for kind in ("impression", "click")]


def _landed(settings) -> pd.DataFrame:
    return landing.read_table(settings.landing, "events")


def test_the_service_writes_to_redis_when_the_setting_says_so(settings):
    assert isinstance(stream.open_log(settings), redis_stream.RedisEventLog)
    assert isinstance(stream.open_log(Settings(home=settings.home)), stream.EventLog)


def test_every_acknowledged_event_lands_once_when_a_consumer_dies_before_acknowledging(settings, monkeypatch):
    # given 30 acknowledged batches / when the landing consumer dies after writing a read and before its
    # XACK / then its restart lands them again (a duplicate file staging deduplicates), a consumer of
    # another replica claims what a dead one holds, and every acknowledged id is in the landing zone
    log = redis_stream.RedisEventLog(settings)
    acknowledged = [i for n in range(30) for i in log.record(_session(n))]
    dying = redis_stream.Lander(settings, name="replica-a")
    monkeypatch.setattr(dying.redis, "xack", lambda *a: (_ for _ in ()).throw(ConnectionError("killed")))
    with pytest.raises(ConnectionError):
        dying.step()
    restarted = redis_stream.Lander(settings, name="replica-a")  # same host and port: reads its own pending first
    assert restarted.step() == 60 and restarted.step(block_ms=10) == 0
    landed = _landed(settings)
    assert len(landed) == 120 and set(landed["event_id"].drop_duplicates()) == set(acknowledged)

    more = [i for n in range(30, 40) for i in log.record(_session(n))]
    gone = redis_stream.Lander(settings, name="replica-b")
    monkeypatch.setattr(gone.redis, "xack", lambda *a: (_ for _ in ()).throw(ConnectionError("killed")))
    with pytest.raises(ConnectionError):
        gone.step()  # replica b never comes back
    monkeypatch.setattr(redis_stream, "CLAIM_AFTER_MS", 0)
    assert restarted.step() == 20  # claimed from replica b's pending entries
    assert set(_landed(settings)["event_id"]) == set(acknowledged) | set(more)
    assert restarted.redis.xpending(restarted.key, redis_stream.GROUP)["pending"] == 0


def test_two_replicas_landers_split_the_stream_without_overlap(settings, monkeypatch):
    log = redis_stream.RedisEventLog(settings)
    for n in range(50):
        log.record(_session(n))
    first, second = redis_stream.Lander(settings, name="a"), redis_stream.Lander(settings, name="b")
    monkeypatch.setattr(redis_stream, "READ_COUNT", 10)
    while first.step(block_ms=10) + second.step(block_ms=10):
        pass
    landed = _landed(settings)
    assert first.landed > 0 and second.landed > 0 and first.landed + second.landed == 100
    assert len(landed) == 100 and landed["event_id"].is_unique


def test_counters_count_each_event_once_through_retries_and_a_change_of_leader(settings):
    # given one stream and two replicas' feeders / when sessions are shown an item and click it, a client
    # re-sends what it had sent, and the leading feeder dies / then one feeder counts at a time, the
    # counts are the shop's with each event once, and the new leader rebuilds the same counts
    log = redis_stream.RedisEventLog(settings)
    leader = redis_stream.StreamFeeder(settings, _Recorded(), name="replica-a")
    standby = redis_stream.StreamFeeder(settings, _Recorded(), name="replica-b")
    assert leader.leads() and not standby.leads()
    for n in range(25):
        log.record(_session(n))
        if n % 10 == 0:
            leader.catch_up()
    log.record(_session(3))  # a retry of a session already counted
    log.record([{"event_id": "stray", "session_id": "nobody", "event_type": "click", "item_id": "a"}])  # never shown
    leader.catch_up()
    assert leader.store.rows["a"] == (25, 25, 0)
    leader.redis.delete(leader.lease)  # the leader's process died: its lease runs out
    assert standby.leads() and not leader.leads()
    standby.catch_up()
    assert standby.store.rows["a"] == (25, 25, 0)
    log.record(_session(99))
    standby.catch_up()
    assert standby.store.rows["a"] == (26, 26, 0)


def test_an_unknown_event_stream_is_refused_naming_what_is_accepted(tmp_path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="is no event stream: 'embedded', or a Redis URL"):
        Settings(home=tmp_path, event_stream="kafka://broker:9092")
