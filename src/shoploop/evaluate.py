"""Offline evaluation on held-out queries: nDCG@10 of the model against BM25, zero-shot dense and random.

Queries are split by a hash of their id, so the split is stable across runs and data refreshes:
a held-out query never trains any version of the model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from shoploop.predict import SearchEngine

HELDOUT_SHARE = 5  # one query in five is held out


def is_heldout(query_id: str) -> bool:
    return int(hashlib.md5(query_id.encode()).hexdigest()[:8], 16) % HELDOUT_SHARE == 0


def ndcg_at_k(ranked_item_ids: list[str], grades: dict[str, int], k: int = 10) -> float:
    """nDCG with exponential gain 2^grade - 1; unjudged items count as irrelevant."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    gains = np.array([2 ** grades.get(i, 0) - 1 for i in ranked_item_ids[:k]], dtype=float)
    ideal = np.sort(np.array([2 ** g - 1 for g in grades.values()], dtype=float))[::-1][:k]
    idcg = float((ideal * discounts[: len(ideal)]).sum())
    return float((gains * discounts[: len(gains)]).sum() / idcg) if idcg > 0 else 0.0


def evaluate_search(engine: SearchEngine, judgments: pd.DataFrame, k: int = 10, seed: int = 7) -> dict:
    """Mean nDCG@k over the held-out queries in ``judgments`` for the model and its baselines."""
    test = judgments[judgments["query_id"].map(is_heldout)]
    item_ids = np.array(engine.item_ids)
    emb = engine.bundle.item_embeddings
    rng = np.random.default_rng(seed)
    per_system: dict[str, list[float]] = {"model": [], "bm25": [], "dense_zero_shot": [], "random": []}
    for (query_id, query_text), rows in test.groupby(["query_id", "query_text"]):
        grades = dict(zip(rows["item_id"], rows["grade"]))
        if max(grades.values()) == 0:
            continue
        ranked = {
            "model": list(item_ids[engine.search_rows(query_text, k)[0]]),
            "bm25": list(item_ids[np.argsort(-engine.bundle.lexical.scores(query_text), kind="stable")[:k]]),
            "dense_zero_shot": list(item_ids[np.argsort(-(emb @ engine.encoder.encode([query_text])[0]))[:k]]),
            "random": list(rng.choice(item_ids, size=k, replace=False)),
        }
        for name, items in ranked.items():
            per_system[name].append(ndcg_at_k(items, grades, k))
    return {
        "metric": f"ndcg@{k}",
        "n_queries": len(per_system["model"]),
        **{name: round(float(np.mean(v)), 4) for name, v in per_system.items()},
    }


def save_metrics(metrics: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True))
