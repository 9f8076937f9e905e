"""Spark for the scale profile's warehouse: a standalone cluster, and the session dbt-spark builds on.

The cluster is Spark's own: a master and a worker started from the pyspark wheel with ``spark-class``
(``org.apache.spark.deploy.master.Master`` / ``...worker.Worker``), each a server of this home (see
``shoploop.pipeline.processes``), on loopback. A shop with a cluster of its own sets ``spark_master`` and
nothing is started.

dbt-spark's ``session`` method builds in the Python process that runs dbt: it takes the active
SparkSession, so ``session()`` creates it first, connected to the cluster, with the staging rules'
Python functions (pseudonymise, scrub, clean_text) registered as SQL functions. They run on the
executors, shipped inside the function (the pseudonymisation key included), never as SQL text: the key
appears in no compiled model and no log. The landing zone is read in place: one view per landed table
over its partitioned parquet, with each row's file as ``filename`` (what DuckDB's reader adds).
"""

from __future__ import annotations

import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

import httpx

from shoploop.pipeline import processes
from shoploop.settings import Settings

SERVERS = ("spark-master", "spark-worker")
LANDED = ("items", "users", "reviews", "events", "judgments", "quarantine")


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def master_url(settings: Settings) -> str:
    return settings.spark_master or f"spark://{settings.host}:{settings.spark_port}"


def _env(settings: Settings) -> dict[str, str]:
    return {"SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": settings.host, "SPARK_NO_DAEMONIZE": "1",
            "SPARK_LOG_DIR": str(settings.run_dir), "SPARK_WORKER_DIR": str(settings.home / "spark" / "work"),
            # the executors' Python: this venv's, where shoploop (the UDFs) is installed
            "PYSPARK_PYTHON": sys.executable}


def _alive_workers(settings: Settings) -> int:
    try:
        state = httpx.get(f"http://{settings.host}:{settings.spark_ui_port}/json/", timeout=2.0).json()
    except (httpx.HTTPError, ValueError):
        return 0
    return sum(1 for worker in state.get("workers", []) if worker.get("state") == "ALIVE")


def start_spark(settings: Settings, timeout_s: float = 120.0) -> str:
    """Start this home's master and worker unless they run (or a cluster is configured); return the
    master's URL once a worker has registered with it."""
    import time

    if settings.spark_master:
        return settings.spark_master
    if all(processes.running(settings, name) for name in SERVERS) and _alive_workers(settings):
        return master_url(settings)
    for name in SERVERS:
        processes.stop(settings, name)
    spark_class, env, url = str(spark_home() / "bin" / "spark-class"), _env(settings), master_url(settings)
    (settings.home / "spark" / "work").mkdir(parents=True, exist_ok=True)
    processes.start(settings, "spark-master",
                    [spark_class, "org.apache.spark.deploy.master.Master", "--host", settings.host,
                     "--port", str(settings.spark_port), "--webui-port", str(settings.spark_ui_port)],
                    env=env, cwd=settings.home, port=settings.spark_port)
    processes.start(settings, "spark-worker",
                    [spark_class, "org.apache.spark.deploy.worker.Worker", url, "--host", settings.host,
                     "--cores", str(settings.spark_worker_cores), "--memory", settings.spark_worker_memory,
                     "--webui-port", "0"],
                    env=env, cwd=settings.home)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not all(processes.running(settings, name) for name in SERVERS):
            break
        if _alive_workers(settings):
            return url
        time.sleep(1.0)
    logs = "\n".join(f"{name}: ...{(settings.run_dir / f'{name}.log').read_text(errors='replace')[-1500:]}"
                     for name in SERVERS if (settings.run_dir / f"{name}.log").exists())
    raise RuntimeError(f"the Spark cluster did not come up within {timeout_s:.0f} s (a worker registered "
                       f"with {url}); last log lines:\n{logs}")


def stop_spark(settings: Settings) -> list[str]:
    """Stop this home's worker, then its master."""
    if "pyspark" in sys.modules:
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        if active is not None:
            active.stop()
    return [name for name in reversed(SERVERS) if processes.stop(settings, name)]


