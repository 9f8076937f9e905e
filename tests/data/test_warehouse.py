"""Data tests over the real dbt build of the small shop."""

from datetime import date

import duckdb
import pandas as pd
import pytest

from shoploop.data import landing
from shoploop.pipeline import steps

pytestmark = pytest.mark.slow


def test_marts_exist_and_are_not_empty(built):
    marts = built["settings"].marts
    for name in ["item_features", "user_features", "ranker_training_pairs", "item_text", "user_histories",
                 "query_features", "user_category_preferences"]:
        assert len(pd.read_parquet(marts / f"{name}.parquet")) > 0, name


def test_no_raw_user_id_reaches_any_mart_or_feature_store(built):
    # given the raw ids in the landing zone / when every mart and the online store are read as text
    settings = built["settings"]
    raw_ids = set(landing.read_table(settings.landing, "users")["user_id"])
    texts = [pd.read_parquet(p).to_csv() for p in settings.marts.glob("*.parquet")]
    texts.append((settings.feast_dir / "online_store.db").read_bytes().decode("latin-1"))
    # then none of them appears anywhere
    leaked = [u for u in list(raw_ids)[:300] if any(u in t for t in texts)]
    assert not leaked


def test_item_snapshots_are_point_in_time(built):
    feats = pd.read_parquet(built["settings"].marts / "item_features.parquet").sort_values(["item_id", "event_timestamp"])
    # counts only ever grow from one daily snapshot to the next
    grows = feats.groupby("item_id")["impressions"].apply(lambda s: s.is_monotonic_increasing)
    assert grows.all()
    assert feats["event_timestamp"].nunique() >= 4


def test_duplicate_events_count_once(built):
    # given an event re-delivered into the landing zone
    settings = built["settings"]
    events = landing.read_table(settings.landing, "events")
    copy = events.iloc[[0]].drop(columns=["dt"], errors="ignore")
    day = pd.Timestamp(copy["ts"].iat[0]).date()
    landing.append(settings.landing, "events", day, copy, prefix="replay")
    # when the warehouse is rebuilt
    steps.transform(settings, date(2026, 11, 29))
    # then staging holds each event_id once
    con = duckdb.connect(str(settings.warehouse_path))
    total, distinct = con.execute("select count(*), count(distinct event_id) from stg_events").fetchone()
    con.close()
    assert total == distinct == events["event_id"].nunique()


def test_feast_historical_join_does_not_see_the_future(built):
    from shoploop import features

    settings = built["settings"]
    item = pd.read_parquet(settings.marts / "item_features.parquet").sort_values("clicks").item_id.iat[-1]
    rows = pd.DataFrame({"item_id": [item, item],
                         "event_timestamp": pd.to_datetime(["2026-11-26 12:00", "2026-11-29 12:00"], utc=True)})
    got = features.historical(settings, rows).sort_values("event_timestamp")
    assert got["ctr_smoothed"].notna().all()
    early, late = got.iloc[0], got.iloc[1]
    assert early["popularity"] <= late["popularity"]
    assert early["age_days"] < late["age_days"]


def test_bad_rows_are_quarantined_with_a_reason_not_crashed_on(built):
    # given events that break rules, and a query carrying an email, written straight to the landing zone
    settings = built["settings"]
    good = landing.read_table(settings.landing, "events").drop(columns=["dt"], errors="ignore").iloc[[0]]
    bad = pd.concat([good.assign(event_id="bad-type", event_type="explode"),
                     good.assign(event_id="bad-item", item_id="no-such-item"),
                     good.assign(event_id="pii", query_text="tent for jo@example.org 0170 1234567")])
    landing.append(settings.landing, "events", pd.Timestamp(good["ts"].iat[0]).date(), bad, prefix="bad")
    # when the warehouse is rebuilt
    steps.transform(settings, date(2026, 11, 29))
    # then the rule breakers are in quarantine with their reasons, and no mart holds the email
    quarantine = pd.read_parquet(settings.marts / "quarantine.parquet").dropna(how="all")
    reasons = dict(zip(quarantine["record_key"], quarantine["reason"]))
    assert reasons["bad-type"] == "unknown event_type" and reasons["bad-item"] == "unknown item_id"
    texts = " ".join(pd.read_parquet(p).to_csv() for p in settings.marts.glob("*.parquet"))
    assert "jo@example.org" not in texts and "1234567" not in texts
    con = duckdb.connect(str(settings.warehouse_path))
    scrubbed = con.execute("select query_text from stg_events where event_id = 'pii'").fetchone()[0]
    con.close()
    assert scrubbed == "tent for <email> <phone>"


