"""Feast declarations for shoploop: entities, sources over the dbt marts, feature views, services.

Declarations only; the marts they read are written by `shoploop transform` (dbt).
"""

import os
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource
from feast.types import Float64, Int64
from feast.value_type import ValueType

# Marts live in the shoploop home; feature_store.yaml expands the same variable.
MARTS = os.path.join(os.environ.get("SHOPLOOP_HOME", ".shoploop"), "marts")


def mart_source(name: str, mart: str):
    """A mart as a batch source: the same parquet file for the offline store either warehouse engine
    pairs with (DuckDB reads a FileSource, Feast's Spark offline store only a SparkSource)."""
    path = os.path.join(MARTS, f"{mart}.parquet")
    if os.environ.get("SHOPLOOP_WAREHOUSE_ENGINE") == "spark":
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import (
            SparkSource,
        )

        return SparkSource(name=name, path=path, file_format="parquet", timestamp_field="event_timestamp")
    return FileSource(name=name, path=path, timestamp_field="event_timestamp")


# Why: every item feature and ranking row is keyed by the catalog's item id.
item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING, description="A catalog item")

# Why: shoppers are keyed by the pseudonymised user_key, never the raw id (see shoploop.warehouse.privacy).
user = Entity(name="user", join_keys=["user_key"], value_type=ValueType.STRING, description="A pseudonymised shopper")

# Why: the item_features mart holds daily point-in-time snapshots written by dbt.
item_features_source = mart_source("item_features_source", "item_features")

# Why: the user_features mart holds daily snapshots of shopper behaviour.
user_features_source = mart_source("user_features_source", "user_features")

# Why: the trailing-24-hour counters; the service pushes fresh values as feedback arrives, and the
# item_counters mart (dbt, from the same event log) is their history for point-in-time training sets.
item_counters_push = PushSource(
    name="item_counters_push",
    batch_source=mart_source("item_counters_source", "item_counters"),
)

# Why: what the ranker knows about an item besides its text: price, quality signals, popularity.
item_features = FeatureView(
    name="item_features",
    entities=[item],
    ttl=timedelta(days=30),
    schema=[
        Field(name="log_price", dtype=Float64),
        Field(name="price_band", dtype=Int64),
        Field(name="rating", dtype=Float64),
        Field(name="log_review_count", dtype=Float64),
        Field(name="review_rating_mean", dtype=Float64),
        Field(name="impressions", dtype=Int64),
        Field(name="clicks", dtype=Int64),
        Field(name="ctr_smoothed", dtype=Float64),
        Field(name="cvr_smoothed", dtype=Float64),
        Field(name="popularity", dtype=Float64),
        Field(name="age_days", dtype=Int64),
    ],
    online=True,
    source=item_features_source,
    tags={"team": "search", "mart": "item_features"},
)

# Why: what is happening to an item right now (a launch, a trend, a stock-out) before the daily
# snapshot knows it. A snapshot older than the window means nothing happened: the ranker reads 0.
item_counters = FeatureView(
    name="item_counters",
    entities=[item],
    ttl=timedelta(hours=24),
    schema=[
        Field(name="impressions_24h", dtype=Int64),
        Field(name="clicks_24h", dtype=Int64),
        Field(name="purchases_24h", dtype=Int64),
    ],
    online=True,
    source=item_counters_push,
    tags={"team": "search", "mart": "item_counters", "pushed_by": "service /feedback"},
)

# Why: a shopper's activity and price level personalise ranking and recommendations.
user_features = FeatureView(
    name="user_features",
    entities=[user],
    ttl=timedelta(days=90),
    schema=[
        Field(name="sessions", dtype=Int64),
        Field(name="clicks", dtype=Int64),
        Field(name="purchases", dtype=Int64),
        Field(name="log_mean_clicked_price", dtype=Float64),
    ],
    online=True,
    source=user_features_source,
    tags={"team": "recommend", "mart": "user_features"},
)

# Why: the ranker's exact feature set, versioned so a model names the features it was trained on.
ranker_v1 = FeatureService(
    name="ranker_v1",
    features=[
        item_features[["log_price", "rating", "log_review_count", "review_rating_mean", "ctr_smoothed",
                       "cvr_smoothed", "popularity", "age_days"]],
        item_counters,
    ],
    tags={"model": "shoploop-ranker"},
)

# Why: the recommender's user context, served with the same online store.
recommender_v1 = FeatureService(name="recommender_v1", features=[user_features], tags={"model": "shoploop-recommender"})
