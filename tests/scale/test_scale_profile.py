"""The scale profile, switched by one setting (SHOPLOOP_PROFILE=scale), against the real servers: Airflow
with every component a process of its own (api-server, scheduler, dag-processor, triggerer, 2 Celery
workers), metadata on PostgreSQL, broker on Redis, one JWT secret; the daily refresh DAG runs end to end
on it, its dbt build on a Spark standalone cluster and its features through Feast's Spark offline store
into the Redis online store. The same landing zone built by the embedded profile (DuckDB, Feast on
DuckDB and SQLite) gives the same marts, the same point-in-time training set and a model within
tolerance."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from datetime import date, datetime, timezone

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import need

pytestmark = pytest.mark.slow

SMALL = {"n_items": 300, "n_users": 200, "n_days": 4, "sessions_per_day": 150}
KEY = "scale-test-key-0123456789"
RUN_DATE = date(2026, 11, 29)  # the label of the trained versions' artifacts


def _answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def scale_run(tmp_path_factory):
    """A home in the scale profile after its refresh DAG ran on Celery (dbt on Spark, Feast on Spark and
    Redis); every server it started is stopped and its database and keys dropped afterwards."""
    import redis

    from shoploop.pipeline import orchestration
    from shoploop.pipeline.loop import Airflow
    from shoploop.settings import Settings
    from shoploop.warehouse import spark

    need(_answers("127.0.0.1", 5432), "no PostgreSQL at 127.0.0.1:5432: the scale profile keeps Airflow's metadata there")
    need(_answers("127.0.0.1", 6379), "no Redis at 127.0.0.1:6379: the scale profile's Celery broker and online store")
    need(shutil.which("java"), "no Java: the scale profile's warehouse runs on a Spark cluster (Java 17)")
    prefix = f"shoploop_test_{uuid.uuid4().hex[:10]}"
    saved = dict(os.environ)
    # only this profile's settings: an earlier test's home leaves its engines in the environment
    # (features.store exports them for Feast's subprocesses), which would count as given one by one
    for name in [name for name in os.environ if name.startswith("SHOPLOOP_")]:
        del os.environ[name]
    try:
        settings = Settings(home=tmp_path_factory.mktemp("scale"), profile="scale", stream_prefix=prefix, airflow_port=8290,
                            service_port=3290, evidently_port=8291, spark_port=7290, spark_ui_port=8292,
                            pseudonym_key=KEY, **SMALL)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert settings.airflow_workers == 2 and settings.airflow_database_url.endswith(f"/{prefix}_airflow")
    assert settings.warehouse_engine == "spark" and settings.online_store.startswith("redis://")
    try:
        since = datetime.now(timezone.utc)
        url = orchestration.start_airflow(settings)
        airflow = Airflow(settings, url)
        # the refresh starts its latest interval as soon as its DAG is parsed (unpaused); else trigger it
        runs = airflow.runs("shoploop_refresh")
        run_id = None if runs else airflow.trigger("shoploop_refresh")
        done = airflow.wait("shoploop_refresh", run_id, say=print, timeout_s=900, since=since)
        # what Airflow says about the run, read now: Airflow stops before the comparison, whose training
        # would otherwise share 2 cores (and the home) with the monitor's own retraining
        tasks = airflow.client.get(f"/dags/shoploop_refresh/dagRuns/{done['dag_run_id']}/taskInstances").json()["task_instances"]
        rows = orchestration.postgres(settings, "select state from dag_run where dag_id = 'shoploop_refresh' "
                                      f"and run_id = '{done['dag_run_id']}'")
        orchestration.stop_airflow(settings)
        yield {"settings": settings, "done": done, "tasks": tasks, "metadata_rows": rows, "prefix": prefix}
    finally:
        os.environ.clear()
        os.environ.update(saved)
        orchestration.stop_airflow(settings)
        spark.stop_spark(settings)
        orchestration.postgres(settings, f'drop database if exists "{prefix}_airflow" with (force)', database="postgres")
        client = redis.Redis.from_url(settings.redis_url)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        for key in client.scan_iter(match=b"*" + prefix.encode(), count=1000):  # Feast's keys end with the project
            client.delete(key)


def test_the_refresh_dag_runs_on_celery_workers_with_postgres_metadata(scale_run):
    settings, done, tasks, prefix = (scale_run[k] for k in ("settings", "done", "tasks", "prefix"))
    assert done["state"] == "success"
    assert (settings.marts / "item_features.parquet").exists() and (settings.feast_dir / "registry.db").exists()
    # the metadata is PostgreSQL's: the run is a row there
    assert scale_run["metadata_rows"] == [["success"]]
    # the tasks ran on the Celery workers (the broker's keys under this home's prefix), all of them
    logs = "".join((settings.run_dir / f"airflow-worker-{n}.log").read_text(errors="replace") for n in (1, 2))
    assert tasks and all(t["state"] == "success" for t in tasks)
    assert all(t["task_id"] in logs for t in tasks if t["task_id"] != "end"), logs[-3000:]
    ready = [n for n in (1, 2) if f"worker-{n}@{prefix} ready" in (settings.run_dir / f"airflow-worker-{n}.log").read_text()]
    assert ready == [1, 2]
    # the dbt build ran on the Spark cluster, Feast's materialisation through its Spark offline store
    # (each task's process an application of the home's master: transform, then features)
    master_log = (settings.run_dir / "spark-master.log").read_text(errors="replace")
    assert master_log.count(f"Registered app shoploop@{prefix}") >= 2, master_log[-3000:]
    assert yaml.safe_load((settings.feast_dir / "feature_store.yaml").read_text())["offline_store"]["type"] == "spark"


def _trained_ndcg(settings, label: str) -> float:
    """A version trained on this home (a short fine-tuning: the engines, not the model, are under test)
    and its nDCG@10 on the held-out queries."""
    from shoploop.models.finetune import FinetuneConfig
    from shoploop.models.train import train
    from shoploop.pipeline import steps

    out = steps.artifacts(settings, RUN_DATE)
    bundle, report = train(settings, out / f"training-{label}", FinetuneConfig(max_steps=2))
    bundle.save(out / "bundle")
    return steps.evaluate(settings, RUN_DATE)["model"]


def test_the_scale_profile_gives_the_embedded_profiles_marts_training_set_and_model(scale_run, tmp_path):
    from shoploop import features
    from shoploop.pipeline import steps
    from shoploop.settings import Settings
    from shoploop.warehouse import mart_fingerprints

    scale = scale_run["settings"]
    assert scale_run["done"]["state"] == "success"
    embedded = Settings(home=tmp_path / "embedded", profile="embedded", warehouse_engine="duckdb", online_store="embedded",
                        event_stream="embedded", pseudonym_key=KEY, **SMALL)
    shutil.copytree(scale.landing, embedded.landing)
    steps.transform(embedded, RUN_DATE)
    steps.feature_store(embedded, RUN_DATE)

    # the same marts: rows and an engine-neutral checksum per mart, pseudonymised keys included
    on_spark, on_duckdb = mart_fingerprints(scale.marts), mart_fingerprints(embedded.marts)
    assert len(on_duckdb) == 9 and all(rows for rows, _ in on_duckdb.values())
    assert on_spark == on_duckdb

    # the same point-in-time training set: Feast's join on Spark and on DuckDB, row for row
    pairs = pd.read_parquet(embedded.marts / "ranker_training_pairs.parquet")
    rows = pairs[["item_id", "event_timestamp"]].drop_duplicates().reset_index(drop=True)
    rows["event_timestamp"] = pd.to_datetime(rows["event_timestamp"], utc=True)
    joined = {}
    for name, settings in (("spark", scale), ("duckdb", embedded)):
        frame = features.historical(settings, rows.copy())
        frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
        joined[name] = frame.sort_values(["item_id", "event_timestamp"]).reset_index(drop=True)
    spark_set, duckdb_set = joined["spark"], joined["duckdb"][joined["spark"].columns]
    assert len(spark_set) == len(rows) and sorted(spark_set.columns) == sorted(joined["duckdb"].columns)
    assert (spark_set[["item_id", "event_timestamp"]] == duckdb_set[["item_id", "event_timestamp"]]).all().all()
    numbers = [c for c in spark_set.columns if c not in ("item_id", "event_timestamp")]
    np.testing.assert_allclose(spark_set[numbers].to_numpy(float), duckdb_set[numbers].to_numpy(float), rtol=1e-9, atol=1e-12)

    # a model within tolerance (the same rows and seeds: the difference is the engines' floating point)
    ndcg = {name: _trained_ndcg(settings, name) for name, settings in (("spark", scale), ("duckdb", embedded))}
    print(f"nDCG@10 scale profile {ndcg['spark']:.4f}, embedded {ndcg['duckdb']:.4f}")
    assert abs(ndcg["spark"] - ndcg["duckdb"]) <= 0.01, ndcg
