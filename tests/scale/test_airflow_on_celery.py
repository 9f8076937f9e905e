"""The scale profile's Airflow: every component a process of its own (api-server, scheduler,
dag-processor, triggerer, 2 Celery workers), metadata on PostgreSQL, broker on Redis, one JWT secret;
the daily refresh DAG runs end to end on it, its tasks executed by the Celery workers."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timezone

import pytest

from conftest import need

pytestmark = pytest.mark.slow

SMALL = {"n_items": 300, "n_users": 200, "n_days": 4, "sessions_per_day": 150}


def _answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def test_the_refresh_dag_runs_on_celery_workers_with_postgres_metadata(tmp_path):
    import redis

    from shoploop import orchestration
    from shoploop.loop import Airflow
    from shoploop.settings import Settings

    need(_answers("127.0.0.1", 5432), "no PostgreSQL at 127.0.0.1:5432: the scale profile keeps Airflow's metadata there")
    need(_answers("127.0.0.1", 6379), "no Redis at 127.0.0.1:6379: the scale profile's Celery broker")
    prefix = f"shoploop_test_{uuid.uuid4().hex[:10]}"
    settings = Settings(home=tmp_path / "home", profile="scale", stream_prefix=prefix, airflow_port=8290,
                        service_port=3290, evidently_port=8291, pseudonym_key="celery-test-key-0123456789", **SMALL)
    assert settings.airflow_workers == 2 and settings.airflow_database_url.endswith(f"/{prefix}_airflow")
    saved = dict(os.environ)
    try:
        since = datetime.now(timezone.utc)
        url = orchestration.start_airflow(settings)
        airflow = Airflow(settings, url)
        # the refresh starts its latest interval as soon as its DAG is parsed (unpaused); else trigger it
        runs = airflow.runs("shoploop_refresh")
        run_id = None if runs else airflow.trigger("shoploop_refresh")
        done = airflow.wait("shoploop_refresh", run_id, say=print, timeout_s=900, since=since)
        assert done["state"] == "success"
        assert (settings.marts / "item_features.parquet").exists() and (settings.feast_dir / "registry.db").exists()

        # the metadata is PostgreSQL's: the run is a row there
        rows = orchestration.postgres(settings, "select state from dag_run where dag_id = 'shoploop_refresh' "
                                      f"and run_id = '{done['dag_run_id']}'")
        assert rows == [["success"]]
        # the tasks ran on the Celery workers (the broker's keys under this home's prefix), all of them
        tasks = airflow.client.get(f"/dags/shoploop_refresh/dagRuns/{done['dag_run_id']}/taskInstances").json()["task_instances"]
        logs = "".join((settings.run_dir / f"airflow-worker-{n}.log").read_text(errors="replace") for n in (1, 2))
        assert tasks and all(t["state"] == "success" for t in tasks)
        assert all(t["task_id"] in logs for t in tasks if t["task_id"] != "end"), logs[-3000:]
        ready = [n for n in (1, 2) if f"worker-{n}@{prefix} ready" in (settings.run_dir / f"airflow-worker-{n}.log").read_text()]
        assert ready == [1, 2]
    finally:
        os.environ.clear()
        os.environ.update(saved)
        orchestration.stop_airflow(settings)
        orchestration.postgres(settings, f'drop database if exists "{prefix}_airflow" with (force)', database="postgres")
        client = redis.Redis.from_url(settings.redis_url)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
