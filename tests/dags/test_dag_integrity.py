import sys

import pytest
from airflow.dag_processing.dagbag import DagBag

from conftest import PROJECT_DIR

REFRESH = ["land", "transform", "features", "reindex"]
RETRAIN = ["train", "compress", "evaluate", "register", "deploy"]
DAGS = ["shoploop_refresh", "shoploop_monitor", "shoploop_retrain"]


@pytest.fixture(scope="module")
def dagbag():
    return DagBag(dag_folder=str(PROJECT_DIR / "dags"))


def test_dags_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(DAGS) <= set(dagbag.dags)


@pytest.mark.parametrize("dag_id, steps", [("shoploop_refresh", REFRESH), ("shoploop_retrain", RETRAIN),
                                           ("shoploop_monitor", ["monitor", "request_retraining"])])
def test_each_dag_runs_its_steps_in_order(dagbag, dag_id, steps):
    dag = dagbag.dags[dag_id]
    assert [t.task_id for t in dag.topological_sort()] == steps
    for upstream, downstream in zip(steps, steps[1:]):
        assert dag.get_task(downstream).upstream_task_ids == {upstream}


def test_retraining_runs_on_the_monitors_asset_or_weekly_and_never_twice_at_once(dagbag):
    retrain, monitor = dagbag.dags["shoploop_retrain"], dagbag.dags["shoploop_monitor"]
    assert retrain.max_active_runs == 1
    assert retrain.timetable.asset_condition.uri == "shoploop://model/retrain"
    assert retrain.timetable.timetable._expression == "0 3 * * 0"  # the slow fallback: weekly
    outlets = monitor.get_task("request_retraining").outlets
    assert [o.name for o in outlets] == ["shoploop-retrain-requests"]  # the alias the asset event goes through


def test_the_loop_turns_without_a_person(dagbag):
    for dag_id in DAGS:
        dag = dagbag.dags[dag_id]
        assert dag.is_paused_upon_creation is False and not dag.catchup and "shoploop" in dag.tags


def test_shoploop_tasks_only_call_the_cli_and_retry(dagbag):
    for dag_id in DAGS:
        for task in dagbag.dags[dag_id].tasks:
            assert task.retries == 2
            if task.task_id != "request_retraining":  # reads the monitor's JSON in Airflow's venv
                assert task.bash_command.split()[0].endswith("/.venv/bin/shoploop")


def test_the_airflow_venv_has_no_torch():
    # the DAG file must not drag the ML stack into Airflow's processes
    assert "torch" not in sys.modules
    with pytest.raises(ImportError):
        __import__("torch")


class _Outlets:
    """What the task emits through its asset alias (Airflow's outlet_events, recorded)."""

    def __init__(self):
        self.added = []

    def __getitem__(self, alias):
        return self

    def add(self, asset, extra=None):
        self.added.append((asset.uri, extra))


class _Runs:
    """Airflow's task instance as request_retraining asks it: how many shoploop_retrain runs are queued or running."""

    def __init__(self, retraining: int):
        self.retraining = retraining

    def get_dr_count(self, dag_id, logical_dates=None, run_ids=None, states=None):
        assert dag_id == "shoploop_retrain" and set(states) == {"queued", "running"}
        return self.retraining


def test_a_retrain_request_goes_out_on_a_retrain_decision_unless_this_date_was_trained_on_or_a_retraining_is_in_flight(tmp_path, monkeypatch):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("shoploop_dags", PROJECT_DIR / "dags" / "shoploop.py")
    loop = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loop)
    monkeypatch.setenv("SHOPLOOP_HOME", str(tmp_path))
    report = tmp_path / "reports" / "2026-11-29" / "monitor.json"
    report.parent.mkdir(parents=True)

    def request(decision: str, run_date: str = "2026-11-29", retraining: int = 0) -> tuple[str, list]:
        path = tmp_path / "reports" / run_date / "monitor.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"decision": decision, "reasons": ["data drift: 5 columns drifted"]}))
        outlets = _Outlets()
        return loop.request_retraining.function(run_date, outlet_events=outlets, ti=_Runs(retraining)), outlets.added

    said, added = request("retrain")
    assert added == [("shoploop://model/retrain", {"run_date": "2026-11-29", "reasons": ["data drift: 5 columns drifted"]})]
    # a retraining queued or running already trains on this data: no second request queues behind it
    said, added = request("retrain", retraining=1)
    assert added == [] and "already queued or running" in said
    assert request("none")[1] == [] and request("rollback")[1] == []
    # a version trained on this run date's data (promoted, challenging or refused): the drift is already learnt
    trained = tmp_path / "artifacts" / "2026-11-29" / "register.json"
    trained.parent.mkdir(parents=True)
    trained.write_text(json.dumps({"tag": "shoploop-ranker:v2", "promoted": False, "reason": "now the challenger"}))
    said, added = request("retrain")
    assert added == [] and "held back" in said and "shoploop-ranker:v2" in said
    # the next day's data is new: drift that persists asks again
    assert len(request("retrain", "2026-11-30")[1]) == 1
