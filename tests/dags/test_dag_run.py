"""The loop's three DAGs end to end through `airflow dags test` on a small simulated shop: the data
refresh, the monitor deciding to retrain (nothing serves yet) and emitting the retrain asset, the
retraining it triggers, and the monitor again with a champion serving."""

import json
import os
import subprocess

import pytest

from conftest import PROJECT_DIR

AIRFLOW = str(PROJECT_DIR / ".venv-airflow" / "bin" / "airflow")
SHOPLOOP = str(PROJECT_DIR / ".venv" / "bin" / "shoploop")
SMALL_SHOP = {"SHOPLOOP_N_ITEMS": "300", "SHOPLOOP_N_USERS": "200", "SHOPLOOP_N_DAYS": "4",
              "SHOPLOOP_SESSIONS_PER_DAY": "150", "SHOPLOOP_SERVICE_PORT": "3094",
              "SHOPLOOP_PSEUDONYM_KEY": "dag-test-key-0123456789",
              # the DAGs' chain is under test, not the model: a short fine-tuning and distillation
              "SHOPLOOP_FINETUNE_MAX_STEPS": "6", "SHOPLOOP_DISTIL_MAX_TEXTS": "256"}
RUN_DATE = "2026-11-29"


def _dags_test(dag_id: str, env: dict) -> str:
    run = subprocess.run([AIRFLOW, "dags", "test", dag_id, RUN_DATE], env=env, capture_output=True, text=True,
                         timeout=900)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    assert "state=success" in log and "failed" not in log.split("DagRun Finished")[-1].split("\n")[0], log[-3000:]
    return log


def _retrain_events() -> list[dict]:
    """Events of the retrain asset in Airflow's metadata database (the one the `airflow` CLI used)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (session.query(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .filter(AssetModel.uri == "shoploop://model/retrain").all())
        return [dict(row.extra or {}) for row in rows]


@pytest.mark.slow
def test_the_dags_close_the_loop_through_the_retrain_asset(tmp_path):
    env = {**os.environ, **SMALL_SHOP, "SHOPLOOP_HOME": str(tmp_path / "home")}
    home = tmp_path / "home"
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True)
    try:
        _dags_test("shoploop_refresh", env)
        assert (home / "marts" / "item_features.parquet").exists()
        # nothing serves yet: the monitor decides to retrain, and the request goes out as an asset event
        _dags_test("shoploop_monitor", env)
        decided = json.loads((home / "reports" / RUN_DATE / "monitor.json").read_text())
        assert decided["decision"] == "retrain" and decided["reasons"] == ["no model serves yet"]
        events = _retrain_events()
        assert len(events) == 1 and events[0]["reasons"] == ["no model serves yet"]
        # the retraining that asset schedules: a champion serves afterwards
        _dags_test("shoploop_retrain", env)
        champion = json.loads((home / "registry" / "champion.json").read_text())
        assert champion["tag"].startswith("shoploop-ranker:")
        # with a champion, the monitor measures drift and decides; a promotion this recent holds back a retrain
        log = _dags_test("shoploop_monitor", env)
        decided = json.loads((home / "reports" / RUN_DATE / "monitor.json").read_text())
        assert decided["decision"] in ("none", "retrain") and decided["model_version"] == champion["tag"]
        drift = json.loads((home / "reports" / RUN_DATE / "drift.json").read_text())
        assert drift["reference_rows"] > 0 and drift["current_rows"] > 0 and "model_score" in drift["columns"]
        assert len(_retrain_events()) == 1, log[-3000:]
    finally:
        subprocess.run([SHOPLOOP, "stop"], env=env, capture_output=True)
