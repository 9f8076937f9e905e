"""Data in: the market simulator and the landing zone (the data contract)."""

from __future__ import annotations

from datetime import date

from shoploop.data import landing
from shoploop.data.simulator import MarketSimulator
from shoploop.settings import Settings


def simulate(settings: Settings, run_date: date) -> dict[str, int]:
    """Simulate the shop for the days before ``run_date`` and land every table; returns row counts."""
    sim = MarketSimulator(settings.seed, settings.n_items, settings.n_users, settings.n_days, settings.sessions_per_day)
    tables = sim.run(run_date)
    counts = {}
    for name, frame in tables.items():
        if name == "events":
            # Events land in one partition per day of traffic, as the live stream would write them.
            for dt, day in frame.groupby(frame["ts"].dt.date):
                landing.write_partition(settings.landing, name, dt, day)
        else:
            landing.write_partition(settings.landing, name, run_date, frame)
        counts[name] = len(frame)
    return counts
