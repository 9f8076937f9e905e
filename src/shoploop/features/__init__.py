"""Feast helpers: apply the feature repo, materialise to the online store, build point-in-time sets."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from shoploop.pipeline.progress import quiet, verbose
from shoploop.settings import QUIET_TOOLS, Settings


def _feast_env(settings: Settings) -> dict[str, str]:
    # the declarations' sources follow the engine (feature_repo/features.py): said even when it is the
    # default, so an engine another home of this process exported never leaks into this one's
    return {**os.environ, **settings.tool_env(), "SHOPLOOP_WAREHOUSE_ENGINE": settings.warehouse_engine}


def _not_the_file_registry_advisory(record: logging.LogRecord) -> bool:
    # Feast says `serve_features_while_materializing` "typically has no effect" off a SQL registry; on
    # our file registry, shared by the service and the materialising process, it is what keeps reads up.
    return not record.getMessage().startswith("`serve_features_while_materializing` is enabled but")


logging.getLogger("feast.repo_config").addFilter(_not_the_file_registry_advisory)


def redis_connection_string(url: str) -> str:
    """A Redis URL as Feast's Redis online store takes it: ``host:port,db=N[,password=..][,ssl=true]``."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    options = [f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}", f"db={int(parts.path.strip('/') or 0)}"]
    if parts.password:
        options.append(f"password={parts.password}")
    if parts.scheme == "rediss":
        options.append("ssl=true")
    return ",".join(options)


def redis_project(settings: Settings) -> str:
    """The Feast project of this home on Redis: ``stream_prefix`` with '_' for '-' (Feast 0.67 checks
    project names against SQLite's rules before it reads which online store is configured). Feast ends
    every Redis key of the project with this name."""
    return settings.stream_prefix.replace("-", "_")


SPARK_ALPHA = "The spark .* is an experimental feature in alpha development"


def store_yaml(settings: Settings) -> Path:
    """The feature_store.yaml this home's Feast reads: the repo's own on the embedded engines; otherwise a
    copy in the home with blocks swapped: on Redis (``online_store`` set to a Redis URL) the ``online_store``
    block and the project named after ``stream_prefix`` (``redis_project``), so shops sharing one Redis
    never share a key; on Spark (``warehouse_engine``) the ``offline_store`` block. The declarations
    (feature_repo/*.py) are the same (their sources follow the engine): scale-out is configuration."""
    import yaml

    repo_yaml = settings.feature_repo / "feature_store.yaml"
    if settings.online_store == "embedded" and settings.warehouse_engine == "duckdb":
        return repo_yaml
    config = yaml.safe_load(repo_yaml.read_text())
    if settings.online_store != "embedded":
        config["project"] = redis_project(settings)
        config["online_store"] = {"type": "redis", "connection_string": redis_connection_string(settings.online_store)}
    if settings.warehouse_engine == "spark":
        # point-in-time joins and materialisation on the warehouse's cluster (see shoploop.warehouse.spark)
        from shoploop.warehouse.spark import spark_conf

        config["offline_store"] = {"type": "spark", "spark_conf": spark_conf(settings)}
    path = settings.feast_dir / "feature_store.yaml"
    text = "# Made by shoploop.features.store_yaml from feature_repo/feature_store.yaml: edit that one.\n" + yaml.safe_dump(config)
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_text(text)
        os.replace(temporary, path)
    return path


