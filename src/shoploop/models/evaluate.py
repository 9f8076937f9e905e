"""Offline evaluation on held-out queries: nDCG@10 of the model against BM25 (as typed, and after
the model's spelling correction), dense retrieval (zero-shot and fine-tuned) and random; MRR, recall@10 and each retriever's recall@100.

Queries are split by a hash of their id, so the split is stable across runs and data refreshes:
a held-out query never trains any version of the model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from shoploop.models.encoder import RememberingEncoder, TextEncoder, base_vectors
from shoploop.pipeline.progress import bar
from shoploop.serving.predict import SearchEngine, scaled_bm25
from shoploop.settings import Settings

HELDOUT_SHARE = 5  # one query in five is held out


def is_heldout(query_id: str) -> bool:
    return int(hashlib.md5(query_id.encode()).hexdigest()[:8], 16) % HELDOUT_SHARE == 0


def ndcg_at_k(ranked_item_ids: list[str], grades: dict[str, float], k: int = 10) -> float:
    """nDCG with exponential gain 2^grade - 1; unjudged items count as irrelevant."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    gains = np.array([2 ** grades.get(i, 0) - 1 for i in ranked_item_ids[:k]], dtype=float)
    ideal = np.sort(np.array([2 ** g - 1 for g in grades.values()], dtype=float))[::-1][:k]
    idcg = float((ideal * discounts[: len(ideal)]).sum())
    return float((gains * discounts[: len(gains)]).sum() / idcg) if idcg > 0 else 0.0


def click_ndcg(clicked_positions) -> float:
    """Online nDCG of one slate from its clicks: the clicked positions (1-based) against the same number
    of clicks at the top. 1.0 when every click is above every unclicked hit."""
    at = np.sort(np.asarray(clicked_positions, dtype=float))
    if not len(at):
        raise ValueError("click_ndcg needs at least one clicked position")
    return float((1 / np.log2(at + 1)).sum() / (1 / np.log2(np.arange(len(at)) + 2)).sum())


def reciprocal_rank(ranked_item_ids: list[str], grades: dict[str, float], min_grade: int = 3) -> float:
    for rank, item in enumerate(ranked_item_ids, 1):
        if grades.get(item, 0) >= min_grade:
            return 1.0 / rank
    return 0.0


def recall(ranked_item_ids, grades: dict[str, float], min_grade: int = 2) -> float:
    """Share of the relevant items (exact or substitute) that the ranking holds."""
    relevant = {i for i, g in grades.items() if g >= min_grade}
    return len(relevant & set(ranked_item_ids)) / len(relevant) if relevant else 0.0


HEAD_SHARE = 0.2  # the most popular fifth of the catalog is the head; the rest is the long tail


