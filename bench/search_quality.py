"""Search quality and step timings at default scale: nDCG@10 of the model (fine-tuned hybrid + seed
ranker), BM25 (as typed and spelling-corrected), dense MiniLM zero-shot and fine-tuned, random; MRR,
recall@10, recall@100 per retriever; the served recommender against SASRec alone, taste vectors and
popularity on the shoppers' held-out last items.

Builds a fresh shop in its own home (SHOPLOOP_HOME, default .shoploop-bench), runs the loop's
steps through dbt, Feast and training, evaluates on the held-out queries, prints a table and
saves bench/results/search_quality.json.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("SHOPLOOP_HOME", str(ROOT / ".shoploop-bench"))

from shoploop.pipeline import steps  # noqa: E402
from shoploop.settings import Settings  # noqa: E402

RUN_DATE = date(2026, 11, 29)


def main() -> None:
    settings = Settings()
    timings = {}
    # The lexical logging policy: the bench measures a shop's first model, whatever the home holds.
    for name, step in [("simulate", lambda s, d: steps.simulate(s, d, "lexical")), ("transform", steps.transform),
                       ("features", steps.feature_store), ("train", steps.train), ("compress", steps.compress),
                       ("evaluate", steps.evaluate)]:
        started = time.perf_counter()
        result = step(settings, RUN_DATE)
        timings[name] = round(time.perf_counter() - started, 1)
        if name == "compress":
            compression = result
    metrics = result
    scale = {"items": settings.n_items, "users": settings.n_users, "days": settings.n_days,
             "sessions_per_day": settings.sessions_per_day, "seed": settings.seed}
    rows = [("model (fine-tuned hybrid + ranker)", metrics["model"]),
            ("fine-tuned MiniLM (dense ANN)", metrics["dense_finetuned"]),
            ("zero-shot MiniLM (dense)", metrics["dense_zero_shot"]), ("BM25", metrics["bm25"]),
            ("BM25, spelling corrected", metrics["bm25_spelling_corrected"]), ("random", metrics["random"])]
    print(f"\nsearch quality, {metrics['n_queries']} held-out queries, scale {scale}")
    print(f"{'system':<34}{metrics['metric']:>10}")
    for name, value in rows:
        print(f"{name:<34}{value:>10.4f}")
    print(f"\nmodel MRR {metrics['mrr']}, recall@10 {metrics['recall@10']}; recall@100 of candidates: "
          f"BM25 {metrics['recall@100_bm25']}, dense ANN {metrics['recall@100_dense']}, hybrid {metrics['recall@100_hybrid']}")
    print(f"\n{'query type':<16}{'queries':>8}{'model':>8}{'BM25':>8}{'BM25 sc':>9}{'zero-shot':>10}")
    for kind, v in metrics["by_query_type"].items():
        print(f"{kind:<16}{v['n_queries']:>8}{v['model']:>8.4f}{v['bm25']:>8.4f}{v['bm25_spelling_corrected']:>9.4f}"
              f"{v['dense_zero_shot']:>10.4f}")
    rec = metrics["recommend"]
    if "served" in rec:
        print(f"\nrecommendation, {rec['rows']} shoppers' held-out last items")
        print(f"{'system':<16}{'recall@10':>10}{'ndcg@10':>9}{'tail recall@10':>16}")
        for name in ("served", "sasrec", "taste_vector", "popularity"):
            tail = rec["recall@10_tail_targets"].get(name, "")
            print(f"{name:<16}{rec[name]['recall@10']:>10}{rec[name]['ndcg@10']:>9}{tail:>16}")
    print(f"\ncoverage@10 {metrics['coverage@10']}, long-tail share@10 {metrics['long_tail_share@10']}, "
          f"novelty@10 {metrics['novelty@10']}, recall@10 of head items {metrics.get('recall@10_head_items')}, "
          f"of tail items {metrics.get('recall@10_tail_items')}")
    print(f"\n{'query encoder variant':<22}{'MB':>8}{'ms/query':>10}{'nDCG@10':>9}{'smaller':>9}{'faster':>8}{'loss':>8}")
    for r in compression["rows"]:
        print(f"{r['variant']:<22}{r['size_mb']:>8}{r['latency_ms']:>10}{r['ndcg@10']:>9}{r['shrink']:>9}"
              f"{r['speedup']:>8}{r['quality_loss']:>8.2%}")
    print(f"promoted: {compression['promoted']} ({compression['reason']})")
    print("\nstep timings (s): " + ", ".join(f"{k} {v}" for k, v in timings.items()))
    out = ROOT / "bench" / "results" / "search_quality.json"
    (ROOT / "bench" / "results" / "compression.json").write_text(json.dumps(compression, indent=2))
    out.write_text(json.dumps({"run_date": RUN_DATE.isoformat(), "scale": scale, "metrics": metrics,
                               "seconds": timings, "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                                                               "platform": platform.platform()}}, indent=2))
    print(f"saved {out.relative_to(ROOT)} and bench/results/compression.json")


if __name__ == "__main__":
    main()
