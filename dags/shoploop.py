"""
### The shoploop loop, in three DAGs

- **shoploop_refresh** (daily): land the shop's data (the simulator, or a real dataset:
  SHOPLOOP_SOURCE), build the warehouse with dbt, refresh Feast, then bring the serving version to
  the current catalog (`reindex`: new items searchable, prices current, hot-swapped in).
- **shoploop_monitor** (hourly): drift and online quality, ending in a decision (`none`, `retrain`,
  `rollback`; a rollback is carried out by the step itself). On `retrain` it emits an event of the
  asset `shoploop://model/retrain` through the alias `shoploop-retrain-requests`, with the reasons;
  on a home where nothing serves yet the decision is `retrain`, so the loop starts itself.
- **shoploop_retrain** (on that asset, or weekly as a fallback): train, compress, evaluate, register
  (gated promotion), deploy (hot swap). One run at a time: never two trainings at once.

Each shoploop task only calls the `shoploop` CLI in the ML venv (`.venv`), so Airflow's own venv
never imports torch; every step is idempotent for its date. The DAGs start unpaused, so the loop
turns without a person.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import Asset, AssetAlias, AssetOrTimeSchedule, dag, task
from airflow.timetables.trigger import CronTriggerTimetable

PROJECT_DIR = Path(__file__).resolve().parents[1]
# The ML venv's CLI; override with SHOPLOOP_CLI where the venv lives elsewhere.
SHOPLOOP = os.environ.get("SHOPLOOP_CLI", str(PROJECT_DIR / ".venv" / "bin" / "shoploop"))
REFRESH = ["land", "transform", "features", "reindex"]
RETRAIN = ["train", "compress", "evaluate", "register", "deploy"]
RETRAIN_ASSET = Asset(name="shoploop_retrain", uri="shoploop://model/retrain")
RETRAIN_REQUESTS = AssetAlias("shoploop-retrain-requests")
# A run's date: its logical date, or (asset-triggered runs have none) when it was due.
RUN_DATE = "{{ (dag_run.logical_date or dag_run.run_after) | ds }}"
DEFAULTS = {"retries": 2, "retry_delay": timedelta(minutes=1)}


def _steps(steps: list[str]):
    previous = None
    for step in steps:
        # deploy hot-swaps the champion into the running service (starts it when down); it takes no date.
        date_arg = "" if step == "deploy" else f" --run-date {RUN_DATE}"
        current = BashOperator(task_id=step, bash_command=f"{SHOPLOOP} {step}{date_arg}")
        if previous is not None:
            previous >> current
        previous = current
    return previous


@dag(dag_id="shoploop_refresh", schedule="@daily", start_date=datetime(2026, 1, 1), catchup=False,
     max_active_runs=1, is_paused_upon_creation=False, tags=["shoploop", "loop"], default_args=DEFAULTS,
     doc_md=__doc__)
def shoploop_refresh():
    _steps(REFRESH)


@task(outlets=[RETRAIN_REQUESTS])
def request_retraining(run_date: str, *, outlet_events=None, ti=None) -> str:
    """Emit a retrain request when the monitor decided so, unless a version was already trained on this
    run date's data: drift that persists is no reason to train again on the same data (the hourly monitor
    sees one refresh a day), and that version may be before shoppers as the challenger right now. Nor
    while a shoploop_retrain run is queued or running: it trains on the latest data already, and a second
    request would queue a second training of the same data behind it (on the default-scale loop of
    2026-12-07 the hourly monitor asked again mid-training, and that duplicate then trained beside the
    interleaving shoppers). Once that run has registered, this run date counts as trained; if it fails,
    the next monitor run asks again. ``ti``: Airflow's task instance (its run counts)."""
    home = Path(os.environ.get("SHOPLOOP_HOME", str(PROJECT_DIR / ".shoploop")))  # the home the steps ran on
    decided = json.loads((home / "reports" / run_date / "monitor.json").read_text())
    if decided["decision"] != "retrain":
        return f"no retraining: the monitor decided {decided['decision']}"
    trained = home / "artifacts" / run_date / "register.json"
    if trained.exists():
        done = json.loads(trained.read_text())
        return f"retraining held back: {done['tag']} was trained on this run date's data ({done['reason']})"
    if ti is not None and ti.get_dr_count(dag_id="shoploop_retrain", states=["queued", "running"]):
        return "retraining held back: a shoploop_retrain run is already queued or running"
    outlet_events[RETRAIN_REQUESTS].add(RETRAIN_ASSET, extra={"run_date": run_date, "reasons": decided["reasons"]})
    return "retraining requested: " + "; ".join(decided["reasons"])


@dag(dag_id="shoploop_monitor", schedule="@hourly", start_date=datetime(2026, 1, 1), catchup=False,
     max_active_runs=1, is_paused_upon_creation=False, tags=["shoploop", "loop"], default_args=DEFAULTS,
     doc_md=__doc__)
def shoploop_monitor():
    _steps(["monitor"]) >> request_retraining(RUN_DATE)


# No start date: the weekly fallback then waits for its next slot (run_immediately=False) instead of
# training the moment Airflow first sees the DAG; the monitor's decision starts a new shop's training.
@dag(dag_id="shoploop_retrain",
     schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 3 * * 0", timezone="UTC", run_immediately=False),
                                  assets=RETRAIN_ASSET),
     catchup=False, max_active_runs=1, is_paused_upon_creation=False,
     tags=["shoploop", "loop"], default_args=DEFAULTS, doc_md=__doc__)
def shoploop_retrain():
    _steps(RETRAIN)


shoploop_refresh()
shoploop_monitor()
shoploop_retrain()
