"""DAG tests run in the Airflow venv, against a throwaway AIRFLOW_HOME (set before Airflow is imported)."""

import os
import tempfile
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="shoploop-airflow-")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(PROJECT_DIR / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__PARALLELISM"] = "4"
