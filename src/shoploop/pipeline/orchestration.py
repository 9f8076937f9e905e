"""Airflow for a home, as the profile wants it.

Embedded: `airflow standalone`, metadata in SQLite in the home. With Celery workers (``airflow_workers``,
2 in the scale profile): every component a process of its own — api-server, scheduler, dag-processor,
triggerer and N Celery workers — with the CeleryExecutor, the metadata on PostgreSQL
(``airflow_database_url``; the database is created when missing) and the broker on ``redis_url``'s Redis,
its keys under ``stream_prefix`` so shops sharing a Redis never share a queue. All processes sign and
check the Execution API's tokens with one JWT secret, kept in the home. The DAGs are the same in both.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from shoploop.pipeline import processes
from shoploop.settings import Settings

COMPONENTS = ["api-server", "scheduler", "dag-processor", "triggerer"]
MAX_WORKERS = 16  # `shoploop stop` looks for this many worker servers whatever the settings say now


def server_names(settings: Settings, workers: int | None = None) -> list[str]:
    """The servers Airflow runs as for this home ("airflow": standalone)."""
    workers = settings.airflow_workers if workers is None else workers
    if not workers:
        return ["airflow"]
    return [f"airflow-{component}" for component in COMPONENTS] + [f"airflow-worker-{n}" for n in range(1, workers + 1)]


def every_server_name(settings: Settings) -> list[str]:
    return ["airflow"] + server_names(settings, MAX_WORKERS)


def airflow_env(settings: Settings) -> dict[str, str]:
    home = settings.airflow_home
    airflow_bin = Path(processes.bin_of("airflow", ".venv-airflow")).parent
    env = {
        **settings.tool_env(),
        # `airflow standalone` starts its components as `airflow ...` found on PATH.
        "PATH": f"{airflow_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.project_dir / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__API__HOST": settings.host,
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        # Task runners report to the API server: on its port, not the default 8080.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{settings.host}:{settings.airflow_port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
    }
    if settings.airflow_workers:
        env.update({
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": settings.airflow_database_url,
            "AIRFLOW__CELERY__BROKER_URL": settings.redis_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + settings.airflow_database_url,
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": f"{settings.stream_prefix}:celery:",
            # one task at a time per worker: a training takes the machine's cores
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": settings.airflow_jwt_secret,
            "AIRFLOW__API__SECRET_KEY": settings.airflow_jwt_secret,
            # the triggerer's log server beside the API's port, so two homes' Airflows never collide
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(settings.airflow_port + 1),
        })
    return env


def postgres(settings: Settings, query: str, database: str | None = None) -> list:
    """One query on Airflow's PostgreSQL (its own database, or ``database``) through psycopg2 in the Airflow
    venv (the ML venv has no PostgreSQL driver); the rows it returns."""
    url = urlsplit(settings.airflow_database_url.replace("+psycopg2", ""))
    dsn = url._replace(path=f"/{database or url.path.strip('/')}").geturl()
    code = ("import json, sys, psycopg2\n"
            "c = psycopg2.connect(sys.argv[1]); c.autocommit = True; cur = c.cursor(); cur.execute(sys.argv[2])\n"
            "print(json.dumps(cur.fetchall() if cur.description else [], default=str))\n")
    python = str(Path(processes.bin_of("airflow", ".venv-airflow")).with_name("python"))
    run = subprocess.run([python, "-c", code, dsn, query], capture_output=True, text=True, timeout=60)
    if run.returncode != 0:
        raise RuntimeError(f"PostgreSQL at {url.hostname}:{url.port}: "
                           f"{run.stderr.strip().splitlines()[-1] if run.stderr.strip() else 'failed'}")
    return json.loads(run.stdout)


def ensure_database(settings: Settings) -> bool:
    """Create Airflow's PostgreSQL database when missing; True if made."""
    name = urlsplit(settings.airflow_database_url).path.strip("/").replace('"', "")
    if postgres(settings, f"select 1 from pg_database where datname = '{name}'", database="postgres"):
        return False
    postgres(settings, f'create database "{name}"', database="postgres")
    return True


def start_airflow(settings: Settings, say=None) -> str:
    """Start this home's Airflow unless it runs; return its URL once its API answers."""
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    airflow, env = processes.bin_of("airflow", ".venv-airflow"), airflow_env(settings)
    names = server_names(settings)
    if not settings.airflow_workers:
        if not processes.running(settings, "airflow"):
            processes.start(settings, "airflow", [airflow, "standalone"], env=env, cwd=settings.airflow_home,
                            port=settings.airflow_port)
    elif not all(processes.running(settings, name) for name in names):
        for name in names:
            processes.stop(settings, name)
        made = ensure_database(settings)
        migrate = subprocess.run([airflow, "db", "migrate"], env={**os.environ, **env}, cwd=settings.airflow_home,
                                 capture_output=True, text=True, timeout=900)
        if migrate.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{(migrate.stdout + migrate.stderr)[-3000:]}")
        if say:
            say(f"             Airflow metadata on {urlsplit(settings.airflow_database_url).hostname} "
                f"({'created and ' if made else ''}migrated); starting {len(names)} processes")
        for component in COMPONENTS:
            processes.start(settings, f"airflow-{component}", [airflow, component], env=env, cwd=settings.airflow_home,
                            port=settings.airflow_port if component == "api-server" else None)
        for n in range(1, settings.airflow_workers + 1):
            # the task logs are files in this home, which the API server reads: no log server per worker
            processes.start(settings, f"airflow-worker-{n}",
                            [airflow, "celery", "worker", "--celery-hostname", f"worker-{n}@{settings.stream_prefix}",
                             "--skip-serve-logs"], env=env, cwd=settings.airflow_home)
    url = f"http://{settings.host}:{settings.airflow_port}"
    processes.wait_http(f"{url}/api/v2/monitor/health", 300, "airflow", settings.run_dir / f"{names[0]}.log",
                        alive=lambda: all(processes.running(settings, name) is not None for name in names))
    return url


def stop_airflow(settings: Settings) -> list[str]:
    """Stop every Airflow server of this home, whichever way it was started: the workers first (a task
    cut short still reaches the API server to say so), the API server last."""
    return [name for name in reversed(every_server_name(settings)) if processes.stop(settings, name)]


def airflow_password(settings: Settings) -> str:
    path = settings.airflow_home / "passwords.json"
    return json.loads(path.read_text()).get("admin", "?") if path.exists() else f"(see {path})"
