"""Data in: the market simulator and the landing zone (the data contract)."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pandas as pd

from shoploop.data import landing
from shoploop.data.policies import LoggingPolicy
from shoploop.data.simulator import MarketSimulator, parse_drifts
from shoploop.settings import Settings


def simulate(settings: Settings, run_date: date, policy: LoggingPolicy | None = None) -> dict[str, int]:
    """Simulate the shop for the days before ``run_date`` and land every table; returns row counts.
    ``policy`` ranks the slates (default: the lexical ranker a shop has before any model).

    Logs are history: the days whose sessions this home landed already keep them (a daily run lands
    the new day alone, its slates from today's policy); the catalog, shoppers, reviews and judgments
    land as they stand on the run date. ``event_days`` in the counts: the days of sessions landed now."""
    sim = MarketSimulator(settings.seed, settings.n_items, settings.n_users, settings.n_days, settings.sessions_per_day,
                          parse_drifts(settings.drift))
    # The simulator's truth (query types, the last day of sessions landed) stays beside the landing zone, not in it.
    truth = settings.home / "simulator"
    truth.mkdir(parents=True, exist_ok=True)
    marker = truth / "events.json"
    opens = run_date - timedelta(days=settings.n_days)
    landed = date.fromisoformat(json.loads(marker.read_text())["through"]) if marker.exists() else None
    first_day = 0 if landed is None else min(max(0, (landed - opens).days + 1), settings.n_days)
    tables = sim.run(run_date, policy=policy, first_day=first_day)
    tables.pop("query_types").to_parquet(truth / "query_types.parquet", index=False)
    # The simulator rejects nothing, but the day's quarantine partition exists like any source's.
    tables["quarantine"] = pd.DataFrame(columns=list(landing.CONTRACT["quarantine"]))
    counts = {}
    for name, frame in tables.items():
        if name == "events":
            # Events land in one partition per day of traffic, as the live stream would write them.
            for dt, day in frame.groupby(frame["ts"].dt.date):
                landing.write_partition(settings.landing, name, dt, day)
        else:
            landing.write_partition(settings.landing, name, run_date, frame)
        counts[name] = len(frame)
    counts["event_days"] = settings.n_days - first_day
    if first_day < settings.n_days:
        marker.write_text(json.dumps({"through": (run_date - timedelta(days=1)).isoformat()}))
    return counts


def ingest(settings: Settings, fmt: str, path, run_date: date) -> dict[str, int]:
    """Land a real dataset (see shoploop.data.adapters) in the run date's partition; returns row counts."""
    from datetime import datetime
    from pathlib import Path

    from shoploop.data import adapters

    landed = adapters.read(fmt, Path(path), datetime.combine(run_date, datetime.min.time()))
    tables = {**landed.tables, "quarantine": landed.quarantine}
    counts = {}
    # Every contract table gets this source's file, empty when the format has no such table, so
    # the warehouse always finds each source.
    for name, columns in landing.CONTRACT.items():
        frame = tables.get(name, pd.DataFrame(columns=list(columns)))
        landing.write_partition(settings.landing, name, run_date, frame, part=fmt)
        counts[name] = len(frame)
    return counts