def spark_conf(settings: Settings, master: str | None = None) -> dict[str, str]:
    """The session's configuration, for dbt's session here and Feast's Spark offline store alike: on the
    cluster, UTC, timestamps without time zone (as DuckDB's), parquet with microsecond timestamps."""
    warehouse = settings.home / "spark" / "warehouse"
    return {
        "spark.master": master or master_url(settings),
        "spark.app.name": f"shoploop@{settings.stream_prefix}",
        "spark.driver.host": settings.spark_driver_host or settings.host,
        "spark.driver.bindAddress": "0.0.0.0" if settings.spark_driver_host else settings.host,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.catalogImplementation": "in-memory",
        "spark.sql.warehouse.dir": str(warehouse),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.timestampType": "TIMESTAMP_NTZ",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        # Several applications share the cluster (a dbt build, Feast's `feast apply` and materialisation,
        # a training set's join, each in its own process): executors of one core, handed back after
        # 10 s idle, so a process that holds a session never starves the next one.
        "spark.cores.max": str(settings.spark_worker_cores),
        "spark.executor.cores": "1",
        "spark.executor.memory": "1g",
        "spark.dynamicAllocation.enabled": "true",
        "spark.dynamicAllocation.shuffleTracking.enabled": "true",
        "spark.dynamicAllocation.executorIdleTimeout": "10s",
        "spark.dynamicAllocation.shuffleTracking.timeout": "30s",
    }


def session(settings: Settings):
    """This process's SparkSession on the home's cluster (started if it is not running), the one dbt-spark
    and Feast's Spark offline store both take as the active session."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    conf = spark_conf(settings, start_spark(settings))
    # The executors run the Python the driver names in its environment (pyspark reads PYSPARK_PYTHON,
    # not the conf, for a UDF): this venv's, where shoploop is installed.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["SPARK_LOCAL_IP"] = settings.host
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    with _jvm_output_to(settings.run_dir / "spark-driver.log") as log_config:
        return builder.config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{log_config}").getOrCreate()


def dbt_session(settings: Settings):
    """The session dbt-spark builds with (the caller holds the warehouse's build lock): the staging rules'
    UDFs registered, the landing zone as views. The catalog lives in the session (no Hive metastore), so
    every build makes its tables anew: a previous process's table files must not stand in the way."""
    from pyspark.sql import SparkSession

    if SparkSession.getActiveSession() is None:
        shutil.rmtree(settings.home / "spark" / "warehouse", ignore_errors=True)
    spark = session(settings)
    spark.conf.set("spark.sql.parquet.mergeSchema", "true")  # a landed table's files: the union of their columns
    _register_rules(spark, settings.user_key)
    _landing_views(spark, settings)
    return spark


@contextmanager
def _jvm_output_to(log: Path):
    """The driver's JVM logs to ``log`` (warnings and up, via a log4j2 configuration written beside it),
    and what the JVM itself prints (its module warnings) goes there too: the JVM inherits the file as its
    standard error while it starts. The console keeps dbt's progress and the step's lines."""
    log.parent.mkdir(parents=True, exist_ok=True)
    config = log.with_suffix(".log4j2.properties")
    config.write_text("\n".join([
        "rootLogger.level = warn", "rootLogger.appenderRef.file.ref = file",
        "appender.file.type = File", "appender.file.name = file", f"appender.file.fileName = {log}",
        "appender.file.layout.type = PatternLayout", "appender.file.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n", ""]))
    sys.stderr.flush()
    saved = os.dup(2)
    with open(log, "ab") as handle:
        os.dup2(handle.fileno(), 2)
    try:
        yield config
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _register_rules(spark, key: str) -> None:
    from pyspark.sql.types import StringType

    from shoploop.data.text import clean_text
    from shoploop.warehouse.privacy import pseudonymise, scrub

    udfs = {"pseudonymise": lambda user_id: pseudonymise(user_id, key), "scrub": scrub, "clean_text": clean_text}
    for name, function in udfs.items():
        spark.udf.register(name, function, StringType())


def _landing_views(spark, settings: Settings) -> None:
    """``landing.<table>`` for each landed table: its dt=... partitions, the union of the files' columns."""
    spark.sql("create database if not exists landing")
    for table in LANDED:
        path = settings.landing / table
        if not any(path.glob("dt=*/*.parquet")):
            continue
        spark.sql(f"create or replace view landing.{table} as "
                  f"select *, regexp_replace(_metadata.file_path, '^file:(//)?', '') as filename "
                  f"from parquet.`{path}`")
