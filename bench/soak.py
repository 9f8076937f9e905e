"""Soak: /search and /feedback at a steady rate for ten minutes against the running service, with
its memory and latency per minute, to show neither drifts.

Each second the load sends ``--search-rate`` searches and ``--feedback-rate`` feedback batches (an
impression of the slate's top items and a click on one, as a shop's page does), paced to the
schedule, from 4 client threads of this process (a separate process from the service, on loopback).
Every 10 s it reads the resident memory of every process of the service (tagged, children included).
Stable means: after the first minute (warm-up: caches, allocator pools), resident memory grows by
less than 10% and no minute's p99 is more than twice the second minute's; the verdict is printed and
saved with the numbers. Run after `make demo`:
``.venv/bin/python bench/soak.py [--minutes 10]``; saves bench/results/soak.json.

``--find-rate``: searches alone at rising steady rates (50, 100, 150, ... a second, 20 s each) until a
rate's p99 passes 100 ms or a request fails; reports the highest rate that kept p99 within 100 ms
without errors, and every rate tried. Saves bench/results/search_rates.json. The load comes from 8
client threads of one Python process on the same 2 cores as the service: past about 200 searches/s
that client's own time is part of what is measured.
"""

from __future__ import annotations

import argparse
import json
import platform
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MEMORY_GROWTH_BOUND = 0.10
P99_GROWTH_BOUND = 2.0
# The rate sweep (--find-rate): the latency bound, the rates tried in turn and how long each.
RATE_P99_BOUND_MS = 100.0
SWEEP_RATES = (50, 100, 150, 200, 250, 300, 400)
SWEEP_SECONDS = 20
# Requests each client thread sends before the clock starts (see warm_up).
WARM_REQUESTS = 5


def warm_up(pool: ThreadPoolExecutor, threads: int, send) -> None:
    """Before the clock starts, each of the pool's threads opens its connection and sends a few requests
    (``send()``, not recorded): a TCP connect per client thread and the service's first answers are one-off
    costs, not the steady rate's latency; counted, they were every one of the slowest 1% of a 30-s run
    at 100 searches/s (all within its first 0.7 s)."""
    together = threading.Barrier(threads)  # every thread holds a task at once: each warms its own client

    def task() -> None:
        together.wait(timeout=60)
        for _ in range(WARM_REQUESTS):
            send()

    for done in [pool.submit(task) for _ in range(threads)]:
        done.result()


def service_memory_mb(settings) -> float:
    """Resident memory of every process carrying the service's tag (its parent, workers, children)."""
    import psutil

    from shoploop.pipeline import processes

    total = 0
    for process in processes.tagged(settings, "service"):
        try:
            total += process.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total / 2**20


def steady_searches(url: str, texts: list[str], rate: float, seconds: float, threads: int = 8) -> dict:
    """/search at a steady rate (each request sent at its scheduled time, not when the last returned):
    p50/p99 of the answered requests and the failures."""
    import httpx

    local, lock = threading.local(), threading.Lock()
    took_ms: list[float] = []
    errors = [0]

    def one(i: int, record: bool = True) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=30)
        t = time.perf_counter()
        try:
            ok = local.client.post(f"{url}/search", json={"query": texts[i % len(texts)], "k": 10}).status_code == 200
        except httpx.HTTPError:
            ok = False
        with lock:
            if ok and record:
                took_ms.append((time.perf_counter() - t) * 1000)
            elif record:
                errors[0] += 1

    with ThreadPoolExecutor(threads) as pool:
        warm_up(pool, threads, lambda: one(0, record=False))
        started = time.monotonic()
        for n in range(int(rate * seconds)):
            delay = n / rate - (time.monotonic() - started)
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, n)
    wall = time.monotonic() - started
    return {"rate": rate, "seconds": seconds, "answered": len(took_ms), "errors": errors[0],
            "achieved_per_s": round(len(took_ms) / wall, 1),
            "p50_ms": round(float(np.percentile(took_ms, 50)), 2) if took_ms else None,
            "p99_ms": round(float(np.percentile(took_ms, 99)), 2) if took_ms else None}


