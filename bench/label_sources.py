"""Search quality by what trains the model: the simulated shop's complete judgments with its click
logs, against its logs alone (the judgments withheld from training, kept for evaluation only: what
a real shop without human labels has).

Builds the default-scale shop once in its own home (SHOPLOOP_HOME, default .shoploop-bench/labels;
slates from the lexical ranker a shop has before any model), then trains and evaluates one version
per label source on the same held-out queries: nDCG@10 over the whole catalog against the
simulator's complete judgments, beside BM25, zero-shot MiniLM and random. Prints a table; saves
bench/results/label_sources.json.

    .venv/bin/python bench/label_sources.py [--sources both,logs]

A source not trained in a run keeps its last saved result, with the time it was measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("SHOPLOOP_HOME", str(ROOT / ".shoploop-bench" / "labels"))

from shoploop import steps  # noqa: E402
from shoploop.settings import Settings  # noqa: E402

RUN_DATE = date(2026, 11, 29)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", default="both,logs", help="label sources to train with, comma-separated")
    args = parser.parse_args()
    settings = Settings()
    timings: dict[str, float] = {}
    for name, step in (("simulate", lambda s, d: steps.simulate(s, d, "lexical")),
                       ("transform", lambda s, d: steps.transform(s, d, full_refresh=True)),
                       ("features", steps.feature_store)):
        started = time.perf_counter()
        step(settings, RUN_DATE)
        timings[name] = round(time.perf_counter() - started, 1)
        print(f"{name:<10} {timings[name]:>7.1f} s", flush=True)
    results = {}
    for source in args.sources.split(","):
        # each source from the base MiniLM, never from a champion this home may hold
        trained = settings.model_copy(update={"train_labels": source, "finetune_warm_steps": 0})
        started = time.perf_counter()
        report = steps.train(trained, RUN_DATE)
        timings[f"train_{source}"] = round(time.perf_counter() - started, 1)
        metrics = steps.evaluate(trained, RUN_DATE)
        results[source] = {"measured_at": time.strftime("%Y-%m-%dT%H:%M"), "labels": report["labels"], "train_rows": report["train_rows"],
                           "triplets": report["encoder"]["finetune"]["triplets"], "metrics": {
                               k: metrics[k] for k in ("n_queries", "model", "dense_finetuned", "bm25", "dense_zero_shot",
                                                       "random", "mrr", "recall@10")}}
        print(f"train {source:<6} {timings[f'train_{source}']:>7.1f} s, nDCG@10 {metrics['model']}", flush=True)

    out = ROOT / "bench" / "results" / "label_sources.json"
    # Sources not trained this run keep their last result (each says when it was measured).
    earlier = json.loads(out.read_text())["results"] if out.exists() else {}
    results = {**{s: r for s, r in earlier.items() if s not in results and "measured_at" in r}, **results}
    base = next(iter(results.values()))["metrics"]
    print(f"\nsearch quality by label source, {base['n_queries']} held-out queries (nDCG@10, complete judgments)")
    print(f"{'system':<44}{'nDCG@10':>9}{'gain over BM25':>16}")
    rows = [(f"model trained on {s} ({r['labels']['mode']})", r["metrics"]["model"]) for s, r in results.items()]
    rows += [("BM25", base["bm25"]), ("zero-shot MiniLM", base["dense_zero_shot"]), ("random", base["random"])]
    for name, value in rows:
        print(f"{name:<44}{value:>9.4f}{value - base['bm25']:>+16.4f}")
    if {"both", "logs"} <= set(results):
        gain = (results["logs"]["metrics"]["model"] - base["bm25"]) / (results["both"]["metrics"]["model"] - base["bm25"])
        print(f"\nlogs alone keep {gain:.0%} of the full-judgment model's gain over BM25")
    out.write_text(json.dumps({"run_date": RUN_DATE.isoformat(), "scale": {
        "items": settings.n_items, "users": settings.n_users, "days": settings.n_days,
        "sessions_per_day": settings.sessions_per_day, "seed": settings.seed}, "results": results, "seconds": timings,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform()}}, indent=2))
    print(f"saved {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
