"""Background servers: the batch side starts at a lower priority than the request path, children included."""

import time

import psutil

from shoploop import processes
from shoploop.settings import Settings


def test_batch_servers_and_their_children_run_at_the_batch_niceness_and_the_service_does_not(tmp_path):
    # given a home / when a batch server (one that starts a child, as Airflow starts its tasks) and a
    # request-path server start / then the batch one and its child run at the batch niceness, the other
    # at the niceness it was started from; stopping ends both
    settings = Settings(home=tmp_path, batch_niceness=7)
    base = psutil.Process().nice()
    command = ["sh", "-c", "sleep 60 & wait"]
    processes.start(settings, "batch-test", command, env={}, cwd=tmp_path, batch=True)
    processes.start(settings, "serving-test", command, env={}, cwd=tmp_path)
    try:
        for name, wanted in (("batch-test", min(base + 7, 19)), ("serving-test", base)):
            leader = psutil.Process(processes.running(settings, name))
            deadline = time.monotonic() + 10
            while len(family := [leader, *leader.children(recursive=True)]) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(family) == 2, f"{name}: the child did not start"
            assert {p.nice() for p in family} == {wanted}, name
    finally:
        assert processes.stop(settings, "batch-test", grace_s=5) and processes.stop(settings, "serving-test", grace_s=5)
    assert processes.tagged(settings, "batch-test") == [] and processes.tagged(settings, "serving-test") == []
