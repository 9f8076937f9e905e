import sys

import pytest
from airflow.dag_processing.dagbag import DagBag

from conftest import PROJECT_DIR

EXPECTED = ["land", "transform", "features", "train", "compress", "evaluate", "register", "deploy", "monitor"]


@pytest.fixture(scope="module")
def dagbag():
    return DagBag(dag_folder=str(PROJECT_DIR / "dags"))


def test_dags_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "shoploop_pipeline" in dagbag.dags


def test_pipeline_runs_the_steps_in_order(dagbag):
    dag = dagbag.dags["shoploop_pipeline"]
    assert [t.task_id for t in dag.topological_sort()] == EXPECTED
    for upstream, downstream in zip(EXPECTED, EXPECTED[1:]):
        assert dag.get_task(downstream).upstream_task_ids == {upstream}


def test_tasks_only_call_the_shoploop_cli_and_retry(dagbag):
    dag = dagbag.dags["shoploop_pipeline"]
    assert not dag.catchup and "shoploop" in dag.tags
    for task in dag.tasks:
        assert task.bash_command.split()[0].endswith("/.venv/bin/shoploop")
        assert task.retries == 2


def test_the_airflow_venv_has_no_torch():
    # the DAG file must not drag the ML stack into Airflow's processes
    assert "torch" not in sys.modules
    with pytest.raises(ImportError):
        __import__("torch")
