"""The steps that run beside the service, each idempotent for a run date: ``deploy`` brings the champion
to every replica of the service, ``monitor`` watches it and decides (none / retrain / rollback). The
CLI, the DAGs and the demo call these as they call ``shoploop.pipeline.steps``.
"""

from __future__ import annotations

import json
import sys
import time as _time
from datetime import date, datetime, time, timedelta

from shoploop import features
from shoploop.models import registry
from shoploop.pipeline import processes
from shoploop.settings import Settings


def deploy(settings: Settings, run_date: date | None = None) -> dict:
    """Bring the champion to every replica of the service: a hot swap where one is up (no request dropped;
    a version that fails to load leaves the old one serving), else a start that waits until it answers.
    Each replica's other workers follow the registry within seconds (services/service.py)."""
    done = [_deploy_replica(settings, name, port) for name, port in processes.replicas(settings)[:settings.service_replicas]]
    if len(done) == 1:
        return done[0]
    return {"url": done[0]["url"], "how": ", ".join(sorted({d["how"] for d in done})),
            "model_version": done[0]["model_version"], "replicas": done}


def _deploy_replica(settings: Settings, name: str, port: int) -> dict:
    url = f"http://{settings.host}:{port}"
    if processes.running(settings, name) is not None and processes.answers(f"{url}/readyz"):
        import httpx

        answer = httpx.post(f"{url}/admin/reload", json={}, timeout=600,
                            headers={"Authorization": f"Bearer {settings.admin_secret}"})
        body = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else {}
        if answer.status_code != 200:
            raise RuntimeError(f"hot swap refused by {url} ({answer.status_code}): "
                               f"{body.get('error', answer.text[:300])}")
        return {"url": url, "how": "hot swap", "model_version": body["model_version"], "previous": body["previous"]}
    processes.stop(settings, name)
    settings.admin_secret  # made before the service starts, so an operator can read it at once
    processes.start(settings, name,
                    [processes.bin_of("bentoml"), "serve", "service:Shoploop", "--host", settings.host, "--port", str(port)],
                    env={**settings.tool_env(), "SHOPLOOP_SERVICE_PORT": str(port)},
                    cwd=settings.project_dir / "services", port=port)
    processes.wait_http(f"{url}/readyz", 180, "bentoml serve", settings.run_dir / f"{name}.log",
                        alive=lambda: processes.running(settings, name) is not None)
    return {"url": url, "how": "started", "model_version": registry.load_champion_tag(settings)}


def monitor(settings: Settings, run_date: date) -> dict:
    """Drift and online quality, then the decision (none / retrain / rollback) with its reasons, saved
    as reports/<date>/monitor.json. A rollback is carried out here: the previous version becomes
    champion and, when the service runs, is hot-swapped into it. One run at a time in a home (the
    hourly DAG's and a person's): they share the reports, the Evidently workspace and the registry."""
    import fcntl

    settings.run_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.run_dir / "monitor.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("monitor: another monitor run is under way in this home; waiting for it to end", file=sys.stderr, flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        return _monitor(settings, run_date)


def _monitor(settings: Settings, run_date: date) -> dict:
    from shoploop.monitoring import decision
    from shoploop.monitoring.drift import drift_report
    from shoploop.monitoring.monitor import (
        attributed_events,
        feedback_events,
        log_online,
        online_quality,
        service_health,
        tail_items,
    )
    from shoploop.serving.predict import served_engine

    out = settings.reports / str(run_date)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    clock = [_time.monotonic()]

    def timed(part: str) -> None:  # seconds since the last part ended: where a monitor run's time goes
        now = _time.monotonic()
        timings[part] = round(now - clock[0], 2)
        clock[0] = now

    if registry.champion(settings) is None:  # a new shop: the loop's first decision is to train
        summary = {"run_date": str(run_date), "model_version": None, "decision": "retrain",
                   "reasons": ["no model serves yet"], "checked": []}
        (out / "monitor.json").write_text(json.dumps(summary, indent=2))
        return {**summary, "drift": {"skipped": "no model serves yet"}}
    latest = features.latest_item_features(settings)
    tag = registry.load_champion_tag(settings)
    timed("load")
    as_of = datetime.combine(run_date + timedelta(days=1), time())  # what was known by the end of the run date
    # the version's engine is loaded only for a drift run computed, not for one reused
    drift = drift_report(settings, lambda: served_engine(settings, latest, tag)[1], run_date, model_version=tag,
                         as_of=as_of)
    timed("drift")
    online = online_quality(attributed_events(settings, as_of), tail_items(latest))
    decided = decision.decide(drift, online, registry.champion(settings))
    timed("online")
    rival = registry.challenger(settings)
    if rival and decided["decision"] != "rollback":  # shoppers' verdict on the challenger, from the raw log
        from shoploop.serving import interleaving

        verdict = interleaving.verdict(feedback_events(settings, since=rival["since"]), tag, rival["tag"])
        outcome = registry.conclude(settings, verdict)
        decided["online_evaluation"] = {**verdict.as_dict(), "outcome": outcome or "undecided"}
        (decided["reasons"] if outcome else decided["checked"]).append(f"challenger {rival['tag']}: {verdict.reason()}")
        if outcome == "promoted" and processes.running(settings, "service") is not None:
            decided["deployed"] = deploy(settings)
        timed("interleaving")
    if decided["decision"] == "rollback":
        registry.rollback(settings, decided["rollback_to"], "; ".join(decided["reasons"]))
        if processes.running(settings, "service") is not None:  # a running service swaps back at once
            decided["deployed"] = deploy(settings)
    health = service_health(settings, tag)  # zero-result rate and latency, from the running service
    logged = log_online(settings, online, health, tag, run_date)  # the Evidently dashboard's panels
    timed("dashboard")
    summary = {"run_date": str(run_date), "model_version": tag, "drift": drift, "online": online,
               "service": health, "dashboard": logged, **decided, "seconds": timings}
    (out / "monitor.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
