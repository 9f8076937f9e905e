"""Background servers the demo leaves running: started in their own session, stopped by group.

Each server is started with ``setsid`` semantics (``start_new_session``), so it leads a process
group; stopping sends SIGTERM to the whole group (``kill -TERM -- -PGID``), which also reaches the
children `airflow standalone` and `bentoml serve` spawn, then SIGKILL after a grace period.

A group is not enough: `bentoml serve` puts its worker in a process group of its own, and a leader
killed with -9 leaves its children behind. So every server also carries a tag in its environment
(``SHOPLOOP_SERVER=<name>@<home>``), which every child inherits; stopping a server, or starting it
again, ends every process wearing its tag, whoever its parent was.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import httpx
import psutil

from shoploop.settings import PROJECT_DIR, Settings

TAG_VARIABLE = "SHOPLOOP_SERVER"


def pid_file(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.pgid"


# Servers started by this process: polling them reaps a crashed one, which would linger as a zombie
# (and still look alive to a signal probe) until its parent exits.
_started: dict[str, subprocess.Popen] = {}


def tag(settings: Settings, name: str) -> str:
    return f"{name}@{settings.home.resolve()}"


def tagged(settings: Settings, name: str) -> list[psutil.Process]:
    """Every live process started as server ``name`` of this home, children and orphans included."""
    wanted, found = tag(settings, name), []
    for process in psutil.process_iter():
        try:
            if process.environ().get(TAG_VARIABLE) == wanted and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _end(processes: list[psutil.Process], grace_s: float) -> None:
    """SIGTERM, then SIGKILL whatever is left after the grace period."""
    for process in processes:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)


def running(settings: Settings, name: str) -> int | None:
    """The process group id of a server we started, if it is still alive."""
    path = pid_file(settings, name)
    if not path.exists():
        return None
    if name in _started and _started[name].poll() is not None:
        path.unlink(missing_ok=True)
        return None
    pgid = int(path.read_text())
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        path.unlink(missing_ok=True)
        return None
    return pgid


def port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


# The variables prometheus_client reads its multiprocess folder from (two spellings), and the prefix of the
# temp folder Feast's import makes when neither is set (feast.metrics).
PROMETHEUS_DIRS = ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR")
FEAST_METRICS_PREFIX = "feast_metrics_"


def inherited_env() -> dict[str, str]:
    """This process's environment as a server it starts should inherit it: without a metrics folder
    Feast's import made. Importing feast points PROMETHEUS_MULTIPROC(ESS)_DIR at a temp folder that the
    importing process deletes when it exits, and its children (a step run as a subprocess) inherit the
    setting; a server started from any of them outlives that process (`make demo` leaves Airflow
    running), and every Airflow task that imported feast after it ended failed on the missing folder
    (the daily refresh's `features` step, three tries). A folder the user configured is kept."""
    return {key: value for key, value in os.environ.items()
            if not (key in PROMETHEUS_DIRS and Path(value).name.startswith(FEAST_METRICS_PREFIX))}


def start(settings: Settings, name: str, command: list[str], env: dict[str, str], cwd: Path,
          port: int | None = None) -> int:
    """Start server ``name`` after ending any leftover of it (a worker orphaned by a killed parent)."""
    leftovers = tagged(settings, name)
    if leftovers:
        _end(leftovers, grace_s=10.0)
    if port is not None and not port_free(settings.host, port):
        raise RuntimeError(f"{name}: port {settings.host}:{port} is taken by a program shoploop did not start "
                           f"for this home; stop it or choose another port (see settings.py)")
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    log = open(settings.run_dir / f"{name}.log", "ab")
    proc = subprocess.Popen(command, cwd=cwd, env={**inherited_env(), **env, TAG_VARIABLE: tag(settings, name)},
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    pid_file(settings, name).write_text(str(proc.pid))
    _started[name] = proc
    return proc.pid


def stop(settings: Settings, name: str, grace_s: float = 20.0) -> bool:
    """End server ``name``: its process group, then every process still wearing its tag. True if any ran."""
    pgid = running(settings, name)
    if pgid is not None:
        os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if name in _started:
                _started[name].poll()  # a leader this process started stays in its group as a zombie until reaped
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.3)
        else:
            os.killpg(pgid, signal.SIGKILL)
    pid_file(settings, name).unlink(missing_ok=True)
    if name in _started:
        _started.pop(name).poll()  # reap it
    leftovers = tagged(settings, name)
    _end(leftovers, grace_s=min(grace_s, 10.0))
    return pgid is not None or bool(leftovers)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5.0).status_code < 500
    except httpx.HTTPError:
        return False


def wait_http(url: str, timeout_s: float, name: str, log: Path, alive: Callable[[], bool] = lambda: True) -> None:
    """Wait until ``url`` answers below 500; fail with the tail of the server's log if it dies or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        try:
            if httpx.get(url, timeout=2.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
    why = "exited" if not alive() else f"did not answer at {url} within {timeout_s:.0f}s"
    raise TimeoutError(f"{name} {why}; last log lines of {log}:\n{tail}")


def bin_of(tool: str, venv: str = ".venv") -> str:
    """A tool's path inside one of the project's venvs (the running interpreter's when it is that venv)."""
    here = Path(sys.executable).parent / tool
    return str(here) if venv == ".venv" and here.exists() else str(PROJECT_DIR / venv / "bin" / tool)


def replicas(settings: Settings) -> list[tuple[str, int]]:
    """(process name, port) of each service replica: settings.service_replicas of them on consecutive
    ports from settings.service_port (a load balancer in front spreads the traffic), plus any replica a
    larger setting started earlier, so `shoploop stop` ends it too."""
    named = [("service" if n == 0 else f"service-{n + 1}", settings.service_port + n)
             for n in range(settings.service_replicas)]
    for extra in sorted(settings.run_dir.glob("service-*.pgid")) if settings.run_dir.exists() else []:
        n = int(extra.stem.split("-")[1]) - 1
        if n >= settings.service_replicas:
            named.append((extra.stem, settings.service_port + n))
    return named