def test_odd_client_events_are_quarantined_and_never_stop_the_build(built):
    # given what fuzzing /feedback landed once and halted the pipeline: an event stamped 1970, and a
    # load test's 4,000 clicks on one item in a session that was never shown it, plus a session
    # clicking a shown item 50 times
    settings = built["settings"]
    good = landing.read_table(settings.landing, "events").drop(columns=["dt"], errors="ignore")
    con = duckdb.connect(str(settings.warehouse_path))
    session, item, ts = con.execute("select session_id, item_id, ts from int_events_valid "
                                    "where event_type = 'impression' and surface = 'search' limit 1").fetchone()
    con.close()
    click = good.iloc[[0]].assign(event_type="click", surface="search", item_id=item, position=1, session_id=session, ts=ts)
    odd = pd.concat([
        click.assign(event_id="epoch", ts=pd.Timestamp("1970-01-01")),
        pd.concat([click] * 4000, ignore_index=True).assign(session_id="load-test",
                                                             event_id=[f"load-{k}" for k in range(4000)]),
        pd.concat([click] * 50, ignore_index=True).assign(event_id=[f"again-{k}" for k in range(50)]),
    ])
    landing.append(settings.landing, "events", pd.Timestamp(ts).date(), odd, prefix="odd")
    # when the warehouse is rebuilt / then the build passes, with each odd row quarantined and its reason
    result = steps.transform(settings, date(2026, 11, 29))
    quarantine = pd.read_parquet(settings.marts / "quarantine.parquet").dropna(how="all")
    reasons = dict(zip(quarantine["record_key"], quarantine["reason"]))
    assert reasons["epoch"] == "ts out of range"
    assert reasons["load-3999"] == "search click without an impression in its session"
    assert sum(reasons.get(f"again-{k}") == "repeated click in a session" for k in range(50)) >= 49
    assert result["quarantined"]["events: search click without an impression in its session"] >= 4000
    # and the item's features stay true: clicks never above impressions, CTR a rate
    features = pd.read_parquet(settings.marts / "item_features.parquet").dropna(subset=["item_id"])
    assert (features["clicks"] <= features["impressions"]).all()
    assert features["ctr_smoothed"].between(0, 1).all()


def test_staging_cleans_markup_out_of_item_text(built):
    settings = built["settings"]
    items = landing.read_table(settings.landing, "items").drop(columns=["dt"], errors="ignore")
    dirty = items.iloc[[0]].assign(item_id="html-item", title="<b>Bold</b> pan &amp; lid",
                                   description='<style>.x{color:red}</style><p>Great&nbsp;pan</p>')
    landing.append(settings.landing, "items", date(2026, 11, 29), dirty, prefix="dirty")
    steps.transform(settings, date(2026, 11, 29))
    text = pd.read_parquet(settings.marts / "item_text.parquet").set_index("item_id")
    assert text.loc["html-item", "title"] == "Bold pan & lid"
    assert "Great pan" in text.loc["html-item", "item_text"] and "<" not in text.loc["html-item", "item_text"]


def test_data_report_is_written_with_its_plots(built):
    from shoploop.warehouse.report import data_report

    path = data_report(built["settings"], date(2026, 11, 29))
    text = path.read_text()
    assert "Position bias: CTR" in text and "No drift scenario is active." in text
    for png in ("overview.png", "drift_signals.png"):
        assert (path.parent / png).stat().st_size > 10_000


