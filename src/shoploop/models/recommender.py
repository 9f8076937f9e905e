"""What a shopper should see next: candidates pooled from every source (SASRec and item-to-item
co-occurrence from shoploop.models.sequence, the taste vector's text neighbours, popularity in
histories), re-ranked with what each source says about each candidate.

Histories come from the user_histories mart, each shopper's items in the order first engaged
with. Splits are leave-last-out: a shopper's last item is the test target (never trained on), and
for a slice of shoppers (chosen by a hash of their key) the item before it is the validation
target that stops SASRec early and trains the re-ranker; SASRec and co-occurrence learn from the
rest, so on the validation rows the re-ranker sees the sources as they do on unseen shoppers. The
re-ranker is a logistic regression over, per candidate: each source's score and rank (a source
that did not rank the item gives it RANK_DEPTH), how many sources picked it, the co-occurrence and
text cosine with the latest item alone, the seed ranker's score with the shopper's taste vector as
the query, and the gap between the item's log price and the shopper's (Feast user feature
``log_mean_clicked_price``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

SOURCES = ("sasrec", "cooccurrence", "text", "popularity")
# Candidates each source adds to the pool the re-ranker rescores. Measured on Office Products
# (bench/recommend_quality.py), share of test rows whose next item is in the pool: SASRec's top 150
# alone 0.320; 60/40/20/10 from these sources (108 items after overlap) 0.313; 100/50/30/10 (158)
# 0.351, re-ranked Recall@10 0.1531 -> 0.1547 (same re-ranker, C = 1).
PER_SOURCE = {"sasrec": 100, "cooccurrence": 50, "text": 30, "popularity": 10}
# Ranks are counted this deep in every source; an item past it, or unranked, sits at RANK_DEPTH.
RANK_DEPTH = 200
VALIDATION_SHARE = 6  # one shopper in six gives a validation row
RERANK_FEATURES = ["sasrec_logp", "sasrec_rank", "cooc_log", "cooc_share", "cooc_rank", "cooc_last", "text_cosine",
                   "text_rank", "last_cosine", "log_popularity", "popularity_rank", "sources", "ranker", "price_gap"]
# Re-ranker regularisation (inverse L2 strength). 5-fold grouped CV on the bench's 325 validation
# shoppers, NDCG@10: C 0.01 0.1114, 0.1 0.1133, 1 0.1100, 10 0.1089. Gradient-boosted trees
# (scikit-learn HistGradientBoosting, three settings) scored 0.097-0.103: about 100 shoppers whose
# next item is in the pool are too few positives for trees; with twice as many validation
# shoppers trees drew level (0.152 vs 0.149) but SASRec, trained on fewer, lost more than that.
RERANK_C = 0.1


def sequences(histories: pd.DataFrame, row_of: dict[str, int]) -> dict[str, list[int]]:
    """user_key -> item rows in the order first engaged with."""
    h = histories[histories["item_id"].isin(row_of)].sort_values(["user_key", "first_engaged_at", "item_id"])
    return {user: rows["item_id"].map(row_of).tolist() for user, rows in h.groupby("user_key", sort=True)}


def in_validation(user_key: str) -> bool:
    """Whether a shopper is in the validation slice (stable: a hash of the key)."""
    return int(hashlib.md5(("val:" + user_key).encode()).hexdigest()[:8], 16) % VALIDATION_SHARE == 0


@dataclass
class Split:
    train: tuple[list[list[int]], list[int]]
    validation: tuple[list[str], list[list[int]], list[int]]  # users, histories, targets
    test: tuple[list[str], list[list[int]], list[int]]


def split(seqs: dict[str, list[int]]) -> Split:
    """Leave-last-out: test = each shopper's last item (3+ items); validation = the one before, for a
    hashed slice of shoppers; every other (history, next item) prefix left trains."""
    train_h, train_t, val, test = [], [], ([], [], []), ([], [], [])
    for user, seq in seqs.items():
        if len(seq) >= 3:
            test[0].append(user), test[1].append(seq[:-1]), test[2].append(seq[-1])
            seq = seq[:-1]
        if len(seq) >= 3 and in_validation(user):
            val[0].append(user), val[1].append(seq[:-1]), val[2].append(seq[-1])
            seq = seq[:-1]
        if len(seq) >= 2:
            train_h.append(seq[:-1]), train_t.append(seq[-1])
    return Split((train_h, train_t), val, test)


def source_ranks(scores: np.ndarray, history: list[int], depth: int = RANK_DEPTH) -> np.ndarray:
    """[n_items] each item's place (0 = best) in one source's order of the items the shopper does not
    have; ``depth`` for an item past its top ``depth``, one the source has no score for (-inf), or one
    the shopper has."""
    scores = np.array(scores, dtype=np.float64)
    scores[history] = -np.inf
    k = min(depth, len(scores))
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    top = top[np.isfinite(scores[top])]
    ranks = np.full(len(scores), depth, dtype=np.int64)
    ranks[top] = np.arange(len(top))
    return ranks


def pool(sources: dict[str, np.ndarray], history: list[int], per_source: dict[str, int] = PER_SOURCE
         ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(candidate rows: the union of each source's top ``per_source`` items the shopper does not have,
    in source order; each source's rank of them). ``sources``: catalog scores by SOURCES name, -inf
    where a source has no evidence for an item."""
    ranks = {name: source_ranks(sources[name], history) for name in SOURCES}
    picked = []
    for name in SOURCES:
        top = np.flatnonzero(ranks[name] < per_source[name])
        picked.append(top[np.argsort(ranks[name][top], kind="stable")])
    rows = np.asarray(pd.unique(np.concatenate(picked)), dtype=np.int64)
    return rows, {name: r[rows] for name, r in ranks.items()}


