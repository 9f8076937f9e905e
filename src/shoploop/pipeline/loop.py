"""`shoploop loop` (`make loop`): the closed loop, shown end to end on a small simulated shop of its own.

The service serves a model trained before the drift; the simulator's shoppers drive it over HTTP
(shoploop.data.live.MarketShoppers). Then a drift scenario starts (trend shift, a wave of new items and
new words for the same needs, on the day before the run date): the shoppers' tastes move, the new items
exist, six searches in ten use the new words (which the shop's labellers judge from that day on). Airflow starts with
the loop's settings; its daily refresh lands the drifted day (simulator → dbt → Feast); the monitor DAG
detects the drift and emits the retrain asset; the retrain DAG that the asset schedules trains, gates
and registers the new version, which goes before shoppers as the challenger (team-draft interleaving);
the monitor DAG's verdict promotes it and hot-swaps it into the running service. The same drifted
sessions (same shoppers, same luck) then run against the new model, beside their run against the stale
one. Every stage is timed; the report (markdown + plots) is written to ``<home>/reports/loop/``.

The loop has its own home (``<home>-loop``) and ports (+100), so it leaves `make demo`'s shop alone.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import httpx

from shoploop.models import registry
from shoploop.pipeline import demo, operate, orchestration, processes, steps
from shoploop.settings import Settings

# A shop small enough that a retraining takes minutes on two cores, big enough for drift to show.
SCALE = {"n_items": 1000, "n_users": 800, "n_days": 14, "sessions_per_day": 250}
SESSIONS = 1000         # shopper sessions before the drift, and right after it
SIDE_BY_SIDE = 2000     # the same drifted sessions on the new model and on the stale one, at the end
BATCH = 250             # interleaved sessions between two monitor runs
MAX_BATCHES = 10        # the verdict's budget: 2,500 sessions
DRIFT = ("trend_shift", "new_items", "vocab_shift")


def loop_settings(settings: Settings, run_date: date, scale: str = "small") -> Settings:
    """The loop's shop: its own home and ports, the drift starting the day before the run date, half of
    the searches interleaved while a challenger is out. ``scale``: "small" (SCALE, about 30 minutes) or
    "default" (the settings' own: the demo's 5,000 items unless told otherwise)."""
    starts = run_date - timedelta(days=1)
    return settings.model_copy(update={
        **(SCALE if scale == "small" else {}), "home": settings.home.with_name(settings.home.name + "-loop"),
        "drift": ",".join(f"{name}@{starts}" for name in DRIFT), "interleave_share": 0.5,
        "service_port": settings.service_port + 100, "airflow_port": settings.airflow_port + 100,
        "evidently_port": settings.evidently_port + 100, "service_replicas": 1})


class Airflow:
    """The loop's Airflow (standalone) through its REST API: trigger a DAG, follow its runs."""

    def __init__(self, settings: Settings, url: str):
        password = json.loads((settings.airflow_home / "passwords.json").read_text())["admin"]
        token = httpx.post(f"{url}/auth/token", json={"username": "admin", "password": password}, timeout=30)
        token.raise_for_status()
        self.client = httpx.Client(base_url=f"{url}/api/v2", timeout=30,
                                   headers={"Authorization": f"Bearer {token.json()['access_token']}"})

    def runs(self, dag_id: str) -> list[dict]:
        answer = self.client.get(f"/dags/{dag_id}/dagRuns", params={"order_by": "-run_after", "limit": 20})
        answer.raise_for_status()
        return answer.json()["dag_runs"]

    def trigger(self, dag_id: str) -> str:
        answer = self.client.post(f"/dags/{dag_id}/dagRuns", json={"logical_date": None})
        answer.raise_for_status()
        return answer.json()["dag_run_id"]

    def running_task(self, dag_id: str, run_id: str) -> str:
        answer = self.client.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        if answer.status_code != 200:
            return "?"
        busy = [t["task_id"] for t in answer.json()["task_instances"] if t["state"] in ("running", "queued", "scheduled")]
        return ", ".join(busy) or "between tasks"

    def wait(self, dag_id: str, run_id: str | None, say, timeout_s: float, since: datetime | None = None) -> dict:
        """Wait for run ``run_id`` (None: the first run of the DAG created after ``since``) to end; fail
        with its state unless it succeeded. Says what runs every 30 seconds."""
        deadline, told = time.monotonic() + timeout_s, 0.0
        while time.monotonic() < deadline:
            runs = self.runs(dag_id)
            if run_id is None:
                fresh = [r for r in runs if since is None or datetime.fromisoformat(r["run_after"]) >= since
                         or (r["start_date"] and datetime.fromisoformat(r["start_date"]) >= since)]
                run = fresh[-1] if fresh else None
            else:
                run = next((r for r in runs if r["dag_run_id"] == run_id), None)
            if run and run["state"] in ("success", "failed"):
                if run["state"] != "success":
                    raise RuntimeError(f"Airflow: {dag_id} run {run['dag_run_id']} {run['state']} "
                                       f"(task logs under {self.client.base_url})")
                return run
            if time.monotonic() - told > 30:
                doing = self.running_task(dag_id, run["dag_run_id"]) if run else "waiting for the scheduler"
                say(f"             … {dag_id}: {doing} ({deadline - time.monotonic():.0f} s left of its budget)")
                told = time.monotonic()
            time.sleep(3)
        raise TimeoutError(f"Airflow: {dag_id} did not finish within {timeout_s:.0f} s")