def evaluate_search(engine: SearchEngine, judgments: pd.DataFrame, item_text: list[str], k: int = 10,
                    seed: int = 7, candidates: int = 100, query_types: dict[str, str] | None = None,
                    popularity: np.ndarray | None = None, zero_shot: RememberingEncoder | None = None) -> dict:
    """Mean nDCG@k over the held-out queries for the model and its baselines, plus the model's MRR
    and recall@k, and recall@candidates of each retriever the ranker could sit behind; nDCG@k per
    query type (when ``query_types`` maps query ids to one); and, by item popularity (per bundle
    row): catalog coverage, long-tail share and novelty of the model's top k, and its recall@k of
    relevant head and tail items.

    item_text: the catalog's text in bundle row order (the zero-shot baseline encodes it); ``zero_shot``:
    the baseline's encoder (``zero_shot_baseline``; None: a new one)."""
    from shoploop.models.retrieval import lexical_ranking, top_k

    test = judgments[judgments["query_id"].map(is_heldout)]
    item_ids = np.array(engine.item_ids)
    zero_shot = zero_shot or RememberingEncoder(TextEncoder())
    zero_shot.remember(test["query_text"].unique().tolist())
    zero_shot_items = zero_shot.encode(item_text)
    rng = np.random.default_rng(seed)
    ndcg: dict[str, list[float]] = {"model": [], "bm25": [], "bm25_spelling_corrected": [], "dense_zero_shot": [],
                                    "dense_finetuned": [], "random": []}
    extra: dict[str, list[float]] = {"mrr": [], f"recall@{k}": [], f"recall@{candidates}_bm25": [],
                                     f"recall@{candidates}_dense": [], f"recall@{candidates}_hybrid": []}
    popularity = np.zeros(len(item_ids)) if popularity is None else np.nan_to_num(popularity)
    tail = popularity < np.quantile(popularity, 1 - HEAD_SHARE) if popularity.any() else np.ones(len(item_ids), bool)
    is_tail = dict(zip(item_ids, tail))
    share = (popularity + 1) / (popularity + 1).sum()
    by_type: dict[str, dict[str, list[float]]] = {}
    shown, band = [], {"head": [], "tail": []}
    groups = test.groupby(["query_id", "query_text"])
    for (query_id, query_text), rows in bar(groups, total=groups.ngroups, desc="evaluating search", unit="query"):
        grades = dict(zip(rows["item_id"], rows["grade"]))
        if max(grades.values()) == 0:
            continue
        pool, h_query, bm25 = engine.candidates(query_text, candidates)
        model_rows = engine.search_rows(query_text, k)[0]
        model = list(item_ids[model_rows])
        shown.append(model_rows)
        for name, in_band in (("head", False), ("tail", True)):
            relevant = {i: g for i, g in grades.items() if is_tail.get(i, True) == in_band}
            if any(g >= 2 for g in relevant.values()):
                band[name].append(recall(model, relevant))
        ranked = {
            "model": model,
            "bm25": list(item_ids[top_k(engine.bundle.lexical.scores(query_text), k)]),
            "bm25_spelling_corrected": list(item_ids[top_k(engine.bundle.lexical.scores(
                engine.bundle.lexical.correct(query_text)), k)]),
            "dense_zero_shot": list(item_ids[top_k(zero_shot_items @ zero_shot.encode([query_text])[0], k)]),
            "dense_finetuned": list(item_ids[engine.bundle.dense.search(h_query, k)]),
            "random": list(rng.choice(item_ids, size=k, replace=False)),
        }
        for name, items in ranked.items():
            ndcg[name].append(ndcg_at_k(items, grades, k))
            if query_types and name in ("model", "bm25", "bm25_spelling_corrected", "dense_zero_shot"):
                by_type.setdefault(query_types.get(query_id, "unknown"), {}).setdefault(name, []).append(ndcg[name][-1])
        extra["mrr"].append(reciprocal_rank(model, grades))
        extra[f"recall@{k}"].append(recall(model, grades))
        extra[f"recall@{candidates}_bm25"].append(recall(item_ids[lexical_ranking(bm25, candidates)], grades))
        extra[f"recall@{candidates}_dense"].append(recall(item_ids[engine.bundle.dense.search(h_query, candidates)], grades))
        extra[f"recall@{candidates}_hybrid"].append(recall(item_ids[pool], grades))
    top = np.concatenate(shown) if shown else np.zeros(0, int)
    return {
        "metric": f"ndcg@{k}",
        "n_queries": len(ndcg["model"]),
        **{name: round(float(np.mean(v)), 4) for name, v in ndcg.items()},
        **{name: round(float(np.mean(v)), 4) for name, v in extra.items()},
        f"coverage@{k}": round(len(np.unique(top)) / len(item_ids), 4),
        f"long_tail_share@{k}": round(float(tail[top].mean()), 4) if len(top) else 0.0,
        f"novelty@{k}": round(float(-np.log2(share[top]).mean()), 3) if len(top) else 0.0,
        **{f"recall@{k}_{name}_items": round(float(np.mean(v)), 4) for name, v in band.items() if v},
        "by_query_type": {t: {"n_queries": len(v["model"]), **{n: round(float(np.mean(x)), 4) for n, x in v.items()}}
                          for t, v in sorted(by_type.items())},
    }


def zero_shot_baseline(item_text: list[str], cache: Path) -> RememberingEncoder:
    """The zero-shot baseline's encoder (base MiniLM), the catalog's vectors read from the home's cache
    (``base_vectors``) rather than encoded again; one for every evaluation of a version."""
    encoder = RememberingEncoder(TextEncoder())
    encoder.learn(item_text, base_vectors(item_text, cache))
    return encoder


def encode_heldout_once(engine: SearchEngine, queries: pd.DataFrame) -> None:
    """The engine's query encoder answers every held-out query (query_id, query_text rows, judged or
    logged) from one batch, encoded as served (spelling corrected): the systems and metrics of an
    evaluation ask for each one again and again."""
    texts = queries.loc[queries["query_id"].map(is_heldout).astype(bool), "query_text"].unique()
    engine.encoder = RememberingEncoder(engine.encoder, [engine.bundle.lexical.correct(t) for t in texts])


POOL_SYSTEMS = ("model", "bm25", "dense_zero_shot", "dense_finetuned", "random")