def rerank_features(rows: np.ndarray, sources: dict[str, np.ndarray], ranks: dict[str, np.ndarray],
                    last_cosine: np.ndarray, last_cooc: np.ndarray, ranker_scores: np.ndarray, log_price: np.ndarray,
                    user_log_price: float) -> np.ndarray:
    """[len(rows), len(RERANK_FEATURES)] for one shopper's candidates: each source's score and rank
    (the rank is RANK_DEPTH where a source did not rank the item), how many sources picked it, the
    co-occurrence count and text cosine with the latest item alone, the seed ranker's score and the
    price gap to the shopper's level (0 where either is unknown)."""
    sasrec = sources["sasrec"]
    finite = np.isfinite(sasrec)
    # Log-softmax over the catalog: comparable across shoppers, unlike raw dot products.
    log_norm = np.log(np.exp(sasrec[finite] - sasrec[finite].max()).sum()) + sasrec[finite].max()
    counts = np.where(np.isfinite(sources["cooccurrence"]), sources["cooccurrence"], 0.0)
    cooc, top_cooc = counts[rows], max(float(counts.max()), 1e-9)
    picked = sum((ranks[name] < PER_SOURCE[name]).astype(float) for name in SOURCES)
    gap = np.abs(log_price - user_log_price) if np.isfinite(user_log_price) else np.zeros(len(rows))
    columns = {
        "sasrec_logp": sasrec[rows] - log_norm, "sasrec_rank": np.log1p(ranks["sasrec"]),
        "cooc_log": np.log1p(cooc), "cooc_share": cooc / top_cooc, "cooc_rank": np.log1p(ranks["cooccurrence"]),
        "cooc_last": np.log1p(last_cooc),
        "text_cosine": sources["text"][rows], "text_rank": np.log1p(ranks["text"]), "last_cosine": last_cosine,
        "log_popularity": np.log1p(np.maximum(sources["popularity"][rows], 0.0)),
        "popularity_rank": np.log1p(ranks["popularity"]), "sources": picked,
        "ranker": ranker_scores, "price_gap": np.nan_to_num(gap),
    }
    return np.stack([np.asarray(columns[name], dtype=np.float64) for name in RERANK_FEATURES], axis=1)


@dataclass
class Reranker:
    """Logistic regression over RERANK_FEATURES (standardised), fitted with scikit-learn; its
    state is plain numbers (JSON), so loading a version runs no pickled code."""

    coef: np.ndarray
    intercept: float
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, seed: int = 7) -> "Reranker":
        from sklearn.linear_model import LogisticRegression

        mean, std = features.mean(0), features.std(0) + 1e-6
        model = LogisticRegression(C=RERANK_C, max_iter=1000, random_state=seed).fit((features - mean) / std, labels)
        return cls(model.coef_[0], float(model.intercept_[0]), mean, std)

    def score(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.std) @ self.coef + self.intercept

    def state(self) -> dict:
        return {"coef": self.coef.tolist(), "intercept": self.intercept, "mean": self.mean.tolist(),
                "std": self.std.tolist(), "features": RERANK_FEATURES}

    @classmethod
    def from_state(cls, state: dict) -> "Reranker":
        return cls(np.array(state["coef"]), state["intercept"], np.array(state["mean"]), np.array(state["std"]))


def fit_reranker(engine, validation: tuple[list[str], list[list[int]], list[int]], seed: int = 7
                 ) -> tuple[Reranker | None, int]:
    """(the re-ranker fitted on the validation shoppers' candidate pools as ``engine``, a
    shoploop.serving.predict.SearchEngine, serves them, the rows it learned from). A shopper's next item is
    the positive, the rest of their pool the negatives; a shopper whose next item no source found
    teaches no order and is skipped."""
    feats, labels = [], []
    for user, history, target in zip(*validation):
        rows, x = engine.recommend_candidates(history, engine.user_features(user))
        if target in set(rows.tolist()):
            feats.append(x)
            labels.append(rows == target)
    if not labels:
        return None, 0
    return Reranker.fit(np.concatenate(feats), np.concatenate(labels).astype(int), seed), len(labels)