def run(settings: Settings, run_date: date, say=print, keep_running: bool = False, scale: str = "small") -> dict:
    from shoploop.data.live import MarketShoppers

    settings = loop_settings(settings, run_date, scale)
    stages: list[dict] = []
    clock = {"at": time.monotonic()}
    began = time.monotonic()

    def stage(name: str, line: str, **facts) -> dict:
        now = time.monotonic()
        record = {"stage": name, "seconds": round(now - clock["at"], 1), "ended_s": round(now - began, 1), "line": line, **facts}
        stages.append(record)
        say(f"  {name:<11}{line}  [{record['seconds']:.0f} s]")
        clock["at"] = now
        return record

    say(f"shoploop loop, run date {run_date}, home {settings.home} ({settings.n_items:,} items); drift "
        f"{settings.drift}. About {'30 minutes' if scale == 'small' else 'an hour'} on two cores; each stage "
        "prints a line when it ends.")
    for name, _ in processes.replicas(settings):
        processes.stop(settings, name)
    orchestration.stop_airflow(settings)
    for name in ("evidently", PINNED):
        processes.stop(settings, name)
    shutil.rmtree(settings.home, ignore_errors=True)

    # The shop before the drift: the data up to the day before, a model trained on it, serving.
    before = run_date - timedelta(days=1)
    steps.land(settings, before)
    steps.transform(settings, before, full_refresh=True)
    steps.feature_store(settings, before)
    say(f"             … the shop's data up to {before - timedelta(days=1)} landed, built, in Feast; training")
    steps.train(settings, before)
    steps.compress(settings, before)
    steps.evaluate(settings, before)
    registered = steps.register(settings, before)
    served = operate.deploy(settings, before)
    url = served["url"]
    stale = served["model_version"]
    stage("shop", f"{url} serves {stale}, trained on the data up to {before - timedelta(days=1)} ({registered['reason']})")

    shoppers = MarketShoppers(settings, run_date)
    pre = shoppers.run(url, SESSIONS, drifted=False, first=0)
    stage("before", f"{SESSIONS} sessions, no drift: CTR {pre['ctr']}, online nDCG {pre['online_ndcg']}", shoppers=pre)

    drift_started = datetime.now(timezone.utc)
    drifted_stale = shoppers.run(url, SESSIONS, drifted=True, first=1_000_000)
    stage("drift", f"{', '.join(DRIFT)} start: the same shoppers' next {SESSIONS} sessions on {stale}: CTR "
          f"{drifted_stale['ctr']}, online nDCG {drifted_stale['online_ndcg']}", shoppers=drifted_stale)

    since = datetime.now(timezone.utc)
    airflow_url = orchestration.start_airflow(settings, say)
    airflow = Airflow(settings, airflow_url)
    stage("airflow", f"{airflow_url} up (DAGs unpaused; its daily refresh runs at once)")
    # The daily refresh lands the drifted day: Airflow starts its latest interval at once (else: trigger it).
    refresh = airflow.wait("shoploop_refresh", None, say, 1200, since)
    refreshed = [h for h in registry.history(settings) if h["event"] == "reindex" and h["replaced"] == stale]
    stage("refresh", f"Airflow shoploop_refresh {refresh['dag_run_id']}: land (simulator, drifted day), dbt, Feast, "
          + (f"reindex ({refreshed[-1]['reason']})" if refreshed else "reindex (nothing to add)"))

    monitors: list[dict] = []

    def monitor_run(why: str) -> dict:
        trained = settings.artifacts / str(run_date) / "register.json"
        held = json.loads(trained.read_text())["tag"] if trained.exists() else None
        asked = time.monotonic()
        run_id = airflow.trigger("shoploop_monitor")
        airflow.wait("shoploop_monitor", run_id, say, 900)
        summary = json.loads((settings.reports / str(run_date) / "monitor.json").read_text())
        decision = summary["decision"]
        if decision == "retrain" and held:  # the DAG's request_retraining holds it back (same run date)
            decision = f"retrain, held back ({held} was trained on this date's data)"
        monitors.append({"at_s": round(time.monotonic() - began, 1), "why": why, "run_id": run_id,
                         "decision": decision, "reasons": summary.get("reasons", []),
                         "drifted_columns": summary.get("drift", {}).get("drifted_columns"),
                         "online_evaluation": summary.get("online_evaluation"),
                         # from the trigger to the run's end, and the monitor step's own parts
                         "seconds": round(time.monotonic() - asked, 1), "step_seconds": summary.get("seconds")})
        return summary

    # The monitor Airflow ran at start-up may have judged the data before or after the refresh: let it end,
    # then ask the monitor once more unless that one already requested the retraining.
    for active in [r for r in airflow.runs("shoploop_monitor") if r["state"] in ("queued", "running")]:
        airflow.wait("shoploop_monitor", active["dag_run_id"], say, 900)
    retraining = [r for r in airflow.runs("shoploop_retrain")
                  if r["start_date"] is None or datetime.fromisoformat(r["start_date"]) >= since]
    if not retraining:  # the monitor Airflow ran at start-up may have judged the data before the refresh
        decided = monitor_run("after the refresh")
        stage("monitor", f"Airflow shoploop_monitor: {decided['decision']}: {'; '.join(decided['reasons']) or 'nothing drifted'}")
        if decided["decision"] != "retrain":
            raise RuntimeError(f"the monitor did not decide to retrain after the drift ({decided['decision']}): "
                               f"see {settings.reports / str(run_date) / 'monitor.json'}")
    retrain = airflow.wait("shoploop_retrain", None, say, 1800, since)
    trained = json.loads((settings.artifacts / str(run_date) / "register.json").read_text())
    stage("retrain", f"Airflow shoploop_retrain {retrain['dag_run_id']} (on the monitor's asset event): "
          f"{trained['tag']}: {trained['reason']}", run_type=retrain.get("run_type"))
    fresh = trained["tag"]

    interleaved = {"sessions": 0, "impressions": 0, "clicks": 0}
    batch = 0
    while registry.challenger(settings) and batch < MAX_BATCHES:
        got = shoppers.run(url, BATCH, drifted=True, first=2_000_000 + batch * BATCH)
        for key in interleaved:
            interleaved[key] += got[key]
        batch += 1
        decided = monitor_run(f"after {interleaved['sessions']} interleaved sessions")
        verdict = decided.get("online_evaluation") or {}
        say(f"             … {interleaved['sessions']} sessions with {fresh} interleaved: {verdict.get('outcome', '?')} "
            f"(lists won: challenger {verdict.get('challenger_wins')}, champion {verdict.get('champion_wins')}, "
            f"ties {verdict.get('ties')}; confidence {verdict.get('confidence')})")
    champion = registry.champion(settings)["tag"]
    if champion != fresh:
        stage("interleave", f"{fresh} not promoted after {interleaved['sessions']} sessions: "
              f"{(monitors[-1]['online_evaluation'] or {}).get('outcome', 'no verdict')}")
    else:
        stage("interleave", f"{fresh} promoted by the shoppers' verdict and hot-swapped in", sessions=interleaved)
    history = registry.history(settings)

    def since_drift(event: str) -> float | None:
        at = [h["at"] for h in history if h["event"] == event and h["tag"] == fresh]
        return (datetime.fromisoformat(at[-1]) - drift_started).total_seconds() if at else None

    # Before shoppers as the challenger (interleaved into searches), then serving alone once they promote it.
    to_challenger, to_serving = since_drift("challenge"), since_drift("promotion")
    # Side by side, at the same moment (same features, same counters): the stale version pinned on a
    # service of its own, and the new champion, each meeting the same drifted sessions.
    old_url = start_pinned(settings, stale)
    try:
        after = shoppers.run(url, SIDE_BY_SIDE, drifted=True, first=3_000_000)
        kept = shoppers.run(old_url, SIDE_BY_SIDE, drifted=True, first=3_000_000)
    finally:
        processes.stop(settings, PINNED)
    stage("after", f"the same {SIDE_BY_SIDE} drifted sessions on {champion}: CTR {after['ctr']}, on the stale "
          f"{stale} (pinned, side by side): CTR {kept['ctr']}; before the drift {pre['ctr']}",
          shoppers=after, stale_shoppers=kept)

    result = {"run_date": str(run_date), "home": str(settings.home), "drift": settings.drift, "scale": {key: getattr(settings, key) for key in SCALE},
              "sessions": SESSIONS, "side_by_side_sessions": SIDE_BY_SIDE, "interleave_share": settings.interleave_share,
              "stale": stale, "fresh": fresh, "champion": champion, "stages": stages, "monitors": monitors,
              "drift_to_challenger_s": round(to_challenger, 1) if to_challenger is not None else None,
              "drift_to_serving_s": round(to_serving, 1) if to_serving is not None and champion == fresh else None,
              **{metric: {"before_drift": pre[metric], "drift_started": drifted_stale[metric],
                          "drifted_stale": kept[metric], "drifted_fresh": after[metric]}
                 for metric in ("ctr", "purchase_rate", "online_ndcg")},
              "history": registry.history(settings), "total_s": round(time.monotonic() - began, 1)}
    path = write_report(settings, result)
    say(f"  report     {path}")
    if not keep_running:
        stopped = demo.stop_all(settings)
        say(f"  stopped    {', '.join(stopped)} (`shoploop loop --keep-running` leaves them up)")
    return result


