"""The pipeline end to end through `airflow dags test` on a small simulated shop."""

import json
import os
import subprocess

import pytest

from conftest import PROJECT_DIR

AIRFLOW = str(PROJECT_DIR / ".venv-airflow" / "bin" / "airflow")
SHOPLOOP = str(PROJECT_DIR / ".venv" / "bin" / "shoploop")
SMALL_SHOP = {"SHOPLOOP_N_ITEMS": "300", "SHOPLOOP_N_USERS": "200", "SHOPLOOP_N_DAYS": "4",
              "SHOPLOOP_SESSIONS_PER_DAY": "150", "SHOPLOOP_SERVICE_PORT": "3092",
              "SHOPLOOP_PSEUDONYM_KEY": "dag-test-key-0123456789"}


@pytest.mark.slow
def test_airflow_dags_test_runs_the_whole_loop(tmp_path):
    env = {**os.environ, **SMALL_SHOP, "SHOPLOOP_HOME": str(tmp_path / "home")}
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True)
    try:
        run = subprocess.run([AIRFLOW, "dags", "test", "shoploop_pipeline", "2026-11-29"], env=env,
                             capture_output=True, text=True, timeout=900)
        log = run.stdout + run.stderr
        assert run.returncode == 0, log[-5000:]
        assert "state=success" in log and "failed" not in log.split("DagRun Finished")[-1].split("\n")[0]
    finally:
        subprocess.run([SHOPLOOP, "stop"], env=env, capture_output=True)
    home = tmp_path / "home"
    champion = json.loads((home / "registry" / "champion.json").read_text())
    assert champion["tag"].startswith("shoploop-ranker:")
    drift = json.loads((home / "reports" / "2026-11-29" / "drift.json").read_text())
    assert drift["reference_rows"] > 0 and drift["current_rows"] > 0 and "model_score" in drift["columns"]
