"""The online store, embedded (SQLite in the home) against the scale profile's (Redis), side by side on
the same built home: materialisation of the marts, the service's per-request read (the 100 candidates'
real-time counters, one round trip), Feast's whole feature-service read of 100 items, and a push of 100
items' counters (what the counters' feeder does). Serving over HTTP in the scale profile is
bench/serving.py's, run with SHOPLOOP_PROFILE=scale after `shoploop deploy` (2 replicas, Redis stream
and online store): it keeps each setup's figures.

Run on a built home (after `make demo`): ``.venv/bin/python bench/scale_profile.py``. Needs a Redis
(SHOPLOOP_REDIS_URL, default 127.0.0.1:6379/0); the bench's keys are a Feast project of their own,
removed afterwards. Prints a table and saves bench/results/scale_profile.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def percentiles(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1000
    return {"n": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def measure(settings, repeats: int, rng: np.random.Generator) -> dict:
    import pandas as pd

    from shoploop import features
    from shoploop.features import counters

    store = features.store(settings)
    service = store.get_feature_service(settings.feature_service)
    items = pd.read_parquet(settings.marts / "item_text.parquet")["item_id"].dropna().tolist()
    started = time.perf_counter()
    held = features.ServedItemFeatures(store, service, items)
    load_s = time.perf_counter() - started
    held_share = float(np.isfinite(held.matrix).any(axis=1).mean())  # items with features held: the store is filled
    candidates = [list(rng.choice(items, 100, replace=False)) for _ in range(repeats)]
    request, whole, push = [], [], []
    live = counters.LiveCounters()
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    for batch in candidates:
        t = time.perf_counter()
        held(batch)
        request.append(time.perf_counter() - t)
    for batch in candidates[: max(20, repeats // 5)]:
        t = time.perf_counter()
        store.get_online_features(features=service, entity_rows=[{"item_id": i} for i in batch]).to_dict()
        whole.append(time.perf_counter() - t)
    for batch in candidates[: max(20, repeats // 5)]:
        live.add(pd.DataFrame({"event_id": [str(uuid.uuid4()) for _ in batch], "session_id": "bench",
                               "item_id": batch, "event_type": "impression", "surface": "search", "ts": now}))
        t = time.perf_counter()
        counters.push(store, live, batch)
        push.append(time.perf_counter() - t)
    return {"items": len(items), "items_with_features": round(held_share, 4), "hold_catalog_s": round(load_s, 2), "request_read": percentiles(request),
            "feature_service_read": percentiles(whole), "push_100": percentiles(push)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=500, help="requests per read measurement")
    args = parser.parse_args()

    import redis

    from shoploop import features
    from shoploop.settings import Settings, get_settings

    embedded = get_settings()
    if not (embedded.marts / "item_features.parquet").exists():
        raise SystemExit(f"scale profile bench: no marts in {embedded.home}: run `make demo` first")
    prefix = f"bench_{uuid.uuid4().hex[:8]}"
    # the online store only: the marts stay the ones DuckDB built (bench/scale_warehouse.py is Spark's)
    on_redis = Settings(home=embedded.home, profile="scale", warehouse_engine="duckdb", stream_prefix=prefix,
                        redis_url=os.environ.get("SHOPLOOP_REDIS_URL", "redis://127.0.0.1:6379/0"))
    client = redis.Redis.from_url(on_redis.redis_url)
    result = {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores", "home": str(embedded.home), "profiles": {}}
    saved_env = dict(os.environ)
    end = datetime.now(timezone.utc).replace(tzinfo=None) + timedelta(days=1)
    try:
        profiles = (("embedded (SQLite)", embedded), ("scale (Redis)", on_redis))
        materialise = {name: [] for name, _ in profiles}
        for name, settings in profiles:
            features.apply(settings)
        for attempt in (1, 2):  # alternating, the faster of two each: the first run in a process pays imports
            for name, settings in profiles:
                print(f"{name}: materialise ({attempt} of 2) ...", flush=True)
                started = time.perf_counter()
                features.materialize(settings, end)
                materialise[name].append(time.perf_counter() - started)
                os.environ.clear()
                os.environ.update(saved_env)
        for name, settings in profiles:
            row = {"materialise_s": round(min(materialise[name]), 1), **measure(settings, args.repeats, np.random.default_rng(7))}
            result["profiles"][name] = row
            os.environ.clear()
            os.environ.update(saved_env)  # features.store exports the settings it was given
            print(f"  {row}", flush=True)
    finally:
        for key in client.scan_iter(match=b"*" + features.redis_project(on_redis).encode(), count=1000):
            client.delete(key)

    print(f"\n{'online store':<20}{'materialise s':>14}{'hold catalog s':>15}{'request p50':>12}{'p99':>8}"
          f"{'feast 100 p50':>14}{'push 100 p50':>13}   (ms)")
    for name, row in result["profiles"].items():
        print(f"{name:<20}{row['materialise_s']:>14}{row['hold_catalog_s']:>15}{row['request_read']['p50_ms']:>12}"
              f"{row['request_read']['p99_ms']:>8}{row['feature_service_read']['p50_ms']:>14}{row['push_100']['p50_ms']:>13}")
    out = ROOT / "bench" / "results" / "scale_profile.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nsaved {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
