"""Background servers: what they inherit from the process that starts them."""

import subprocess
import sys
import textwrap
import time


def test_a_server_outlives_the_metrics_folder_feasts_import_made(tmp_path):
    # given a process that imported feast (its import points PROMETHEUS_MULTIPROC_DIR at a temp folder it
    # deletes at exit) and servers started by it and by a step it ran as a subprocess (which inherits the
    # setting), as `make demo` leaves Airflow running
    start = textwrap.dedent(f"""
        import sys
        from shoploop.pipeline import processes
        from shoploop.settings import Settings
        probe = "import os, time; time.sleep(3); d = os.environ.get('PROMETHEUS_MULTIPROC_DIR'); " \\
                "print('folder', d, 'missing' if d and not os.path.isdir(d) else 'ok', flush=True)"
        processes.start(Settings(home={str(tmp_path)!r}), sys.argv[1], [sys.executable, "-c", probe], env={{}},
                        cwd={str(tmp_path)!r})
    """)
    parent = textwrap.dedent(f"""
        import os, subprocess, sys
        import feast.metrics
        assert os.path.isdir(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        subprocess.run([sys.executable, "-c", {start!r}, "by-a-step"], check=True)
        sys.argv[1:] = ["by-the-parent"]
        exec({start!r})
    """)
    subprocess.run([sys.executable, "-c", parent], check=True, timeout=120)
    # when the servers look for the folder after that process is gone
    logs = [tmp_path / "run" / f"{name}.log" for name in ("by-a-step", "by-the-parent")]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all("folder" in (log.read_text() if log.exists() else "") for log in logs):
        time.sleep(0.2)
    # then neither was handed that folder (what one has, if anything, exists)
    for log in logs:
        assert "folder" in log.read_text() and log.read_text().strip().endswith("ok"), log.read_text()