def test_events_build_incrementally_and_follow_reloads(built):
    # given a built warehouse
    settings = built["settings"]
    con = lambda: duckdb.connect(str(settings.warehouse_path))  # noqa: E731
    def staged(sql):
        c = con()
        try:
            return c.execute(sql).fetchone()[0]
        finally:
            c.close()
    events = landing.read_table(settings.landing, "events").drop(columns=["dt"], errors="ignore")
    # when a new file lands, only it is read, and its rows appear
    extra = events.iloc[:3].assign(event_id=["inc-1", "inc-2", "inc-3"])
    landing.append(settings.landing, "events", date(2026, 11, 29), extra, prefix="late")
    steps.transform(settings, date(2026, 11, 29))
    assert staged("select count(*) from stg_events where event_id like 'inc-%'") == 3
    # when a day is reloaded with different content, the old file's rows go and the new ones come
    day = pd.Timestamp(events.loc[~events["event_id"].isin(["epoch"]), "ts"].min()).date()  # not another test's 1970 event
    bulk_file = next(landing.partition_dir(settings.landing, "events", day).glob("part-*.parquet"))
    first_day = pd.read_parquet(bulk_file).sort_values("ts")
    landing.write_partition(settings.landing, "events", day, first_day.iloc[:-5])
    steps.transform(settings, date(2026, 11, 29))
    dropped = first_day["event_id"].iloc[-5:].tolist()
    assert staged(f"select count(*) from stg_events where event_id in {tuple(dropped)}") == 0
    assert staged("select count(*) from stg_events where event_id like 'inc-%'") == 3
    # and a full refresh gives the same table as the increments
    before = staged("select count(*) from stg_events")
    steps.transform(settings, date(2026, 11, 29), full_refresh=True)
    assert staged("select count(*) from stg_events") == before


def test_reviews_build_incrementally_and_follow_reloads(built):
    # given a built warehouse
    settings = built["settings"]
    def staged(sql):
        c = duckdb.connect(str(settings.warehouse_path))
        try:
            return c.execute(sql).fetchone()[0]
        finally:
            c.close()
    reviews = landing.read_table(settings.landing, "reviews").drop(columns=["dt"], errors="ignore")
    # when a late file lands, its reviews appear without a full rebuild
    late = reviews.iloc[:2].assign(review_id=["late-1", "late-2"])
    landing.append(settings.landing, "reviews", date(2026, 11, 29), late, prefix="late")
    steps.transform(settings, date(2026, 11, 29))
    assert staged("select count(*) from stg_reviews where review_id like 'late-%'") == 2
    # when the bulk file is reloaded without some reviews, they go; the late file's stay
    bulk_file = next(landing.partition_dir(settings.landing, "reviews", date(2026, 11, 29)).glob("part-*.parquet"))
    bulk = pd.read_parquet(bulk_file)
    landing.write_partition(settings.landing, "reviews", date(2026, 11, 29), bulk.iloc[:-4])
    steps.transform(settings, date(2026, 11, 29))
    assert staged(f"select count(*) from stg_reviews where review_id in {tuple(bulk['review_id'].iloc[-4:])}") == 0
    assert staged("select count(*) from stg_reviews where review_id like 'late-%'") == 2


def test_duplicate_listings_are_caught_and_their_traffic_credited_to_the_first(built):
    # given the simulator relists ~1% of products under new ids (title re-typed, price changed)
    settings = built["settings"]
    c = duckdb.connect(str(settings.warehouse_path))
    try:
        pairs = c.execute("select item_id, duplicate_of from stg_items where duplicate_of is not null").df()
        raw_events = c.execute("select count(*) from stg_events where reject_reason is null").fetchone()[0]
        valid_events = c.execute("select count(*) from int_events_valid").fetchone()[0]
        unattributed = c.execute("select count(*) from int_events_attributed where attribution_issue is not null").fetchone()[0]
        on_duplicates = c.execute("select count(*) from int_events_valid where item_id in "
                                  "(select item_id from stg_items where duplicate_of is not null)").fetchone()[0]
    finally:
        c.close()
    items = landing.read_table(settings.landing, "items").set_index("item_id")
    assert len(pairs) >= 3
    for dup, first in zip(pairs["item_id"], pairs["duplicate_of"]):
        assert " ".join(items.at[dup, "title"].lower().split()) == " ".join(items.at[first, "title"].lower().split())
    # then each is quarantined with its reason, absent from the catalog the encoder reads, and no
    # event is lost: the duplicates' events count for the first listing
    quarantine = pd.read_parquet(settings.marts / "quarantine.parquet").dropna(how="all")
    flagged = set(quarantine.loc[quarantine["reason"] == "duplicate listing", "record_key"])
    assert set(pairs["item_id"]) <= flagged
    catalog = set(pd.read_parquet(settings.marts / "item_text.parquet")["item_id"])
    assert not set(pairs["item_id"]) & catalog and set(pairs["duplicate_of"]) <= catalog
    assert valid_events == raw_events - unattributed and on_duplicates == 0