PINNED = "stale-model"


def start_pinned(settings: Settings, tag: str) -> str:
    """A second service serving ``tag`` whatever the registry says (settings.model_tag), on the next port."""
    port = settings.service_port + 7
    processes.start(settings, PINNED, [processes.bin_of("bentoml"), "serve", "service:Shoploop", "--host", settings.host,
                                       "--port", str(port)],
                    env={**settings.tool_env(), "SHOPLOOP_SERVICE_PORT": str(port), "SHOPLOOP_MODEL_TAG": tag},
                    cwd=settings.project_dir / "services", port=port)
    url = f"http://{settings.host}:{port}"
    processes.wait_http(f"{url}/readyz", 180, "the stale model's service", settings.run_dir / f"{PINNED}.log",
                        alive=lambda: processes.running(settings, PINNED) is not None)
    return url


def write_report(settings: Settings, result: dict) -> Path:
    """loop.json, loop.md and the plots beside them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = settings.reports / "loop"
    out.mkdir(parents=True, exist_ok=True)
    (out / "loop.json").write_text(json.dumps(result, indent=2, default=str))

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    phases = ["before the drift\n(old model)", "drift starts\n(old model)", "after the loop\n(old model, pinned)",
              "after the loop\n(new model)"]
    keys = ["before_drift", "drift_started", "drifted_stale", "drifted_fresh"]
    colours = ["#888", "#c88", "#c44", "#4a4"]
    axes[0].bar(phases, [result["ctr"][k] for k in keys], color=colours)
    axes[0].set_title("click-through rate (the last two: the same sessions)")
    axes[1].bar(phases, [result["online_ndcg"][k] or 0 for k in keys], color=colours)
    axes[1].set_title("online nDCG@10 from clicks")
    for ax in axes[:2]:
        ax.tick_params(axis="x", labelsize=7)
    starts = [s["ended_s"] - s["seconds"] for s in result["stages"]]
    axes[2].barh([s["stage"] for s in result["stages"]], [s["seconds"] / 60 for s in result["stages"]],
                 left=[x / 60 for x in starts], color="#48c")
    for m in result["monitors"]:
        axes[2].axvline(m["at_s"] / 60, color="#c44" if m["decision"] == "retrain" else "#aaa", lw=0.8)
    axes[2].invert_yaxis()
    axes[2].set_xlabel("minutes since the loop started (lines: monitor runs, red = retrain)")
    axes[2].set_title("stages")
    fig.tight_layout()
    fig.savefig(out / "loop.png", dpi=90)
    plt.close(fig)

    lines = [f"# The loop, run on {result['run_date']}", "",
             f"Shop: {result['home']} ({result['scale']['n_items']:,} items), drift `{result['drift']}`. "
             f"Stale model `{result['stale']}`, retrained `{result['fresh']}`; champion at the end `{result['champion']}`.",
             "", "![loop](loop.png)", "",
             "| stage | seconds | what happened |", "|---|---:|---|"]
    lines += [f"| {s['stage']} | {s['seconds']:.0f} | {s['line']} |" for s in result["stages"]]
    served, challenged = result["drift_to_serving_s"], result.get("drift_to_challenger_s")
    lines += ["", "**From the drift's start to the new model serving: "
              + (f"{served / 60:.1f} minutes**" if served is not None else "the new model never served**")
              + (f" (before shoppers as the challenger, interleaved, after {challenged / 60:.1f} minutes)."
                 if challenged is not None else "."), "",
              "| shoppers | CTR | purchase rate | online nDCG@10 |", "|---|---:|---:|---:|"]
    names = {"before_drift": f"before the drift, old model ({SESSIONS} sessions)",
             "drift_started": f"the drift starts, old model ({SESSIONS} sessions, features before the refresh)",
             "drifted_stale": f"after the loop, old model pinned beside the new ({SIDE_BY_SIDE} sessions)",
             "drifted_fresh": f"after the loop, new model (the same {SIDE_BY_SIDE} sessions)"}
    lines += [f"| {names[k]} | {result['ctr'][k]} | {result['purchase_rate'][k]} | {result['online_ndcg'][k]} |"
              for k in names]
    lines += ["", "## Monitor runs (Airflow `shoploop_monitor`)", "", "| minute | why | decision | reasons |", "|---:|---|---|---|"]
    lines += [f"| {m['at_s'] / 60:.1f} | {m['why']} | {m['decision']} | {'; '.join(m['reasons']) or '—'} |"
              for m in result["monitors"]]
    lines += ["", "## Promotions and rollbacks (registry history)", ""]
    lines += [f"- {h['at']} **{h['event']}** {h['tag']} (replaced {h['replaced'] or 'nothing'}): {h['reason']}"
              for h in result["history"]]
    (out / "loop.md").write_text("\n".join(lines) + "\n")
    return out / "loop.md"


