"""Background servers: what they inherit from the process that starts them."""

import os
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


def test_opening_feast_or_bentoml_exports_only_what_they_read_not_a_settings_copys_choices(tmp_path):
    # given a process that opens Feast's store and BentoML's model store for a settings copy with a non-default
    # choice (a test's or a bench's copy: no interleaving), as the registry and the feature steps do
    probe = textwrap.dedent(f"""
        import os
        from shoploop import features
        from shoploop.models import registry
        from shoploop.settings import Settings
        settings = Settings(home={str(tmp_path)!r}).model_copy(update={{"interleave_share": 0.0, "n_items": 77}})
        features.store(settings)
        registry._bentoml(settings)
        print(sorted(k for k in os.environ if k.startswith(("SHOPLOOP_", "BENTOML_HOME"))))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPLOOP_")}
    # when it has done so
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=120,
                         env=env).stdout.strip().splitlines()[-1]
    # then its environment (what every server or subprocess it starts later inherits) holds the home and
    # BentoML's home, and none of that copy's choices (nor the default engine, which a later scale profile fills in)
    assert out == str(["BENTOML_HOME", "SHOPLOOP_HOME"]), out
