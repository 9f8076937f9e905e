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

import httpx

from shoploop.settings import Settings


def pid_file(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.pgid"


def running(settings: Settings, name: str) -> int | None:
    """The process group id of a server we started, if it is still alive."""
    path = pid_file(settings, name)
    if not path.exists():
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


def wait_http(url: str, timeout_s: float, name: str, log: Path) -> None:
    """Wait until ``url`` answers below 500, or fail with the tail of the server's log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
    raise TimeoutError(f"{name} did not answer at {url} within {timeout_s:.0f}s; last log lines:\n{tail}")
