"""Data layer figures: simulator throughput, dbt build time, and what cleaning did to each real dataset.

For each real dataset in ../shared/datasets (read in place): rows landed, rows quarantined by
reason (adapter and warehouse), duplicates collapsed, prices missing or flagged as outliers.
Prints a table and saves bench/results/data_quality.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
RUN_DATE = date(2026, 11, 29)
REAL = [("amazon2018", "amazon_gift_cards"), ("unisrec", "amazon_office_products"), ("esci", "esci_sample")]


def _settings(home: Path):
    os.environ["SHOPLOOP_HOME"] = str(home)
    from shoploop.settings import Settings

    return Settings()


def simulator_and_dbt(home: Path, scale: int | None = None) -> dict:
    from shoploop.pipeline import steps

    settings = _settings(home)
    if scale:  # the same growth rule as `shoploop simulate --scale`
        settings = settings.model_copy(update={"n_items": scale, "n_users": max(settings.n_users, scale // 4),
                                               "sessions_per_day": max(settings.sessions_per_day, int(scale * 0.036))})
    started = time.perf_counter()
    counts = steps.simulate(settings, RUN_DATE)
    sim_s = time.perf_counter() - started
    started = time.perf_counter()
    steps.transform(settings, RUN_DATE)
    return {"items": settings.n_items, "events": counts["events"], "simulate_s": round(sim_s, 1),
            "events_per_s": round(counts["events"] / sim_s), "dbt_build_s": round(time.perf_counter() - started, 1)}


def real_dataset(fmt: str, folder: str, home: Path) -> dict:
    from shoploop.data import ingest
    from shoploop.pipeline import steps

    settings = _settings(home)
    started = time.perf_counter()
    landed = ingest(settings, fmt, DATASETS / folder, RUN_DATE)
    ingest_s = time.perf_counter() - started
    started = time.perf_counter()
    steps.transform(settings, RUN_DATE)
    dbt_s = time.perf_counter() - started
    con = duckdb.connect(str(settings.warehouse_path))  # same config as dbt's in-process connection
    items = con.execute("select count(*), count(*) filter (where price_missing), count(*) filter (where price_outlier) "
                        "from stg_items").fetchone()
    events = con.execute("select count(*) from stg_events").fetchone()[0]
    con.close()
    quarantine = pd.read_parquet(settings.marts / "quarantine.parquet").dropna(how="all")
    adapter_q = pd.read_parquet(next((settings.landing / "quarantine").glob("dt=*/*.parquet")))
    return {
        "format": fmt, "landed": landed, "ingest_s": round(ingest_s, 1), "dbt_build_s": round(dbt_s, 1),
        "items_after_dedup": items[0], "price_missing": items[1], "price_outliers": items[2],
        "event_duplicates_collapsed": landed["events"] - events,
        "quarantined_by_reason": {f"{t}: {r}": int(n) for (t, r), n in
                                  pd.concat([adapter_q[["table_name", "reason"]], quarantine[["table_name", "reason"]]])
                                  .value_counts().items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, default=200_000, help="items for the at-scale run (0: skip it)")
    args = parser.parse_args()
    results = {"run_date": RUN_DATE.isoformat()}
    with tempfile.TemporaryDirectory() as tmp:
        results["simulator"] = simulator_and_dbt(Path(tmp) / "sim")
        if args.scale:
            results["simulator_at_scale"] = simulator_and_dbt(Path(tmp) / "scale", args.scale)
        results["real"] = {folder: real_dataset(fmt, folder, Path(tmp) / folder) for fmt, folder in REAL}
    for key in ("simulator", "simulator_at_scale"):
        if s := results.get(key):
            print(f"\n{key}: {s['events']:,} events for {s['items']:,} items in {s['simulate_s']} s "
                  f"({s['events_per_s']:,} events/s); dbt build {s['dbt_build_s']} s")
    print(f"\n{'dataset':<26}{'items':>7}{'no price':>10}{'outliers':>10}{'dup events':>12}{'dbt s':>8}  quarantined")
    for folder, r in results["real"].items():
        print(f"{folder:<26}{r['items_after_dedup']:>7}{r['price_missing']:>10}{r['price_outliers']:>10}"
              f"{r['event_duplicates_collapsed']:>12}{r['dbt_build_s']:>8}  {r['quarantined_by_reason'] or 'none'}")
    out = ROOT / "bench" / "results" / "data_quality.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"saved {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
