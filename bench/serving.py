"""Request-path speed: the item-feature read and /search, the old path beside the new, in process
and over HTTP against the running service.

In process (the champion and the online store of a built home):
  - ``feast get_online_features``: every request reads all of its 100 candidates' features from the
    online store through Feast's serving path (what the service did before);
  - ``held + counters``: the snapshot features held in the worker, only the real-time counters read
    per request in one round trip (features.ServedItemFeatures, what the service does now).
Over HTTP (when the service answers): /search one request at a time, then from 4 and 16 concurrent
clients (threads of this process: a separate process from the service, on loopback), and from wrk over 1
and 16 connections (a C client, where installed: no Python client's time in its figures); /feedback's
durable events per second from 8 clients, one and ten events a request; and the time from a click's
acknowledgement to its count in the online store. Run once per worker count
(SHOPLOOP_SERVICE_WORKERS=1, then 2, and `shoploop deploy` between): the figures of each are kept.

Run after `make demo` (or on any home with a champion): ``.venv/bin/python bench/serving.py``.
Prints a table and saves bench/results/serving.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FALLBACK_QUERIES = ["water bottle", "red frying pan", "yoga mat", "wireless earbuds", "desk lamp", "running shoes"]


def percentiles(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1000
    return {"n": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 2), "p90_ms": round(float(np.percentile(ms, 90)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def calibration() -> float:
    """Seconds for a fixed pure-Python loop (best of 3): how fast this machine was at the time. Machines
    of one kind differ, and one machine from minute to minute (a neighbour's load): figures from
    different runs compare only through it."""
    best = float("inf")
    for _ in range(3):
        started, total = time.perf_counter(), 0
        for i in range(10_000_000):
            total += i
        best = min(best, time.perf_counter() - started)
    return round(best, 3)


def queries(settings) -> list[str]:
    from shoploop.data import landing

    try:
        texts = landing.read_table(settings.landing, "judgments")["query_text"].drop_duplicates().tolist()
    except Exception:  # a real shop's home may hold no judgments
        texts = []
    return texts[:200] or FALLBACK_QUERIES


def in_process(settings, texts: list[str], repeats: int) -> dict:
    from shoploop import features
    from shoploop.models import registry
    from shoploop.serving.predict import CANDIDATES, SearchEngine

    fs = features.store(settings)
    service = fs.get_feature_service(settings.feature_service)
    tag, bundle = registry.load_champion(settings)
    ids = bundle.catalog["item_id"].tolist()
    started = time.perf_counter()
    held = features.ServedItemFeatures(fs, service, ids)
    load_s = time.perf_counter() - started
    paths = {"feast get_online_features": features.online_lookup(fs, service), "held + counters": held}
    rng = np.random.default_rng(0)
    encoder = "compressed ONNX" if bundle.query_encoder_dir is not None else "full MiniLM (torch fp32)"
    out = {"model_version": tag, "query_encoder": encoder, "items": len(ids), "held_load_s": round(load_s, 2),
           "lookup": {}, "search": {}}
    for name, lookup in paths.items():
        times = []
        for _ in range(repeats):
            chosen = [ids[i] for i in rng.choice(len(ids), min(CANDIDATES, len(ids)), replace=False)]
            t = time.perf_counter()
            lookup(chosen)
            times.append(time.perf_counter() - t)
        out["lookup"][name] = percentiles(times)
        engine = SearchEngine(bundle, bundle.text_encoder(), lookup)
        for text in texts[:10]:  # warm: first calls build caches (spelling vocabulary, kernels)
            engine.search(text, 10)
        times = []
        for i in range(repeats):
            t = time.perf_counter()
            engine.search(texts[i % len(texts)], 10)
            times.append(time.perf_counter() - t)
        out["search"][name] = percentiles(times)
        print(f"  in process, {name}: lookup {out['lookup'][name]}, search {out['search'][name]}", flush=True)
    out["encoder_batching"] = encoder_batching(bundle.text_encoder(), texts, repeats)
    out["search_under_load"] = search_under_load(bundle, held, texts, repeats)
    return out


def search_under_load(bundle, lookup, texts: list[str], repeats: int, threads: int = 8) -> dict:
    """Does the service's adaptive batching (models.encoder.BatchingEncoder) pay under load? Whole searches
    from ``threads`` threads at once (a worker's request threads), the encoder plain against batching,
    alternated twice; searches per second and latency."""
    from shoploop.models.encoder import BatchingEncoder
    from shoploop.serving.predict import SearchEngine

    plain = bundle.text_encoder()
    engines = {"encoder one query a pass": SearchEngine(bundle, plain, lookup),
               "adaptive batching": SearchEngine(bundle, BatchingEncoder(plain), lookup)}
    runs: dict[str, list] = {name: [] for name in engines}
    for _ in range(2):
        for name, engine in engines.items():
            def one(i: int, engine=engine) -> float:
                t = time.perf_counter()
                engine.search(texts[i % len(texts)], 10)
                return time.perf_counter() - t

            started = time.perf_counter()
            with ThreadPoolExecutor(threads) as executor:
                times = list(executor.map(one, range(repeats)))
            runs[name].append({**percentiles(times), "searches_per_s": round(repeats / (time.perf_counter() - started), 1)})
    out = {name: max(rows, key=lambda r: r["searches_per_s"]) for name, rows in runs.items()}
    batching = engines["adaptive batching"].encoder
    out["adaptive batching"]["queries_per_pass"] = round(batching.calls / max(batching.batches, 1), 2)
    print(f"  search from {threads} threads: {out}", flush=True)
    return out


def encoder_batching(encoder, texts: list[str], repeats: int) -> dict:
    """Would adaptive batching of the query encoder pay? Per query: one at a time, against batches of 4,
    8 and 16 (what a batcher would gather from concurrent requests)."""
    out = {}
    for size in (1, 4, 8, 16):
        times = []
        for i in range(max(repeats // size, 20)):
            batch = [texts[(i * size + j) % len(texts)] for j in range(size)]
            t = time.perf_counter()
            encoder.encode(batch)
            times.append((time.perf_counter() - t) / size)
        out[f"batch of {size}"] = {"per_query_ms": round(1000 * float(np.median(times)), 3)}
    print(f"  query encoder, per query: {out}", flush=True)
    return out


def over_http(urls: list[str], texts: list[str], requests: int) -> dict:
    """/search from 1, 4 and 16 clients, request i to replica i mod len(urls) (a load balancer's round robin)."""
    import httpx

    def one(client, i: int) -> float:
        t = time.perf_counter()
        response = client.post(f"{urls[i % len(urls)]}/search", json={"query": texts[i % len(texts)], "k": 10})
        response.raise_for_status()
        return time.perf_counter() - t

    out = {}
    for clients in (1, 4, 16):
        pool = [httpx.Client(timeout=30) for _ in range(clients)]
        for c in pool:
            one(c, 0)
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as executor:
            times = list(executor.map(lambda i: one(pool[i % clients], i), range(requests)))
        wall = time.perf_counter() - started
        for c in pool:
            c.close()
        out[f"{clients} client{'s' if clients > 1 else ''}"] = {**percentiles(times), "requests_per_s": round(requests / wall, 1)}
        print(f"  over HTTP, {clients} clients: {out[f'{clients} client' + ('s' if clients > 1 else '')]}", flush=True)
    return out


def over_wrk(url: str, texts: list[str], seconds: int = 10) -> dict:
    """/search from wrk (a C load generator: none of a Python client's own milliseconds in the figures),
    over 1 and 16 connections, the queries taken in turn; {} where wrk is not installed
    (`apt-get install wrk`)."""
    import re
    import shutil
    import subprocess
    import tempfile

    if shutil.which("wrk") is None:
        print("  wrk: not installed (apt-get install wrk), skipped", flush=True)
        return {}
    bodies = ",\n".join(f"[==[{json.dumps({'query': text, 'k': 10})}]==]" for text in texts)
    script = ("local bodies = {\n" + bodies + "\n}\nlocal i = 0\nrequest = function()\n  i = i % #bodies + 1\n"
              '  return wrk.format("POST", "/search", {["Content-Type"] = "application/json"}, bodies[i])\nend\n'
              "done = function(summary, latency, requests)\n"
              '  io.write(string.format("RESULT %d %d %d %d %d %d %d %d\\n", summary.requests, summary.duration, '
              "summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout, "
              "latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))\nend\n")
    out = {}
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script)
        lua.flush()
        for connections in (1, 16):
            ran = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", lua.name, f"{url}/search"],
                                 capture_output=True, text=True, timeout=seconds + 60)
            found = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", ran.stdout)
            if ran.returncode != 0 or found is None:
                raise RuntimeError(f"wrk failed: {ran.stdout[-500:]} {ran.stderr[-500:]}")
            n, duration_us, errors, p50, p90, p99 = map(int, found.groups())
            name = f"{connections} connection{'s' if connections > 1 else ''}"
            out[name] = {"n": n, "errors": errors, "p50_ms": round(p50 / 1000, 2), "p90_ms": round(p90 / 1000, 2),
                         "p99_ms": round(p99 / 1000, 2), "requests_per_s": round(n / (duration_us / 1e6), 1)}
            print(f"  wrk, {name}: {out[name]}", flush=True)
    return out


def feedback_rate(urls: list[str], requests: int) -> dict:
    """Events accepted durably per second by /feedback, one event and ten events a request, from 8
    concurrent clients (each request is acknowledged only once its events are fsynced)."""
    import uuid

    import httpx

    out = {}
    for per_request in (1, 10):
        pool = [httpx.Client(timeout=30) for _ in range(8)]

        def one(i: int) -> int:
            session = f"bench-{uuid.uuid4().hex[:10]}"
            events = [{"session_id": session, "event_type": "view", "item_id": f"bench-{i}-{j}", "surface": "recommend"}
                      for j in range(per_request)]
            response = pool[i % 8].post(f"{urls[i % len(urls)]}/feedback", json={"events": events})
            response.raise_for_status()
            return response.json()["accepted"]

        started = time.perf_counter()
        with ThreadPoolExecutor(8) as executor:
            accepted = sum(executor.map(one, range(requests)))
        wall = time.perf_counter() - started
        for c in pool:
            c.close()
        out[f"{per_request} event{'s' if per_request > 1 else ''} a request"] = {
            "requests": requests, "events": accepted, "events_per_s": round(accepted / wall), "seconds": round(wall, 1)}
        print(f"  /feedback, {per_request} per request, 8 clients: {accepted / wall:.0f} events/s", flush=True)
    return out


def counter_lag(settings, urls: list[str], samples: int) -> dict:
    """From the acknowledgement of an impression and a click to the click counted in the online store
    (what /search reads), per sample: a fresh session on an item id of its own each time."""
    import uuid

    import httpx

    from shoploop import features

    store = features.store(settings)

    def clicks(item: str) -> int:
        row = store.get_online_features(features=["item_counters:clicks_24h"], entity_rows=[{"item_id": item}]).to_dict()
        return row["clicks_24h"][0] or 0

    lags = []
    with httpx.Client(timeout=30) as client:
        for n in range(samples):
            # an item id of its own per sample: no count of an earlier run (or of the other stream backend,
            # whose counts the online store may still hold) can be mistaken for this click's
            item, session = f"lag-{uuid.uuid4().hex[:12]}", f"lag-{uuid.uuid4().hex[:10]}"
            events = [{"session_id": session, "event_type": kind, "item_id": item, "position": 1} for kind in ("impression", "click")]
            client.post(f"{urls[n % len(urls)]}/feedback", json={"events": events}).raise_for_status()
            acknowledged = time.perf_counter()
            while clicks(item) < 1 and time.perf_counter() - acknowledged < 10:
                time.sleep(0.005)
            lags.append(time.perf_counter() - acknowledged)
    out = percentiles(lags)
    print(f"  acknowledgement -> counter visible: {out}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=300, help="requests per in-process measurement")
    parser.add_argument("--requests", type=int, default=600, help="requests per HTTP measurement")
    args = parser.parse_args()

    from shoploop.models import registry
    from shoploop.pipeline import processes
    from shoploop.settings import get_settings

    settings = get_settings()
    if registry.champion(settings) is None:
        raise SystemExit(f"serving bench: no model serves in {settings.home}: run `make demo` first")
    texts = queries(settings)
    result = {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
              "calibration_s": calibration(),
              "in_process": in_process(settings, texts, args.repeats)}
    urls = [f"http://{settings.host}:{port}" for name, port in processes.replicas(settings)
            if processes.running(settings, name) is not None and processes.answers(f"http://{settings.host}:{port}/readyz")]
    if urls:
        workers = len([p for p in processes.tagged(settings, "service") if "worker" in " ".join(p.cmdline())])
        result["setup"] = (f"{len(urls)} replicas of " if len(urls) > 1 else "") + f"{workers} worker{'s' if workers > 1 else ''}, " + \
            ("embedded log" if settings.event_stream == "embedded" else "Redis stream") + \
            ("" if settings.online_store == "embedded" else ", Redis online store")
        result["http"] = over_http(urls, texts, args.requests)
        result["wrk"] = over_wrk(urls[0], texts)
        result["feedback"] = feedback_rate(urls, args.requests)
        result["counter_lag"] = counter_lag(settings, urls, 50)
    else:
        result["http"] = {"skipped": f"no service answers at {settings.host}:{settings.service_port} (start one with `shoploop deploy`)"}

    print(f"\n{'path':<28}{'lookup p50':>12}{'lookup p99':>12}{'search p50':>12}{'search p99':>12}   (ms, in process)")
    for name in result["in_process"]["lookup"]:
        lookup, search = result["in_process"]["lookup"][name], result["in_process"]["search"][name]
        print(f"{name:<28}{lookup['p50_ms']:>12}{lookup['p99_ms']:>12}{search['p50_ms']:>12}{search['p99_ms']:>12}")
    batching = result["in_process"]["encoder_batching"]
    print("\nquery encoder per query (ms): " + ", ".join(f"{k} {v['per_query_ms']}" for k, v in batching.items()))
    print(f"\n{'search, 8 threads':<28}{'searches/s':>12}{'p50':>12}{'p99':>12}")
    for name, row in result["in_process"]["search_under_load"].items():
        print(f"{name:<28}{row['searches_per_s']:>12}{row['p50_ms']:>12}{row['p99_ms']:>12}")
    if "skipped" not in result["http"]:
        print(f"\n{'/search over HTTP':<28}{'p50':>12}{'p99':>12}{'req/s':>12}")
        for name, row in result["http"].items():
            print(f"{name:<28}{row['p50_ms']:>12}{row['p99_ms']:>12}{row['requests_per_s']:>12}")
    if result.get("wrk"):
        print(f"\n{'/search from wrk':<28}{'p50':>12}{'p99':>12}{'req/s':>12}")
        for name, row in result["wrk"].items():
            print(f"{name:<28}{row['p50_ms']:>12}{row['p99_ms']:>12}{row['requests_per_s']:>12}")
    if "feedback" in result:
        print(f"\n{'/feedback (8 clients)':<28}{'events/s':>12}")
        for name, row in result["feedback"].items():
            print(f"{name:<28}{row['events_per_s']:>12}")
    if "counter_lag" in result:
        lag = result["counter_lag"]
        print(f"\nacknowledgement -> counter in the online store: p50 {lag['p50_ms']} ms, p99 {lag['p99_ms']} ms")
    out = ROOT / "bench" / "results" / "serving.json"
    saved = json.loads(out.read_text()) if out.exists() else {}
    if "setup" in result:  # keep the other setups' HTTP figures beside these
        by_setup = saved.get("http_by_setup", {})
        by_setup[result["setup"]] = {key: result[key] for key in ("measured_at", "calibration_s", "http", "wrk", "feedback", "counter_lag")}
        result["http_by_setup"] = by_setup
    out.write_text(json.dumps(result, indent=2))
    print(f"\nsaved {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