def store(settings: Settings, offline: bool = False):
    """The project's FeatureStore (SHOPLOOP_HOME must be in the environment for the yaml to expand);
    ``offline`` for point-in-time joins and materialisation (on Spark, this process joins the cluster)."""
    from feast import FeatureStore

    # Only what Feast reads in this process: the yaml's and the declarations' home, and the engine their sources
    # follow where it is not the default (the default is left unsaid, so a later Settings(profile="scale") of this
    # process still fills it in). Exporting every setting would hand a settings copy's choices to whatever this
    # process starts later.
    engine = {} if settings.warehouse_engine == Settings.model_fields["warehouse_engine"].default else \
        {"SHOPLOOP_WAREHOUSE_ENGINE": settings.warehouse_engine}
    os.environ.update({**QUIET_TOOLS, "SHOPLOOP_HOME": str(settings.home), **engine})
    if settings.warehouse_engine == "spark" and not verbose():
        # Feast calls its Spark store "experimental" wherever a SparkSource is made: nothing to act on. (Its
        # module puts a filter of its own first when imported: import it, then put this one before it.)
        import feast.infra.offline_stores.contrib.spark_offline_store.spark  # noqa: F401

        warnings.filterwarnings("ignore", message=SPARK_ALPHA, category=RuntimeWarning)
    if offline and settings.warehouse_engine == "spark":
        from shoploop.warehouse.spark import session

        session(settings)  # Feast's Spark offline store takes the active session: this home's cluster, quiet
    return FeatureStore(repo_path=str(settings.feature_repo), fs_yaml_file=store_yaml(settings))


def apply(settings: Settings) -> None:
    """`feast apply` on the declarations in feature_repo/ (the real CLI, as an engineer would run it)."""
    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    if settings.warehouse_engine == "spark":
        from shoploop.warehouse.spark import start_spark

        start_spark(settings)  # Feast's Spark offline store reads the sources' schemas on the cluster
    feast = Path(sys.executable).with_name("feast")
    result = subprocess.run([str(feast), "--feature-store-yaml", str(store_yaml(settings)), "apply"],
                            cwd=settings.feature_repo, env=_feast_env(settings), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"feast apply failed:\n{result.stdout}\n{result.stderr}")


def materialize(settings: Settings, end: datetime) -> None:
    """Load the latest feature values up to ``end`` into the online store."""
    fs = store(settings, offline=True)
    # The widest TTL among the views: older snapshots can never be served anyway. (Feast's DuckDB
    # store calls ibis, which calls a DuckDB method DuckDB now deprecates: nothing for a user to do.)
    views = [view.name for view in fs.list_feature_views()]
    # Feast prints a coloured header and an empty line per view (its bars are off off a terminal): one
    # line of our own says the same; --verbose shows Feast's.
    with quiet("fetch_arrow_table"), contextlib.redirect_stdout(sys.stdout if verbose() else io.StringIO()):
        fs.materialize(start_date=end - timedelta(days=90), end_date=end)
    print(f"materialised {len(views)} feature views ({', '.join(sorted(views))}) up to {end:%Y-%m-%d %H:%M} "
          f"into the {'SQLite' if settings.online_store == 'embedded' else 'Redis'} online store")


def historical(settings: Settings, entity_rows: pd.DataFrame, service: str | None = None) -> pd.DataFrame:
    """Point-in-time join: for each (item_id, event_timestamp) row, the features known at that moment."""
    fs = store(settings, offline=True)
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


