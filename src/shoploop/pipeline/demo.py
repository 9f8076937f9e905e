"""`shoploop demo`: the whole loop on the embedded defaults, leaving the service and the UIs up."""

from __future__ import annotations

from datetime import date

from shoploop.models import registry
from shoploop.pipeline import operate, orchestration, processes, steps
from shoploop.settings import Settings
from shoploop.warehouse import spark

LIVE_SESSIONS = 60


def start_evidently(settings: Settings) -> str:
    if not processes.running(settings, "evidently"):
        settings.evidently_workspace.mkdir(parents=True, exist_ok=True)
        processes.start(settings, "evidently",
                        [processes.bin_of("evidently"), "ui", "--workspace", str(settings.evidently_workspace),
                         "--host", settings.host, "--port", str(settings.evidently_port)],
                        env=settings.tool_env(), cwd=settings.home, port=settings.evidently_port)
    url = f"http://{settings.host}:{settings.evidently_port}"
    processes.wait_http(url, 120, "evidently ui", settings.run_dir / "evidently.log",
                        alive=lambda: processes.running(settings, "evidently") is not None)
    return url


def run(settings: Settings, run_date: date, say=print) -> dict:
    import time

    from shoploop.data import landing
    from shoploop.data.live import run_shoppers

    started = time.monotonic()
    clock = [started]

    def timed(line: str) -> None:
        """A step's one line, with the seconds it took (since the previous step's line)."""
        now = time.monotonic()
        say(f"{line}  [{now - clock[0]:.0f} s]")
        clock[0] = now

    say(f"shoploop demo, run date {run_date}, source {settings.source}, home {settings.home}")
    timed(f"  land       {steps.land(settings, run_date)}")
    # The demo rebuilds the shop from scratch, so its first build is a full refresh too.
    timed(f"  transform  {steps.describe_transform(steps.transform(settings, run_date, full_refresh=True))}")
    steps.feature_store(settings, run_date)
    timed("  features   feast apply + materialize done")
    first = steps.first_answer(settings, run_date)
    if first.get("promoted"):
        served = operate.deploy(settings, run_date)
        timed(f"  first      {served['url']} answers after {time.monotonic() - started:.0f} s with {first['tag']} "
            "(zero-shot MiniLM + BM25, seed ranker); the trained model follows and is swapped in")
    else:
        timed(f"  first      {first.get('skipped') or first['reason']}")
    trained = steps.train(settings, run_date)
    timed(f"  train      {trained['train_queries']} queries, {trained['items']} items, labels: "
        f"{trained['labels']['mode']} ({trained['labels']['judgments']} judgments), {trained['seconds']} s")
    if trained["recommender"].get("sasrec", "").startswith("not trained"):
        say(f"             recommender: {trained['recommender']['sasrec']}; /recommend serves popular items")
    compressed = steps.compress(settings, run_date)
    timed(f"  compress   {compressed['promoted'] or 'teacher'} serves ({compressed['reason']})")
    metrics = steps.evaluate(settings, run_date)
    timed(f"  evaluate   {metrics['metric']} on {metrics['n_queries']} held-out queries ({metrics['labels']}): model "
        f"{metrics['model']}, BM25 {metrics['bm25']}, zero-shot MiniLM {metrics['dense_zero_shot']}, random {metrics['random']}"
        if metrics["n_queries"] else f"  evaluate   search: {metrics['note']}")
    if "served" in metrics["recommend"]:
        rec = metrics["recommend"]
        say(f"             recommend on {rec['rows']} held-out last items: served nDCG@10 {rec['served']['ndcg@10']}, "
            f"SASRec {rec['sasrec']['ndcg@10']}, popularity {rec['popularity']['ndcg@10']}")
    registered = steps.register(settings, run_date)
    timed(f"  register   {registered}")
    if not registry.champion(settings):
        raise RuntimeError(f"no champion to serve: {registered['reason']} (model card {registered['model_card']})")
    served = operate.deploy(settings, run_date)
    service = served["url"]
    swapped = f", swapped in without a restart (was {served['previous']})" if served["how"] == "hot swap" else " (started)"
    timed(f"  serve      {service}: {served['model_version']}{swapped}, {time.monotonic() - started:.0f} s after the start")
    airflow = orchestration.start_airflow(settings, say)
    evidently = start_evidently(settings)
    timed(f"  UIs        Airflow {airflow} (its DAGs unpaused: the loop turns on its own), Evidently {evidently}")
    if settings.source == "simulator":
        judgments = landing.read_table(settings.landing, "judgments")
        users = landing.read_table(settings.landing, "users")["user_id"].tolist()
        timed(f"  shoppers   {run_shoppers(service, judgments, users, LIVE_SESSIONS, settings.seed)}")
        # The live feedback is in the event log now: rebuild the marts so the report sees it.
        timed(f"  rebuild    {steps.describe_transform(steps.transform(settings, run_date))}, with the shoppers' feedback")
    else:
        timed("  shoppers   none simulated on a real shop's data: its own shoppers' /feedback feeds the loop")
    monitored = operate.monitor(settings, run_date)
    drift = monitored["drift"]
    outcome = drift.get("skipped") or f"drift share {drift.get('drift_share')} -> {drift['html']}"
    timed(f"  monitor    {outcome}")
    say(f"  decision   {monitored['decision']}: {'; '.join(monitored['reasons'] or monitored['checked'])}")
    say("")
    say("Running now (stop all with `make stop`):")
    say(f"  shop API      {service}   (POST /search, /similar, /recommend, /feedback; docs at {service}/docs)")
    say(f"  storefront    {service}/shop/   (search, more like this, a shopper's recommendations)")
    say(f"                admin: POST /admin/reload with 'Authorization: Bearer <{settings.home / 'secrets' / 'admin_token'}>'")
    say(f"  Airflow UI    {airflow}   (login admin / {orchestration.airflow_password(settings)})")
    say(f"  Evidently UI  {evidently}   (project 'shoploop', no login)")
    return {"service": service, "airflow": airflow, "evidently": evidently, "drift": drift}


def stop_all(settings: Settings) -> list[str]:
    servers = [name for name, _ in processes.replicas(settings)] + ["evidently"]
    return ([name for name in servers if processes.stop(settings, name)] + orchestration.stop_airflow(settings)
            + spark.stop_spark(settings))