def test_counters_mart_holds_what_the_service_counts_live(built):
    # given every event staging let through (attributable or not), fed to the service's live counters /
    # when read just before an hour's top / then they equal the item_counters mart's snapshot at that
    # hour (offline = online: both drop engagement without an impression and repeated clicks)
    from datetime import timedelta

    from shoploop.features.counters import LiveCounters

    settings = built["settings"]
    mart = pd.read_parquet(settings.marts / "item_counters.parquet").dropna(subset=["item_id"])
    snapshot_at = mart["event_timestamp"].value_counts().idxmax()
    con = duckdb.connect(str(settings.warehouse_path))
    events = con.execute("select session_id, item_id, event_type, surface, ts from int_events_attributed where ts < ?",
                         [snapshot_at.to_pydatetime()]).df()
    con.close()
    live = LiveCounters()
    live.add(events)
    expected = mart[mart["event_timestamp"] == snapshot_at].set_index("item_id").sort_index()
    got = live.values(expected.index.tolist(), snapshot_at.to_pydatetime() - timedelta(microseconds=1)).set_index("item_id")
    columns = ["impressions_24h", "clicks_24h", "purchases_24h"]
    assert len(expected) >= 20 and expected["impressions_24h"].sum() > 0
    pd.testing.assert_frame_equal(got[columns], expected[columns], check_dtype=False)