class ServedItemFeatures:
    """The ranker's item features on the request path (a FeatureLookup, see shoploop.serving.predict).

    The daily-snapshot features change only when a materialisation lands, so the worker holds them
    for the whole catalog as one matrix, read once from the online store and read again when Feast's
    registry records a newer materialisation (``refresh``). Only the real-time counters change between
    materialisations: they are read per request, for the candidates only, in one round trip to the
    online store (one query on SQLite, one pipeline on Redis), so every worker and replica ranks with
    the same counts. A counter older than its view's TTL reads as no activity, as it does offline.
    """

    def __init__(self, fs, service, item_ids: list[str]):
        from shoploop.models.ranker import ITEM_FEATURES

        self.fs, self.item_ids = fs, list(item_ids)
        self.index = {item_id: row for row, item_id in enumerate(self.item_ids)}
        self.views = {p.name: [f.name for f in p.features] for p in service.feature_view_projections}
        self.columns = {name: [ITEM_FEATURES.index(f) for f in fields] for name, fields in self.views.items()}
        self.static = [name for name in self.views if name != "item_counters"]
        self.materialized_at = self._materialized_at()
        self.matrix = self._read_static()
        # the counters' read per request: straight from the table on SQLite, through Feast's provider elsewhere
        self._counters = (SqliteCounters(self.fs, self._views["item_counters"], self.views["item_counters"])
                          if "item_counters" in self.views and fs.config.online_store.type == "sqlite" else None)

    def _view(self, name: str):
        return self.fs.registry.get_feature_view(name, self.fs.project, allow_cache=False)

    def _materialized_at(self) -> list:
        return [self._view(name).most_recent_end_time for name in self.static]

    def _read(self, name: str, item_ids: list[str]) -> np.ndarray:
        """One view's features of these items as float64 (NaN: no row, or older than the view's TTL)."""
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        view, fields = self._views[name], self.views[name]
        keys = [EntityKey(join_keys=["item_id"], entity_values=[Value(string_val=i)]) for i in item_ids]
        # a copy: Feast's Redis store appends its timestamp key to the list it is given
        rows = self.fs._get_provider().online_read(self.fs.config, view, keys, list(fields))
        oldest = datetime.now(timezone.utc) - view.ttl if view.ttl else None
        out = np.full((len(item_ids), len(fields)), np.nan)
        for i, (stamp, values) in enumerate(rows):
            if values is None or (oldest is not None and stamp is not None and _utc(stamp) < oldest):
                continue
            for j, field in enumerate(fields):
                value = values.get(field)
                kind = value.WhichOneof("val") if value is not None else None
                if kind is not None and kind != "null_val":
                    out[i, j] = float(getattr(value, kind))
        return out

    def _read_static(self) -> np.ndarray:
        from shoploop.models.ranker import ITEM_FEATURES

        self._views = {name: self._view(name) for name in self.views}
        matrix = np.full((len(self.item_ids), len(ITEM_FEATURES)), np.nan)
        for name in self.static:
            for start in range(0, len(self.item_ids), 1000):
                chunk = self.item_ids[start:start + 1000]
                matrix[start:start + len(chunk), self.columns[name]] = self._read(name, chunk)
        return matrix

    def refresh(self) -> bool:
        """Read the snapshot features again if a materialisation landed since; True when it did."""
        latest = self._materialized_at()
        if latest == self.materialized_at:
            return False
        matrix = self._read_static()
        self.matrix, self.materialized_at = matrix, latest  # one swap: a request sees old or new, never half
        return True

    def held(self, name: str) -> np.ndarray:
        """One held snapshot feature of every catalog item, in catalog order (NaN where none)."""
        from shoploop.models.ranker import ITEM_FEATURES

        return self.matrix[:, ITEM_FEATURES.index(name)]

    def __call__(self, item_ids: list[str]) -> np.ndarray:
        rows = np.array([self.index.get(i, -1) for i in item_ids], dtype=np.int64)
        out = np.where((rows >= 0)[:, None], self.matrix[np.maximum(rows, 0)], np.nan)
        if self._counters is not None:
            out[:, self.columns["item_counters"]] = self._counters.read(item_ids)
        elif "item_counters" in self.views:
            out[:, self.columns["item_counters"]] = self._read("item_counters", item_ids)
        return out


# Distinct stored counter values a worker remembers decoded (SqliteCounters): a few hundred in practice.
DECODED_VALUES = 100_000


