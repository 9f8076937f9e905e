"""Serving on a large shop, both profiles side by side: the embedded profile's one service (one worker,
the embedded event log, SQLite online store) against the scale profile's 2 replicas (Redis stream and
online store, features materialised through Spark), on the same built shop and the same champion.
/search over HTTP from 1, 4 and 16 clients (round robin over the replicas, as a load balancer would),
/feedback's durable events per second, the time from a click's acknowledgement to its count in the
online store, and how long each service took to answer after its start.

The shop is built once in its own home (simulate with `shoploop simulate --scale`'s growth rule, dbt on
DuckDB, Feast, the untrained first answer as champion: zero-shot MiniLM + BM25 + the seed ranker, the
same request path as a trained version) and kept for a rerun (``--home``). Both setups run on this one
2-core machine, so the second replica adds no cores: the figures say what the scale profile costs here;
what it buys is replicas on machines of their own (infra/README.md).

Default 20,000 items: at 200,000 (``--items 200000``) the build alone takes over an hour on 2 cores, the
catalog's encoding by the fp32 MiniLM (about 50 texts/s here, 98,335 items listed by the run date).
``.venv/bin/python bench/scale_serving.py [--items N] [--requests N]``. Needs Redis (SHOPLOOP_REDIS_URL,
default 127.0.0.1:6379/0) and Java 17 (Spark). Prints a table and saves bench/results/scale_serving.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import uuid
from datetime import date, datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from serving import calibration, counter_lag, feedback_rate, over_http, queries  # noqa: E402

RUN_DATE = date(2026, 11, 29)
KEY = "bench-scale-serving-key-0123456789"


def timed(label: str, work):
    print(f"  {label} ...", flush=True)
    started = time.perf_counter()
    out = work()
    seconds = round(time.perf_counter() - started, 1)
    print(f"  {label}: {seconds} s", flush=True)
    return out, seconds


def build(settings) -> dict:
    """The shop up to a champion, embedded profile; skipped where the home already has one."""
    from shoploop.models import registry
    from shoploop.pipeline import steps

    if registry.champion(settings) is not None:
        print(f"reusing the built shop in {settings.home}", flush=True)
        return {"reused": str(settings.home)}
    print(f"building a shop of {settings.n_items:,} items in {settings.home}", flush=True)
    out = {}
    counts, out["simulate_s"] = timed("simulate", lambda: steps.simulate(settings, RUN_DATE))
    out["events"] = int(counts["events"])
    _, out["dbt_build_s"] = timed("dbt build (DuckDB)", lambda: steps.transform(settings, RUN_DATE))
    _, out["feast_s"] = timed("feast apply + materialise", lambda: steps.feature_store(settings, RUN_DATE))
    _, out["first_answer_s"] = timed("first answer (encode the catalog, BM25, ANN)", lambda: steps.first_answer(settings, RUN_DATE))
    return out


def serve_and_measure(settings, requests: int, label: str) -> dict:
    from shoploop.pipeline import demo, operate, processes, steps

    print(f"{label}:", flush=True)
    if settings.online_store != "embedded":
        _, materialise_s = timed("feast apply + materialise into Redis (Spark offline store)",
                                 lambda: steps.feature_store(settings, RUN_DATE))
    else:
        materialise_s = None
    try:
        answer, ready_s = timed(f"start {settings.service_replicas} replica(s) until ready", lambda: operate.deploy(settings))
        urls = [f"http://{settings.host}:{port}" for _, port in processes.replicas(settings)[:settings.service_replicas]]
        texts = queries(settings)
        row = {"replicas": len(urls), "workers_each": settings.service_workers, "ready_s": ready_s,
               "model_version": answer["model_version"], "http": over_http(urls, texts, requests),
               "feedback": feedback_rate(urls, requests), "counter_lag": counter_lag(settings, urls, 50)}
        if materialise_s is not None:
            row["materialise_s"] = materialise_s
        return row
    finally:
        demo.stop_all(settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=600, help="requests per HTTP measurement")
    parser.add_argument("--home", type=Path, help="default .shoploop-bench/scale-serving-<items>")
    args = parser.parse_args()
    args.home = args.home or ROOT / ".shoploop-bench" / f"scale-serving-{args.items}"

    import redis

    from shoploop.settings import Settings

    redis_url = os.environ.get("SHOPLOOP_REDIS_URL", "redis://127.0.0.1:6379/0")
    saved_env = dict(os.environ)
    for name in [n for n in os.environ if n.startswith("SHOPLOOP_")]:
        del os.environ[name]  # only this bench's settings (features.store exports a home's settings)
    # the same growth rule as `shoploop simulate --scale`; ports of its own, beside a running demo
    shop = {"home": args.home, "n_items": args.items, "n_users": max(2000, args.items // 4),
            "sessions_per_day": max(600, int(args.items * 0.036)), "pseudonym_key": KEY, "service_port": 3390,
            "spark_port": 7490, "spark_ui_port": 8492}
    prefix = f"shoploop_bench_{uuid.uuid4().hex[:8]}"
    embedded = Settings(**shop)
    scale = Settings(**shop, profile="scale", redis_url=redis_url, stream_prefix=prefix)
    result = {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores", "calibration_s": calibration(),
              "items": args.items}
    try:
        result["build"] = build(embedded)
        os.environ.clear()
        os.environ.update({k: v for k, v in saved_env.items() if not k.startswith("SHOPLOOP_")})
        result["embedded, 1 replica"] = serve_and_measure(embedded, args.requests, "embedded profile, 1 replica")
        os.environ.clear()
        os.environ.update({k: v for k, v in saved_env.items() if not k.startswith("SHOPLOOP_")})
        result["scale, 2 replicas"] = serve_and_measure(scale, args.requests, "scale profile, 2 replicas (Redis)")
    finally:
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=f"*{prefix}*", count=1000):
            client.delete(key)
        os.environ.clear()
        os.environ.update(saved_env)

    one, two = result["embedded, 1 replica"], result["scale, 2 replicas"]
    result["scale_over_embedded"] = {clients: round(two["http"][clients]["requests_per_s"] / one["http"][clients]["requests_per_s"], 2)
                                     for clients in one["http"]}
    print(f"\n/search over HTTP, {args.items:,} items ({result['machine']}, calibration {result['calibration_s']} s)")
    print(f"{'setup':<22}{'clients':>9}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}")
    for setup in ("embedded, 1 replica", "scale, 2 replicas"):
        for clients, row in result[setup]["http"].items():
            print(f"{setup:<22}{clients:>9}{row['p50_ms']:>9}{row['p99_ms']:>9}{row['requests_per_s']:>9}")
    print(f"{'2 replicas / 1':<22}" + "".join(f"  {c}: x{r}" for c, r in result["scale_over_embedded"].items()))
    print(f"\n{'setup':<22}{'ready s':>9}{'feedback ev/s (10/req)':>24}{'ack->counter p99 ms':>21}")
    for setup in ("embedded, 1 replica", "scale, 2 replicas"):
        row = result[setup]
        print(f"{setup:<22}{row['ready_s']:>9}{row['feedback']['10 events a request']['events_per_s']:>24}"
              f"{row['counter_lag']['p99_ms']:>21}")
    out = ROOT / "bench" / "results" / "scale_serving.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nsaved {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
