"""Search quality by what trains the model: the simulated shop's complete judgments with its click
logs, against its logs alone (the judgments withheld from training, kept for evaluation only: what
a real shop without human labels has).

Builds the default-scale shop once in its own home (SHOPLOOP_HOME, default .shoploop-bench/labels;
slates from the lexical ranker a shop has before any model), then trains and evaluates one version
per label source on the same held-out queries: nDCG@10 over the whole catalog against the
simulator's complete judgments, beside BM25, zero-shot MiniLM and random. Prints a table; saves
bench/results/label_sources.json.

    .venv/bin/python bench/label_sources.py [--sources both,logs]

``logs-loop``: logs alone with the loop turned once, in a home of its own (the same shop and the same
number of sessions): the first half of the window's shoppers meet the lexical ranker, a logs-only model
trained on their logs is promoted and ranks the second half's slates, then a version is trained on both
halves' logs (what a shop that learns from its own logs has after a week in front of shoppers).

A source not trained in a run keeps its last saved result, with the time it was measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("SHOPLOOP_HOME", str(ROOT / ".shoploop-bench" / "labels"))

from shoploop.pipeline import steps  # noqa: E402
from shoploop.settings import Settings  # noqa: E402

RUN_DATE = date(2026, 11, 29)


METRICS = ("n_queries", "model", "dense_finetuned", "bm25", "dense_zero_shot", "random", "mrr", "recall@10")


def loop_turn(settings: Settings, timings: dict) -> dict:
    """The ``logs-loop`` source (see the module's docstring): its result, the first turn's model on the
    same held-out queries beside it."""
    home = settings.home.with_name(settings.home.name + "-loop")
    shutil.rmtree(home, ignore_errors=True)
    half = settings.n_days // 2
    turn = RUN_DATE - timedelta(days=half)
    whole = settings.model_copy(update={"home": home, "train_labels": "logs"})
    first = whole.model_copy(update={"n_days": settings.n_days - half})
    for name, step in (("loop_simulate_first", lambda: steps.simulate(first, turn, "lexical")),
                       ("loop_transform_first", lambda: steps.transform(first, turn, full_refresh=True)),
                       ("loop_features_first", lambda: steps.feature_store(first, turn)),
                       ("loop_train_first", lambda: steps.train(first, turn)),
                       ("loop_evaluate_first", lambda: steps.evaluate(first, turn)),
                       ("loop_register_first", lambda: steps.register(first, turn)),
                       # the second half of the window: its shoppers' slates from the promoted model
                       ("loop_simulate_second", lambda: steps.simulate(whole, RUN_DATE, "champion")),
                       ("loop_transform", lambda: steps.transform(whole, RUN_DATE, full_refresh=True)),
                       ("loop_features", lambda: steps.feature_store(whole, RUN_DATE))):
        started = time.perf_counter()
        done = step()
        timings[name] = round(time.perf_counter() - started, 1)
        said = f", {done['event_days']} days of sessions, slates from {done['logging_policy']}" if "simulate" in name else ""
        print(f"{name:<22} {timings[name]:>7.1f} s{said}", flush=True)
    started = time.perf_counter()
    report = steps.train(whole, RUN_DATE)
    timings["train_logs-loop"] = round(time.perf_counter() - started, 1)
    metrics = steps.evaluate(whole, RUN_DATE)
    return {"measured_at": time.strftime("%Y-%m-%dT%H:%M"), "labels": report["labels"], "train_rows": report["train_rows"],
            "triplets": report["encoder"]["finetune"]["triplets"], "warm_start": report["encoder"]["finetune"]["warm_start"],
            "first_turn_model": metrics["champion"]["model"], "metrics": {k: metrics[k] for k in METRICS}}


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
        if source == "logs-loop":
            results[source] = loop_turn(settings, timings)
            print(f"train {source} {timings['train_logs-loop']:>7.1f} s, nDCG@10 {results[source]['metrics']['model']}", flush=True)
            continue
        # each source from the base MiniLM, never from a champion this home may hold
        trained = settings.model_copy(update={"train_labels": source, "finetune_warm_steps": 0})
        started = time.perf_counter()
        report = steps.train(trained, RUN_DATE)
        timings[f"train_{source}"] = round(time.perf_counter() - started, 1)
        metrics = steps.evaluate(trained, RUN_DATE)
        results[source] = {"measured_at": time.strftime("%Y-%m-%dT%H:%M"), "labels": report["labels"], "train_rows": report["train_rows"],
                           "triplets": report["encoder"]["finetune"]["triplets"], "metrics": {k: metrics[k] for k in METRICS}}
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
    if "logs-loop" in results:
        print(f"{'logs-loop: its first turn (half the logs)':<44}{results['logs-loop']['first_turn_model']:>9.4f}"
              f"{results['logs-loop']['first_turn_model'] - base['bm25']:>+16.4f}")
    for source in ("logs", "logs-loop"):
        if {"both", source} <= set(results):
            gain = (results[source]["metrics"]["model"] - base["bm25"]) / (results["both"]["metrics"]["model"] - base["bm25"])
            print(f"\n{source}: logs alone keep {gain:.0%} of the full-judgment model's gain over BM25")
    out.write_text(json.dumps({"run_date": RUN_DATE.isoformat(), "scale": {
        "items": settings.n_items, "users": settings.n_users, "days": settings.n_days,
        "sessions_per_day": settings.sessions_per_day, "seed": settings.seed}, "results": results, "seconds": timings,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform()}}, indent=2))
    print(f"saved {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