class SqliteCounters:
    """The real-time counters of some items from Feast's SQLite online store, on the request path.

    The same table, rows and TTL rule as Feast's ``online_read``, in one query, without what made that
    read most of a search's time (3 ms of a 10-ms search on this machine): serialising every entity key
    again on every request (held here, once per item) and converting every row's timestamp to a datetime
    through sqlite3's converters (compared here as the epoch seconds the table holds). Each thread keeps
    its own read-only connection. Other online stores (Redis) are read through Feast's provider.
    """

    def __init__(self, fs, view, fields: list[str]):
        import threading

        from feast.infra.online_stores.helpers import compute_table_id
        from feast.infra.online_stores.sqlite import SqliteOnlineStore

        config = fs.config
        self.path = SqliteOnlineStore._get_db_path(config)
        table = compute_table_id(fs.project, view, config.registry.enable_online_feature_view_versioning)
        self.fields, self.ttl = list(fields), view.ttl
        self.column = {field: j for j, field in enumerate(self.fields)}
        self.version = config.entity_key_serialization_version
        self.sql = 'SELECT entity_key, feature_name, value, event_ts FROM "{}" WHERE entity_key IN ({{}})'.format(
            table.replace('"', '""'))
        self.keys: dict[str, bytes] = {}
        self.decoded: dict[bytes, float] = {}
        self.local = threading.local()

    def _key(self, item_id: str) -> bytes:
        key = self.keys.get(item_id)
        if key is None:
            from feast.infra.key_encoding_utils import serialize_entity_key
            from feast.protos.feast.types.EntityKey_pb2 import EntityKey
            from feast.protos.feast.types.Value_pb2 import Value

            key = self.keys[item_id] = serialize_entity_key(
                EntityKey(join_keys=["item_id"], entity_values=[Value(string_val=item_id)]),
                entity_key_serialization_version=self.version)
        return key

    def read(self, item_ids: list[str]) -> np.ndarray:
        """The counters of these items as float64 (NaN: no row, or older than the view's TTL)."""
        import sqlite3

        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = self.local.connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        keys = [self._key(i) for i in item_ids]
        at: dict[bytes, list[int]] = {}
        for i, key in enumerate(keys):
            at.setdefault(key, []).append(i)
        # Feast writes a row's naive UTC time as the epoch of that clock reading in local time
        # (sqlite adapter): the bound goes through the same conversion, so it holds in any time zone.
        oldest = (datetime.now(timezone.utc) - self.ttl).replace(tzinfo=None).timestamp() if self.ttl else None
        # (position, field, value) of every cell, then one assignment: a numpy item assignment per row
        # was most of this read's time.
        rows, cols, values = [], [], []
        column, decoded = self.column, self.decoded
        for key, field, blob, stamp in connection.execute(self.sql.format(",".join("?" * len(keys))), keys):
            j = column.get(field)
            if j is None or (oldest is not None and stamp is not None and stamp < oldest):
                continue
            number = decoded.get(blob)
            if number is None:
                number = self._decode(blob)
            for i in at[key]:  # every position the item holds
                rows.append(i)
                cols.append(j)
                values.append(number)
        out = np.full((len(item_ids), len(self.fields)), np.nan)
        out[rows, cols] = values
        return out

    def _decode(self, blob: bytes) -> float:
        """A stored value as a float (NaN for a null), remembered by its bytes: counts repeat (most items
        hold small ones), and decoding a protobuf message was most of the read's Python time."""
        from feast.protos.feast.types.Value_pb2 import Value

        value = Value.FromString(blob)
        kind = value.WhichOneof("val")
        number = float(getattr(value, kind)) if kind is not None and kind != "null_val" else float("nan")
        if len(self.decoded) < DECODED_VALUES:
            self.decoded[blob] = number
        return number


def _utc(stamp: datetime) -> datetime:
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)


def online_lookup(fs, service):
    """A FeatureLookup (see shoploop.serving.predict) over the online store; items with no row come back NaN."""
    from shoploop.models.ranker import ITEM_FEATURES

    def lookup(item_ids: list[str]):
        response = fs.get_online_features(features=service, entity_rows=[{"item_id": i} for i in item_ids])
        frame = pd.DataFrame(response.to_dict())
        return frame[ITEM_FEATURES].astype("float64").to_numpy()

    return lookup


def online_user_lookup(fs, service):
    """A UserLookup (see shoploop.serving.predict) over the online store: the shopper's log mean clicked price."""

    def lookup(user_key: str) -> float:
        value = fs.get_online_features(features=service, entity_rows=[{"user_key": user_key}]).to_dict()
        price = value["log_mean_clicked_price"][0]
        return float("nan") if price is None else float(price)

    return lookup