# --- kill -9 mid-write: dbt and materialisation ------------------------------------------------------
@pytest.fixture(scope="module")
def own_shop(tmp_path_factory, shop_env):
    """A small shop of its own (simulated, built, features materialised), so killing its steps cannot
    disturb the shared one; returns the CLI and the environment that runs a step on it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "SHOPLOOP_HOME": str(tmp_path_factory.mktemp("killed-home"))}
    cli = str(Path(sys.executable).with_name("shoploop"))
    for step in ("simulate", "transform", "features"):
        subprocess.run([cli, step, "--run-date", "2026-11-29"], check=True, capture_output=True, env=env, timeout=600)
    return cli, env


def _kill_midway(command: list[str], env: dict, seconds: float) -> None:
    """Start a step in a process group of its own and kill -9 the whole group after ``seconds``."""
    import os
    import signal
    import subprocess
    import time

    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    time.sleep(seconds)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:  # it finished first
        pass
    process.wait()


def _marts_digest(marts) -> dict[str, tuple[int, int]]:
    """Rows and a content hash of each mart, floats to 9 digits (DuckDB sums in no fixed order)."""
    out = {}
    for path in sorted(marts.glob("*.parquet")):
        frame = pd.read_parquet(path)  # a half-written parquet file fails here (no footer)
        floats = frame.select_dtypes("float").columns
        frame[floats] = frame[floats].round(9)
        frame = frame.astype(str).sort_values(list(frame.columns)).reset_index(drop=True)
        out[path.name] = (len(frame), int(pd.util.hash_pandas_object(frame, index=False).sum()))
    return out


def test_a_dbt_build_killed_midway_leaves_the_last_complete_marts_and_a_rerun_gives_the_same(own_shop):
    # given a complete build, timed / when a rebuild of the same date is killed with -9 at several points
    # of its run / then the marts read are always the last complete build's, every file whole, and a
    # re-run for the date gives the same marts
    import subprocess
    import time
    from pathlib import Path

    cli, env = own_shop
    marts = Path(env["SHOPLOOP_HOME"]) / "marts"
    command = [cli, "transform", "--run-date", "2026-11-29"]
    started = time.monotonic()
    subprocess.run(command, check=True, capture_output=True, env=env, timeout=600)
    full = time.monotonic() - started
    reference, published = _marts_digest(marts), marts.resolve()
    assert len(reference) >= 9
    for share in (0.3, 0.6, 0.9):
        _kill_midway(command, env, full * share)
        # the last complete build (or, where the kill came after the switch, the build that completed)
        assert _marts_digest(marts) == reference, share
        published = marts.resolve()
    rerun = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert marts.resolve() != published and _marts_digest(marts) == reference
    # the killed builds' folders are gone; the build before the one published stays for its readers
    assert {p.name for p in (marts.parent / "marts.d").iterdir()} == {marts.resolve().name, published.name}


def test_a_materialisation_killed_midway_is_whole_after_a_rerun(own_shop):
    # given the online store as one materialisation left it / when a materialisation is killed with -9
    # midway / then every row read is a whole row, and a re-run gives exactly the values of a clean run
    import os
    import subprocess
    import time

    from feast.feature_view import FeatureViewState

    from shoploop import features
    from shoploop.settings import Settings

    cli, env = own_shop
    command = [cli, "features", "--run-date", "2026-11-29"]

    def in_shop(read):
        saved = dict(os.environ)
        os.environ.update({"SHOPLOOP_HOME": env["SHOPLOOP_HOME"]})
        try:
            settings = Settings()
            return read(settings, features.store(settings))
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def online() -> pd.DataFrame:
        def read(settings, store):
            items = pd.read_parquet(settings.marts / "item_text.parquet")["item_id"].dropna().tolist()
            rows = store.get_online_features(features=store.get_feature_service(settings.feature_service),
                                             entity_rows=[{"item_id": i} for i in items]).to_dict()
            return pd.DataFrame(rows).sort_values("item_id").reset_index(drop=True)

        return in_shop(read)

    def states() -> set:
        return in_shop(lambda settings, store: {view.state for view in store.list_feature_views()})

    def mark_materializing(settings, store) -> None:
        for view in store.list_feature_views():
            view.state = FeatureViewState.MATERIALIZING
            store.registry.apply_feature_view(view, store.project, commit=True)

    started = time.monotonic()
    subprocess.run(command, check=True, capture_output=True, env=env, timeout=600)
    full = time.monotonic() - started
    reference = online()
    assert reference["log_price"].notna().mean() > 0.9
    for share in (0.5, 0.85):
        _kill_midway(command, env, full * share)
        # the same date's values, old or rewritten: whatever a reader gets is a whole row as a clean run left it
        pd.testing.assert_frame_equal(online(), reference)
    # a run killed after Feast committed its views' MATERIALIZING state (whether the kill above hit that
    # window is timing): readers keep the last values, and the next run finishes the views' lifecycle
    in_shop(mark_materializing)
    assert states() == {FeatureViewState.MATERIALIZING}
    pd.testing.assert_frame_equal(online(), reference)
    subprocess.run(command, check=True, capture_output=True, env=env, timeout=600)
    pd.testing.assert_frame_equal(online(), reference)
    assert states() == {FeatureViewState.AVAILABLE_ONLINE}


def test_served_features_match_feast_and_are_read_again_after_a_materialisation(built):
    # given the features the service holds for the catalog / then they are Feast's online values, item by
    # item; and when a newer materialisation lands, the next check reads them again (and only then)
    from datetime import datetime

    import numpy as np

    from shoploop import features
    from shoploop.models.ranker import COUNTERS, ITEM_FEATURES

    settings = built["settings"]
    store = features.store(settings)
    service = store.get_feature_service(settings.feature_service)
    items = pd.read_parquet(settings.marts / "item_text.parquet")["item_id"].dropna().tolist()[:80] + ["no-such-item"]
    held = features.ServedItemFeatures(store, service, items)
    feast = pd.DataFrame(store.get_online_features(features=service, entity_rows=[{"item_id": i} for i in items]).to_dict())
    snapshot = [name for name in ITEM_FEATURES if name not in COUNTERS]
    got = held(items)[:, [ITEM_FEATURES.index(name) for name in snapshot]]
    np.testing.assert_allclose(got, feast[snapshot].astype("float64").to_numpy(), equal_nan=True)
    assert np.isnan(held(["no-such-item"])).all()
    assert held.refresh() is False
    features.materialize(settings, datetime(2026, 12, 2))
    assert held.refresh() is True and held.refresh() is False


def test_the_served_counters_are_what_feast_reads_with_the_views_ttl(built):
    # given real-time counters pushed to the embedded (SQLite) online store: one item's now, another's
    # two days ago (item_counters' TTL is 24 hours) / then the service's lean read (features.SqliteCounters)
    # gives what Feast's own online read gives, item by item, and the stale item's counters read as none.
    # (Items of their own: the catalog's counters in the shared store are other tests' reference.)
    import uuid
    from datetime import datetime, timedelta, timezone

    import numpy as np

    from shoploop import features
    from shoploop.features import counters

    settings = built["settings"]
    store = features.store(settings)
    service = store.get_feature_service(settings.feature_service)
    fresh, stale = (f"ttl-test-{uuid.uuid4().hex[:8]}" for _ in range(2))
    catalog = pd.read_parquet(settings.marts / "item_text.parquet")["item_id"].dropna().tolist()[:120]
    items = [fresh, stale, *catalog, fresh, "no-such-item"]  # an item twice: each position gets its counters
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    for item, at in ((fresh, now), (stale, now - timedelta(days=2))):
        live = counters.LiveCounters()
        live.add(pd.DataFrame({"event_id": [f"{item}-a", f"{item}-b"], "session_id": ["s", "s"], "item_id": [item] * 2,
                               "event_type": ["impression", "click"], "surface": ["search"] * 2, "ts": [at] * 2}))
        counters.push(store, live, [item], now=at)
    held = features.ServedItemFeatures(store, service, items)
    lean = held(items)[:, held.columns["item_counters"]]
    assert isinstance(held._counters, features.SqliteCounters)
    np.testing.assert_array_equal(lean, held._read("item_counters", items))  # Feast's provider, TTL applied
    fields = held.views["item_counters"]
    assert lean[0, fields.index("impressions_24h")] == 1 and lean[0, fields.index("clicks_24h")] == 1
    assert np.isnan(lean[1]).all() and np.isnan(lean[-1]).all()
    np.testing.assert_array_equal(lean[-2], lean[0])
    # read again, the stored values come from those the first read decoded: the same counts
    np.testing.assert_array_equal(held(items)[:, held.columns["item_counters"]], lean)


def test_a_process_that_built_the_warehouse_does_not_keep_it_from_others(built):
    # given this process just ran a dbt build in-process (dbt-duckdb caches its DuckDB instance)
    import subprocess
    import sys

    settings = built["settings"]
    steps.transform(settings, date(2026, 11, 29))
    # when another process (Airflow's next task, a monitor run) opens the warehouse
    other = subprocess.run([sys.executable, "-c", f"import duckdb; duckdb.connect({str(settings.warehouse_path)!r}).close()"],
                           capture_output=True, text=True, timeout=120)
    # then it can: the build released the file when it ended
    assert other.returncode == 0, other.stderr[-2000:]


def test_the_redis_online_store_serves_what_the_embedded_one_does(built):
    # given the small shop's features applied and materialised into Redis (SHOPLOOP_ONLINE_STORE, a Feast
    # project of its own) beside the embedded SQLite store / then Feast reads the same values from both,
    # the features the service holds match, and a real-time counter pushed lands in Redis
    import os
    import uuid
    from datetime import datetime, timezone

    import numpy as np
    import redis
    from conftest import redis_for

    from shoploop import features
    from shoploop.features import counters
    from shoploop.settings import Settings

    url = redis_for("the scale profile's online store is Redis")
    embedded = built["settings"]
    prefix = f"shoploop-test-{uuid.uuid4().hex[:10]}"
    # the online store alone differs: the marts stay the ones DuckDB built (the Spark side is tests/scale)
    on_redis = Settings(home=embedded.home, profile="scale", warehouse_engine="duckdb", redis_url=url, stream_prefix=prefix)
    assert on_redis.online_store == url and features.store_yaml(on_redis).parent == on_redis.feast_dir
    client, saved = redis.Redis.from_url(url), dict(os.environ)  # features.store exports a store's settings
    try:
        steps.feature_store(on_redis, date(2026, 11, 29))
        items = pd.read_parquet(embedded.marts / "item_text.parquet")["item_id"].dropna().tolist()[:60]
        frames = []
        for settings in (embedded, on_redis):
            store = features.store(settings)
            service = store.get_feature_service(settings.feature_service)
            rows = [{"item_id": i} for i in items]
            frames.append(pd.DataFrame(store.get_online_features(features=service, entity_rows=rows).to_dict()))
            held = features.ServedItemFeatures(store, service, items)(items)
        pd.testing.assert_frame_equal(frames[0], frames[1])
        assert np.isfinite(held).any() and len(list(client.scan_iter(match=b"*" + features.redis_project(on_redis).encode(), count=1000))) >= len(items)

        live = counters.LiveCounters()
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        live.add(pd.DataFrame({"event_id": ["a", "b"], "session_id": ["s", "s"], "item_id": [items[0]] * 2,
                               "event_type": ["impression", "click"], "surface": ["search"] * 2, "ts": [now] * 2}))
        counters.push(store, live, [items[0]])
        row = store.get_online_features(features=["item_counters:impressions_24h", "item_counters:clicks_24h"],
                                        entity_rows=[{"item_id": items[0]}]).to_dict()
        assert (row["impressions_24h"][0], row["clicks_24h"][0]) == (1, 1)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        for key in client.scan_iter(match=b"*" + features.redis_project(on_redis).encode(), count=1000):
            client.delete(key)
