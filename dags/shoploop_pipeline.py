"""
### shoploop_pipeline

The loop, daily: land the shop's data (the simulator, or a real dataset: SHOPLOOP_SOURCE), build
the warehouse with dbt, refresh Feast, train (fine-tuned encoder + ranker), compress the query
encoder, evaluate, register (gated promotion), serve the champion, and report drift.

Each task only calls the `shoploop` CLI in the ML venv (`.venv`), so Airflow's own venv never
imports torch; every step is idempotent for the run's logical date (`{{ ds }}`).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import dag

PROJECT_DIR = Path(__file__).resolve().parents[1]
# The ML venv's CLI; override with SHOPLOOP_CLI where the venv lives elsewhere.
SHOPLOOP = os.environ.get("SHOPLOOP_CLI", str(PROJECT_DIR / ".venv" / "bin" / "shoploop"))
STEPS = ["land", "transform", "features", "train", "compress", "evaluate", "register", "deploy", "monitor"]


@dag(
    dag_id="shoploop_pipeline",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["shoploop", "loop"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    doc_md=__doc__,
)
def shoploop_pipeline():
    previous = None
    for step in STEPS:
        # deploy hot-swaps the champion into the running service (starts it when down); it takes no date.
        date_arg = "" if step == "deploy" else " --run-date {{ ds }}"
        current = BashOperator(task_id=step, bash_command=f"{SHOPLOOP} {step}{date_arg}")
        if previous is not None:
            previous >> current
        previous = current


shoploop_pipeline()