def find_rate(url: str, texts: list[str], speed: float) -> None:
    """The highest steady search rate with p99 within RATE_P99_BOUND_MS and no errors (see the module's doc)."""
    tried, best = [], None
    print(f"search rate sweep against {url}: {SWEEP_SECONDS} s a rate, until p99 > {RATE_P99_BOUND_MS:g} ms", flush=True)
    for rate in SWEEP_RATES:
        row = steady_searches(url, texts, rate, SWEEP_SECONDS)
        tried.append(row)
        print(f"  {rate:>4} searches/s: p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, errors {row['errors']}", flush=True)
        if row["errors"] or row["p99_ms"] is None or row["p99_ms"] > RATE_P99_BOUND_MS:
            break
        best = rate
    result = {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores", "calibration_s": speed,
              "p99_bound_ms": RATE_P99_BOUND_MS, "highest_rate_within_bound": best, "rates": tried}
    print(f"\n{'searches/s':>10}{'p50':>10}{'p99':>10}{'errors':>8}")
    for row in tried:
        print(f"{row['rate']:>10g}{row['p50_ms']!s:>10}{row['p99_ms']!s:>10}{row['errors']:>8}")
    print(f"\nhighest rate with p99 <= {RATE_P99_BOUND_MS:g} ms and no errors: {best} searches/s")
    out = ROOT / "bench" / "results" / "search_rates.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"saved {out.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--out", default="soak", help="results file name under bench/results/ (without .json)")
    parser.add_argument("--search-rate", type=float, default=20, help="searches per second")
    parser.add_argument("--feedback-rate", type=float, default=10, help="feedback batches per second")
    parser.add_argument("--find-rate", action="store_true", help="the highest steady search rate with p99 <= 100 ms")
    args = parser.parse_args()

    import httpx
    from serving import (  # bench/serving.py: the shop's own query texts, the machine's speed
        calibration,
        queries,
    )

    from shoploop.pipeline import processes
    from shoploop.settings import get_settings

    settings = get_settings()
    url = f"http://{settings.host}:{settings.service_port}"
    if not processes.answers(f"{url}/readyz"):
        raise SystemExit(f"soak: no service answers at {url}: run `make demo` (or `shoploop deploy`) first")
    texts = queries(settings)
    speed = calibration()  # how fast this machine was (see bench/serving.py): rates compare across runs only through it
    if args.find_rate:
        return find_rate(url, texts, speed)
    duration = args.minutes * 60
    latencies: dict[str, list[tuple[float, float]]] = {"search": [], "feedback": []}
    errors: dict[str, int] = {"search": 0, "feedback": 0}
    memory: list[tuple[float, float]] = []
    lock = threading.Lock()
    local = threading.local()
    slates: list[tuple[str, list[str]]] = []

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=30)
        return local.client

    def search(i: int, at: float) -> None:
        text = texts[i % len(texts)]
        t = time.perf_counter()
        response = client().post(f"{url}/search", json={"query": text, "k": 10})
        took = time.perf_counter() - t
        with lock:
            if response.status_code == 200:
                latencies["search"].append((at, took))
                slates.append((text, [h["item_id"] for h in response.json()["items"]]))
                del slates[:-100]
            else:
                errors["search"] += 1

    def feedback(i: int, at: float) -> None:
        with lock:
            text, items = slates[i % len(slates)] if slates else ("", [])
        if not items:
            return
        session = f"soak-{uuid.uuid4().hex[:12]}"
        events = [{"session_id": session, "event_type": "impression", "item_id": item, "position": p + 1,
                   "query_text": text} for p, item in enumerate(items[:5])]
        events.append({"session_id": session, "event_type": "click", "item_id": items[i % min(5, len(items))],
                       "position": i % min(5, len(items)) + 1, "query_text": text})
        t = time.perf_counter()
        response = client().post(f"{url}/feedback", json={"events": events})
        took = time.perf_counter() - t
        with lock:
            if response.status_code == 200:
                latencies["feedback"].append((at, took))
            else:
                errors["feedback"] += 1

    # One schedule: each request has its start time; threads send it then (a steady, not a closed-loop, rate).
    searches = [(n / args.search_rate, "search", n) for n in range(int(duration * args.search_rate))]
    feedbacks = ([(n / args.feedback_rate + 0.013, "feedback", n) for n in range(int(duration * args.feedback_rate))]
                 if args.feedback_rate > 0 else [])
    schedule = sorted(searches + feedbacks)
    print(f"soak: {args.search_rate:g} searches/s and {args.feedback_rate:g} feedback batches/s for "
          f"{args.minutes:g} min against {url}", flush=True)
    started = time.monotonic()

    def sample_memory() -> None:
        while time.monotonic() - started < duration + 1:
            memory.append((time.monotonic() - started, service_memory_mb(settings)))
            time.sleep(10)

    with ThreadPoolExecutor(4) as pool:
        warm_up(pool, 4, lambda: client().post(f"{url}/search", json={"query": texts[0], "k": 10}))
        started = time.monotonic()
        threading.Thread(target=sample_memory, daemon=True).start()
        for at, kind, n in schedule:
            delay = at - (time.monotonic() - started)
            if delay > 0:
                time.sleep(delay)
            pool.submit(search if kind == "search" else feedback, n, at)
            if n and kind == "search" and n % int(60 * args.search_rate) == 0:
                print(f"  minute {at / 60:.0f} of {args.minutes:g}: memory {memory[-1][1]:.0f} MB", flush=True)

    minutes = []
    for m in range(int(np.ceil(args.minutes))):
        row = {"minute": m + 1}
        for kind, samples in latencies.items():
            ms = [took * 1000 for at, took in samples if m * 60 <= at < (m + 1) * 60]
            row[f"{kind}_n"] = len(ms)
            row[f"{kind}_p50_ms"] = round(float(np.percentile(ms, 50)), 2) if ms else None
            row[f"{kind}_p99_ms"] = round(float(np.percentile(ms, 99)), 2) if ms else None
        mem = [mb for at, mb in memory if m * 60 <= at < (m + 1) * 60]
        row["memory_mb"] = round(max(mem), 1) if mem else None
        minutes.append(row)

    after_warmup = [mb for at, mb in memory if at >= 60]
    growth = (after_warmup[-1] - after_warmup[0]) / after_warmup[0] if len(after_warmup) > 1 else None
    p99s = [r["search_p99_ms"] for r in minutes[1:] if r["search_p99_ms"] is not None]
    p99_ratio = max(p99s) / p99s[0] if p99s else None
    stable = (growth is not None and growth < MEMORY_GROWTH_BOUND and p99_ratio is not None
              and p99_ratio <= P99_GROWTH_BOUND and not any(errors.values()))
    result = {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores", "calibration_s": speed,
              "minutes": args.minutes,
              "search_rate": args.search_rate, "feedback_rate": args.feedback_rate, "errors": errors,
              "memory_growth_after_warmup": round(growth, 4) if growth is not None else None,
              "search_p99_worst_over_minute_2": round(p99_ratio, 2) if p99_ratio else None,
              "bounds": {"memory_growth": MEMORY_GROWTH_BOUND, "p99_ratio": P99_GROWTH_BOUND},
              "stable": stable, "per_minute": minutes}
    print(f"\n{'minute':>6}{'search p50':>12}{'search p99':>12}{'feedback p50':>14}{'feedback p99':>14}{'memory MB':>11}")
    for r in minutes:
        print(f"{r['minute']:>6}{r['search_p50_ms']!s:>12}{r['search_p99_ms']!s:>12}{r['feedback_p50_ms']!s:>14}"
              f"{r['feedback_p99_ms']!s:>14}{r['memory_mb']!s:>11}")
    print(f"\nerrors {errors}; memory growth after the first minute {result['memory_growth_after_warmup']} "
          f"(bound {MEMORY_GROWTH_BOUND}); worst minute's search p99 / minute 2's {result['search_p99_worst_over_minute_2']} "
          f"(bound {P99_GROWTH_BOUND}): {'stable' if stable else 'NOT stable'}")
    out = ROOT / "bench" / "results" / f"{args.out}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"saved {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