def pool_scores(engine: SearchEngine, query_text: str, rows: np.ndarray, zero_shot, zero_shot_items: np.ndarray,
                rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each system's scores of the given item rows (a query's judged pool) for the query: the served
    ranker (on the spelling-corrected query, as served), BM25 as typed, zero-shot and fine-tuned
    MiniLM cosine, and a random order. zero_shot_items: the zero-shot encoder's vectors of ``rows``."""
    from shoploop.data.text import price_bound

    corrected = engine.bundle.lexical.correct(query_text)
    h_query = engine.encoder.encode([corrected])[0]
    bm25 = scaled_bm25(engine.bundle.lexical.scores(corrected))
    return {
        "model": engine.rank(h_query, rows, bm25, budget=price_bound(query_text), query=corrected),
        "bm25": engine.bundle.lexical.scores(query_text)[rows],
        "dense_zero_shot": zero_shot_items @ zero_shot.encode([query_text])[0],
        "dense_finetuned": engine.bundle.item_embeddings[rows] @ h_query,
        "random": rng.random(len(rows)),
    }


def spearman(scores: np.ndarray, grades: np.ndarray) -> float | None:
    """Rank correlation of scores with grades; None when either is constant (undefined)."""
    from scipy.stats import spearmanr

    if len(np.unique(grades)) < 2 or len(np.unique(scores)) < 2:
        return None
    return float(spearmanr(scores, grades).statistic)


def evaluate_pool(engine: SearchEngine, judgments: pd.DataFrame, item_text: list[str], k: int = 10,
                  seed: int = 7, zero_shot: RememberingEncoder | None = None) -> dict:
    """Sparse labels (unjudged items unknown, not irrelevant): each held-out query's judged pool is
    ranked by every system; mean pool nDCG@k and mean per-query Spearman correlation of scores with
    grades (over queries whose grades differ)."""
    row_of = {item_id: r for r, item_id in enumerate(engine.item_ids)}
    test = judgments[judgments["query_id"].map(is_heldout) & judgments["item_id"].isin(row_of)]
    zero_shot = zero_shot or RememberingEncoder(TextEncoder())
    zero_shot.remember(test["query_text"].unique().tolist())
    pool_rows = np.array(sorted(set(test["item_id"].map(row_of))), dtype=int)
    zero_shot_of = dict(zip(pool_rows, zero_shot.encode([item_text[r] for r in pool_rows])))
    rng = np.random.default_rng(seed)
    ndcg: dict[str, list[float]] = {name: [] for name in POOL_SYSTEMS}
    rho: dict[str, list[float]] = {name: [] for name in POOL_SYSTEMS}
    for (_, query_text), pool in test.groupby(["query_id", "query_text"]):
        if pool["grade"].max() == 0:
            continue
        rows = pool["item_id"].map(row_of).to_numpy()
        grades = pool["grade"].to_numpy()
        scores = pool_scores(engine, query_text, rows, zero_shot, np.stack([zero_shot_of[r] for r in rows]), rng)
        for name, score in scores.items():
            order = np.argsort(-score, kind="stable")
            ndcg[name].append(ndcg_at_k(list(rows[order]), dict(zip(rows, grades)), k))
            if (r := spearman(score, grades)) is not None:
                rho[name].append(r)
    return {
        "metric": f"pool_ndcg@{k}", "n_queries": len(ndcg["model"]),
        **{name: round(float(np.mean(v)), 4) if v else None for name, v in ndcg.items()},
        "spearman": {name: round(float(np.mean(v)), 4) if v else None for name, v in rho.items()},
        "spearman_queries": len(rho["model"]),
    }


def evaluate_recommend(engine: SearchEngine, test: tuple[list[str], list[list[int]], list[int]],
                       popularity: np.ndarray, k: int = 10) -> dict:
    """Next-item recommendation on the shoppers' held-out last items (leave-last-out, never trained
    on): Recall@k and NDCG@k of the served recommender (candidates from every source, re-ranked),
    SASRec alone, item-to-item co-occurrence alone, the taste-vector nearest neighbours and
    popularity; recall@k of long-tail targets; for the served one also the long-tail share of what
    it shows, and catalog coverage."""
    from shoploop.models.sequence import ranking_metrics
    from shoploop.serving.predict import taste

    users, histories, targets = test
    if engine.bundle.sasrec is None or not targets:
        return {"rows": len(targets), "note": "no SASRec in this version (too few histories)"}
    n = len(engine.item_ids)
    popularity = np.nan_to_num(popularity)
    tail = popularity < np.quantile(popularity, 1 - HEAD_SHARE)
    served = np.full((len(targets), n), -np.inf)
    sasrec = engine.bundle.sasrec.scores(histories)
    tastes = np.stack([taste(engine.bundle.item_embeddings, h) for h in histories]) @ engine.bundle.item_embeddings.T
    popular = np.tile(popularity.astype(float), (len(targets), 1))
    systems = {"served": served, "sasrec": sasrec}
    if engine.bundle.cooccurrence is not None:  # versions trained before it have none
        systems["cooccurrence"] = engine.bundle.cooccurrence.scores(histories)
    systems.update(taste_vector=tastes, popularity=popular)
    for r, (user, history) in enumerate(zip(users, histories)):
        rows, scores = engine.recommend_rows(history, engine.user_features(user), k)
        served[r, rows] = scores
        for name, scored in systems.items():
            if name != "served":
                scored[r, history] = -np.inf  # nobody is recommended what they already have
    result = {name: ranking_metrics(scores, targets, k) for name, scores in systems.items()}
    shown = np.argsort(-served, axis=1)[:, :k]
    tail_rows = np.array([tail[t] for t in targets])
    return {
        "rows": len(targets), "metric": f"recall@{k}, ndcg@{k}",
        **{name: {m: v for m, v in metrics.items() if m != "rows"} for name, metrics in result.items()},
        "tail_target_rows": int(tail_rows.sum()),
        f"recall@{k}_tail_targets": {name: ranking_metrics(scores[tail_rows], list(np.array(targets)[tail_rows]), k)[f"recall@{k}"]
                                     for name, scores in systems.items()}
        if tail_rows.any() else {},
        f"long_tail_share@{k}": round(float(tail[shown].mean()), 4),
        f"coverage@{k}": round(len(np.unique(shown)) / n, 4),
    }


