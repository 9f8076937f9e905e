"""Next-item recommendation on real data: what `/recommend` serves, beside SASRec alone,
item-to-item co-occurrence alone and popularity.

Data: ../shared/datasets/amazon_office_products. Its training split is not included, so every
model learns from the `valid` file (histories and the next item) and is evaluated on every row of
the `test` file, ranking all 3,459 items. "served" is the product's own path: a ModelBundle with
SASRec (text-initialised), co-occurrence and the re-ranker, asked through
SearchEngine.recommend_rows as the service asks it: candidates pooled from SASRec, co-occurrence,
the taste vector's text neighbours and popularity, re-ranked. The data set has no prices, search
judgments or shop counters, so the seed-ranker and price-gap features are 0 here.

Validation as a shop's training does it (shoploop.models.recommender): for the shoppers in the
product's validation slice (a hash of the user id, one in six) their last training row is held
out; SASRec stops early on those rows and the re-ranker learns on them. Every other training row
trains SASRec and co-occurrence, so the held-out next items are as unseen by every source as test
items are. Test rows train nothing. The co-occurrence and popularity baselines count every
training row, held-out ones included: they are reported at their strongest.

Every system is scored as the product serves: never an item already in the shopper's history
(2.4% of test targets are repeats, out of every system's reach). Long-tail rows (the next item is
outside the 20% most frequent items in training) are reported separately, and an ablation shows
what the text initialisation buys: the same SASRec with randomly initialised item vectors. Prints
a table; saves bench/results/recommend_quality.json.
"""

from __future__ import annotations

import ast
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "amazon_office_products"
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def load(split: str) -> tuple[list[list[int]], list[int]]:
    frame = pd.read_csv(DATA / f"Office_Products.{split}.csv.gz")
    return [list(ast.literal_eval(h)) for h in frame["history_item_id"]], frame["item_id"].astype(int).tolist()


def item_texts() -> list[str]:
    """Title, brand, categories and the cleaned head of the description, in item-index order."""
    from shoploop.data.adapters import unisrec
    from shoploop.data.text import clean_text

    items = unisrec(DATA, datetime(2026, 11, 29)).tables["items"]
    items = items.assign(index=items["item_id"].astype(int)).set_index("index").sort_index()
    n = int(items.index.max()) + 1
    texts = [""] * n
    for i, row in items.iterrows():
        texts[i] = " | ".join(filter(None, [clean_text(row["title"]), row["brand"], row["category_path"],
                                            (clean_text(row["description"]) or "")[:400]]))
    return texts


def validation_split(users: list[str], histories: list[list[int]], targets: list[int]):
    """(training rows, validation rows as (users, histories, targets)): the last row of each
    validation-slice shopper is held out (rows are in time order within a shopper)."""
    from shoploop.models.recommender import in_validation

    last = {user: r for r, user in enumerate(users)}
    held = {r for user, r in last.items() if in_validation(user)}
    keep = [r for r in range(len(targets)) if r not in held]
    held = sorted(held)
    return (([histories[r] for r in keep], [targets[r] for r in keep]),
            ([users[r] for r in held], [histories[r] for r in held], [targets[r] for r in held]))


def served_engine(texts: list[str], embeddings: np.ndarray, sasrec, cooccurrence):
    """The product's SearchEngine over a recommendation-only bundle of this catalog."""
    from shoploop.models.bundle import ModelBundle
    from shoploop.models.ranker import ITEM_FEATURES
    from shoploop.models.retrieval import DenseIndex, LexicalIndex
    from shoploop.serving.predict import SearchEngine, frame_lookup

    item_ids = [str(i) for i in range(len(texts))]
    catalog = pd.DataFrame({"item_id": item_ids, "title": texts, "brand": None, "category_path": "", "price": np.nan})
    bundle = ModelBundle(ranker=None, catalog=catalog, item_embeddings=embeddings, lexical=LexicalIndex.build(texts),
                         user_sequences={}, popular=np.argsort(-cooccurrence.popularity, kind="stable")[:200],
                         dense=DenseIndex.build(embeddings), sasrec=sasrec, cooccurrence=cooccurrence)
    no_features = pd.DataFrame(np.nan, index=item_ids, columns=ITEM_FEATURES)  # no Feast store for this data
    return SearchEngine(bundle, None, frame_lookup(no_features))


