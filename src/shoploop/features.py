"""Feast helpers: apply the feature repo, materialise to the online store, build point-in-time sets."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from shoploop.progress import quiet
from shoploop.settings import Settings


def _feast_env(settings: Settings) -> dict[str, str]:
    return {**os.environ, **settings.tool_env()}


def store(settings: Settings):
    """The project's FeatureStore (SHOPLOOP_HOME must be in the environment for the yaml to expand)."""
    from feast import FeatureStore

    os.environ.update(settings.tool_env())
    return FeatureStore(repo_path=str(settings.feature_repo))


def apply(settings: Settings) -> None:
    """`feast apply` on the declarations in feature_repo/ (the real CLI, as an engineer would run it)."""
    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    feast = Path(sys.executable).with_name("feast")
    result = subprocess.run([str(feast), "apply"], cwd=settings.feature_repo, env=_feast_env(settings),
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"feast apply failed:\n{result.stdout}\n{result.stderr}")


def materialize(settings: Settings, end: datetime) -> None:
    """Load the latest feature values up to ``end`` into the online store."""
    fs = store(settings)
    # The widest TTL among the views: older snapshots can never be served anyway. (Feast's DuckDB
    # store calls ibis, which calls a DuckDB method DuckDB now deprecates: nothing for a user to do.)
    with quiet("fetch_arrow_table"):
        fs.materialize(start_date=end - timedelta(days=90), end_date=end)


def historical(settings: Settings, entity_rows: pd.DataFrame, service: str | None = None) -> pd.DataFrame:
    """Point-in-time join: for each (item_id, event_timestamp) row, the features known at that moment."""
    fs = store(settings)
    feature_service = fs.get_feature_service(service or settings.feature_service)
    with quiet("fetch_arrow_table"):
        return fs.get_historical_features(entity_df=entity_rows, features=feature_service).to_df()


def latest_item_features(settings: Settings) -> pd.DataFrame:
    """Each item's newest daily snapshot (item_features mart) with its counters as they stood at that
    snapshot (item_counters mart; none in the 24 hours before it: no counters), indexed by item_id."""
    feats = pd.read_parquet(settings.marts / "item_features.parquet").dropna(subset=["item_id"])
    feats = feats.sort_values("event_timestamp").drop_duplicates("item_id", keep="last").set_index("item_id")
    as_of = feats["event_timestamp"].max()
    counters = pd.read_parquet(settings.marts / "item_counters.parquet").dropna(subset=["item_id"])
    known = counters[(counters["event_timestamp"] <= as_of) & (counters["event_timestamp"] > as_of - timedelta(hours=24))]
    known = known.sort_values("event_timestamp").drop_duplicates("item_id", keep="last").set_index("item_id")
    return feats.join(known.drop(columns="event_timestamp"))


def online_lookup(fs, service):
    """A FeatureLookup (see shoploop.predict) over the online store; items with no row come back NaN."""
    from shoploop.models.ranker import ITEM_FEATURES

    def lookup(item_ids: list[str]):
        response = fs.get_online_features(features=service, entity_rows=[{"item_id": i} for i in item_ids])
        frame = pd.DataFrame(response.to_dict())
        return frame[ITEM_FEATURES].astype("float64").to_numpy()

    return lookup


def online_user_lookup(fs, service):
    """A UserLookup (see shoploop.predict) over the online store: the shopper's log mean clicked price."""

    def lookup(user_key: str) -> float:
        value = fs.get_online_features(features=service, entity_rows=[{"user_key": user_key}]).to_dict()
        price = value["log_mean_clicked_price"][0]
        return float("nan") if price is None else float(price)

    return lookup