def query_ndcg(engine: SearchEngine, judgments: pd.DataFrame, k: int = 10) -> pd.Series:
    """nDCG@k of the engine's served top k over the catalog, per held-out query_id (complete judgments)."""
    test = judgments[judgments["query_id"].map(is_heldout)]
    item_ids = np.array(engine.item_ids)
    return pd.Series({query_id: ndcg_at_k(list(item_ids[engine.search_rows(text, k)[0]]),
                                          dict(zip(rows["item_id"], rows["grade"])), k)
                      for (query_id, text), rows in test.groupby(["query_id", "query_text"]) if rows["grade"].max() > 0},
                     dtype=float)


def traffic_weighted(scores: pd.Series, traffic: pd.Series) -> float | None:
    """Per-query scores averaged with each query weighted by its searches (``traffic``: searches per
    query_id, from the logs), as shoppers meet it; None where none of the queries was searched."""
    weight = traffic.reindex(scores.index).fillna(0.0).to_numpy(float)
    return round(float(weight @ scores.to_numpy() / weight.sum()), 4) if weight.sum() > 0 else None


def model_ndcg(engine: SearchEngine, judgments: pd.DataFrame, k: int = 10, complete: bool = True) -> float:
    """Mean nDCG@k of the engine alone on the held-out queries (what compression must preserve and a
    challenger must not lose): of its served top k over the catalog when judgments are complete, of its
    order of each query's judged pool when they are sparse."""
    if complete:
        return round(float(query_ndcg(engine, judgments, k).mean()), 4)
    test = judgments[judgments["query_id"].map(is_heldout)]
    from shoploop.data.text import price_bound

    row_of = {item_id: r for r, item_id in enumerate(engine.item_ids)}
    test = test[test["item_id"].isin(row_of)]
    texts = test["query_text"].unique().tolist()
    vectors = dict(zip(texts, engine.encoder.encode([engine.bundle.lexical.correct(t) for t in texts])))
    scores = []
    for (_, text), pool in test.groupby(["query_id", "query_text"]):
        if pool["grade"].max() > 0:
            rows = pool["item_id"].map(row_of).to_numpy()
            corrected = engine.bundle.lexical.correct(text)
            bm25 = scaled_bm25(engine.bundle.lexical.scores(corrected))
            order = np.argsort(-engine.rank(vectors[text], rows, bm25, budget=price_bound(text), query=corrected), kind="stable")
            scores.append(ndcg_at_k(list(rows[order]), dict(zip(rows, pool["grade"])), k))
    return round(float(np.mean(scores)), 4)


def save_metrics(metrics: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True))


def offline_engine(settings: Settings, bundle_dir: Path):
    """The serving code path over point-in-time features as of the label date (for evaluation)."""
    from shoploop.models.bundle import ModelBundle
    from shoploop.models.train import (
        load_training_data,
        point_in_time_features,
        user_log_prices,
    )
    from shoploop.serving.predict import frame_lookup

    bundle = ModelBundle.load(bundle_dir)
    data = load_training_data(settings)
    pit = point_in_time_features(settings, bundle.catalog["item_id"].tolist(), data.as_of)
    prices = user_log_prices(settings, list(bundle.user_sequences), data.as_of)
    return SearchEngine(bundle, bundle.text_encoder(), frame_lookup(pit),
                        lambda user: prices.get(user, float("nan"))), data