def main() -> None:
    import torch

    from shoploop.models.encoder import TextEncoder
    from shoploop.models.recommender import RERANK_FEATURES, fit_reranker
    from shoploop.models.sequence import (
        CoOccurrence,
        SASRec,
        SASRecConfig,
        popularity_scores,
        ranking_metrics,
        top_k_coverage,
    )

    bench_started = time.perf_counter()
    train_h, train_t = load("valid")
    train_users = pd.read_csv(DATA / "Office_Products.valid.csv.gz", usecols=["user_id"])["user_id"].tolist()
    test_h, test_t = load("test")
    texts = item_texts()
    n_items = len(texts)
    started = time.perf_counter()
    text_emb = TextEncoder().encode(texts)
    encode_s = time.perf_counter() - started

    counts = popularity_scores(train_h, train_t, n_items)
    head = set(np.argsort(-counts)[: n_items // 5].tolist())
    tail_rows = np.array([t not in head for t in test_t])
    (fit_h, fit_t), validation = validation_split(train_users, train_h, train_t)

    systems, seconds = {}, {}
    started = time.perf_counter()
    systems["popularity"] = np.tile(counts, (len(test_h), 1))
    systems["co-occurrence (item-to-item)"] = CoOccurrence.fit(train_h, train_t, n_items).scores(test_h)
    seconds["baselines"] = round(time.perf_counter() - started, 1)
    losses, models = {}, {}
    for name, emb in (("SASRec, text-initialised", text_emb),
                      ("SASRec, random init (ablation)", np.random.default_rng(7).normal(
                          0, text_emb.std(), text_emb.shape).astype(np.float32))):
        started = time.perf_counter()
        model = SASRec(emb, SASRecConfig())
        losses[name] = model.fit(fit_h, fit_t, validation=validation[1:])
        systems[name] = model.scores(test_h)
        seconds[name] = round(time.perf_counter() - started, 1)
        models[name] = model

    started = time.perf_counter()
    # The served sources learn from the training rows SASRec learns from, never the held-out ones.
    engine = served_engine(texts, text_emb, models["SASRec, text-initialised"], CoOccurrence.fit(fit_h, fit_t, n_items))
    engine.bundle.reranker, reranker_rows = fit_reranker(engine, validation)
    served = np.full((len(test_h), n_items), -np.inf)
    for r, history in enumerate(test_h):
        rows, scores = engine.recommend_rows(history, float("nan"), n_items)  # the whole pool, in order
        served[r, rows] = scores
    systems = {"served (all sources, re-ranked)": served, **systems}
    seconds["served: re-ranker fit + every test row"] = round(time.perf_counter() - started, 1)
    for scores in systems.values():
        for r, history in enumerate(test_h):
            scores[r, history] = -np.inf  # as served: never what the shopper already has

    results = {}
    for name, scores in systems.items():
        results[name] = {"all": ranking_metrics(scores, test_t), "long_tail": ranking_metrics(scores[tail_rows],
                         list(np.array(test_t)[tail_rows])), "coverage@10": top_k_coverage(scores)}
    best = {m: max(results[s]["all"][m] for s in ("SASRec, text-initialised", "co-occurrence (item-to-item)"))
            for m in ("recall@10", "ndcg@10")}
    lift = {m: round(results["served (all sources, re-ranked)"]["all"][m] / best[m] - 1, 4) for m in best}
    total_s = round(time.perf_counter() - bench_started, 1)
    print(f"\nnext-item recommendation, Office Products: train on valid ({len(fit_t):,} rows; {len(validation[2])} "
          f"held out to validate), test on every test row ({len(test_t):,}), ranking all {n_items:,} items")
    print(f"{'system':<34}{'R@10':>8}{'NDCG@10':>9}{'MRR':>8}  | tail {int(tail_rows.sum())} rows:"
          f"{'R@10':>7}{'NDCG@10':>9}  |{'coverage':>9}")
    for name, r in results.items():
        a, t = r["all"], r["long_tail"]
        print(f"{name:<34}{a['recall@10']:>8.4f}{a['ndcg@10']:>9.4f}{a['mrr']:>8.4f}  |"
              f"{'':>16}{t['recall@10']:>7.4f}{t['ndcg@10']:>9.4f}  |{r['coverage@10']:>9.4f}")
    print(f"\nserved vs the better of SASRec and co-occurrence: R@10 {lift['recall@10']:+.1%}, "
          f"NDCG@10 {lift['ndcg@10']:+.1%} (re-ranker learned on {reranker_rows} validation shoppers)")
    print(f"seconds: encode items {encode_s:.1f}, " + ", ".join(f"{k} {v}" for k, v in seconds.items())
          + f"; total {total_s}")
    out = ROOT / "bench" / "results" / "recommend_quality.json"
    out.write_text(json.dumps({
        "dataset": "amazon_office_products", "train": "valid split", "test": "test split", "n_items": n_items,
        "train_rows": len(fit_t), "validation_rows": len(validation[2]), "test_rows": len(test_t),
        "validation": "last training row of the product's validation slice of shoppers (one in six, hashed)",
        "repeats": "no system recommends an item already in the history; "
                   f"{np.mean([t in h for t, h in zip(test_t, test_h)]):.4f} of test targets are repeats",
        "long_tail": "next item outside the 20% most frequent items in training",
        "long_tail_rows": int(tail_rows.sum()), "results": results,
        "served_lift_over_best_of_sasrec_and_cooccurrence": lift,
        "reranker": {"rows": reranker_rows,
                     "coef": dict(zip(RERANK_FEATURES, np.round(engine.bundle.reranker.coef, 4).tolist()))},
        "training": losses, "seconds": {**seconds, "encode_items": round(encode_s, 1), "total": total_s},
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": sys.version.split()[0]},
    }, indent=2))
    print(f"saved {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
