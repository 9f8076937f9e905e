"""The warehouse and offline store, embedded (DuckDB) against the scale profile's (Spark standalone
cluster), side by side on one simulated shop: `dbt build`, Feast's materialisation into the online
store, and Feast's point-in-time join of a training set, each engine on its own home over the same
landing zone; and whether the marts came out the same (rows and checksum per mart).

Default 200,000 items (about 1.4 million events). The Spark cluster is this project's (one master,
one worker with every core of this machine), started by the first build and stopped at the end.
``.venv/bin/python bench/scale_warehouse.py [--items N] [--join-rows N]``. Prints a table and saves
bench/results/scale_warehouse.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RUN_DATE = date(2026, 11, 29)
KEY = "bench-scale-key-0123456789"


def timed(label: str, work) -> float:
    print(f"  {label} ...", flush=True)
    started = time.perf_counter()
    work()
    seconds = time.perf_counter() - started
    print(f"  {label}: {seconds:.1f} s", flush=True)
    return round(seconds, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--join-rows", type=int, default=200_000, help="entity rows of the point-in-time join")
    args = parser.parse_args()

    from shoploop import features
    from shoploop.pipeline import steps
    from shoploop.settings import Settings
    from shoploop.warehouse import mart_fingerprints, spark

    saved_env = dict(os.environ)
    # the same growth rule as `shoploop simulate --scale`
    shop = {"n_items": args.items, "n_users": max(2000, args.items // 4), "sessions_per_day": max(600, int(args.items * 0.036)),
            "pseudonym_key": KEY, "spark_port": 7390, "spark_ui_port": 8392}
    result = {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores", "items": args.items, "engines": {}}
    with tempfile.TemporaryDirectory() as tmp:
        homes = {engine: Settings(home=Path(tmp) / engine, warehouse_engine=engine, **shop) for engine in ("duckdb", "spark")}
        print(f"simulating {args.items:,} items ...", flush=True)
        counts = steps.simulate(homes["duckdb"], RUN_DATE)
        result["events"] = int(counts["events"])
        shutil.copytree(homes["duckdb"].landing, homes["spark"].landing)
        end = datetime.combine(RUN_DATE + timedelta(days=1), datetime.min.time())
        try:
            for engine, settings in homes.items():
                print(f"{engine}:", flush=True)
                row = {"dbt_build_s": timed("dbt build", lambda: steps.transform(settings, RUN_DATE))}
                features.apply(settings)
                row["materialise_s"] = timed("materialise", lambda: features.materialize(settings, end))
                pairs = pd.read_parquet(settings.marts / "ranker_training_pairs.parquet", columns=["item_id", "event_timestamp"])
                rows = pairs.drop_duplicates().sample(n=min(args.join_rows, len(pairs)), random_state=7).reset_index(drop=True)
                rows["event_timestamp"] = pd.to_datetime(rows["event_timestamp"], utc=True)
                joined = {}
                row["pit_join_s"] = timed(f"point-in-time join of {len(rows):,} rows",
                                          lambda: joined.setdefault("frame", features.historical(settings, rows)))
                row["pit_rows"] = len(joined["frame"])
                result["engines"][engine] = row
                os.environ.clear()
                os.environ.update(saved_env)  # features.store exports the settings it was given
            same = mart_fingerprints(homes["duckdb"].marts) == mart_fingerprints(homes["spark"].marts)
            result["marts_identical"] = same
        finally:
            spark.stop_spark(homes["spark"])
            os.environ.clear()
            os.environ.update(saved_env)

    duck, on_spark = result["engines"]["duckdb"], result["engines"]["spark"]
    result["spark_over_duckdb"] = {k: round(on_spark[k] / max(duck[k], 1e-9), 2) for k in ("dbt_build_s", "materialise_s", "pit_join_s")}
    print(f"\n{args.items:,} items, {result['events']:,} events ({result['machine']}); marts identical: {result['marts_identical']}")
    print(f"{'engine':<10}{'dbt build s':>13}{'materialise s':>15}{'PIT join s':>12}")
    for engine, row in result["engines"].items():
        print(f"{engine:<10}{row['dbt_build_s']:>13}{row['materialise_s']:>15}{row['pit_join_s']:>12}")
    ratio = result["spark_over_duckdb"]
    print(f"{'spark/duckdb':<10}{ratio['dbt_build_s']:>13}{ratio['materialise_s']:>15}{ratio['pit_join_s']:>12}")
    out = ROOT / "bench" / "results" / "scale_warehouse.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nsaved {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
