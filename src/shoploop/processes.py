"""Background servers the demo leaves running: started in their own session, stopped by group.

Each server is started with ``setsid`` semantics (``start_new_session``), so it leads a process
group; stopping sends SIGTERM to the whole group (``kill -TERM -- -PGID``), which also reaches the
children `airflow standalone` and `bentoml serve` spawn, then SIGKILL after a grace period.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

import httpx

from shoploop.settings import Settings


def pid_file(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.pgid"


# Servers started by this process: polling them reaps a crashed one, which would linger as a zombie
# (and still look alive to a signal probe) until its parent exits.
_started: dict[str, subprocess.Popen] = {}


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


def start(settings: Settings, name: str, command: list[str], env: dict[str, str], cwd: Path) -> int:
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    log = open(settings.run_dir / f"{name}.log", "ab")
    proc = subprocess.Popen(command, cwd=cwd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    pid_file(settings, name).write_text(str(proc.pid))
    _started[name] = proc
    return proc.pid


def stop(settings: Settings, name: str, grace_s: float = 20.0) -> bool:
    pgid = running(settings, name)
    if pgid is None:
        return False
    os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.3)
    else:
        os.killpg(pgid, signal.SIGKILL)
    pid_file(settings, name).unlink(missing_ok=True)
    return True


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
