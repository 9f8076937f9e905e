"""What a shopper should see next: SASRec's candidates (shoploop.models.sequence), re-ranked with
the seed ranker and the shopper's features.

Histories come from the user_histories mart, each shopper's items in the order first engaged
with. Splits are leave-last-out: a shopper's last item is the test target (never trained on), and
for a slice of shoppers (chosen by a hash of their key) the item before it is the validation
target that stops SASRec early and trains the re-ranker. The re-ranker is a logistic regression
over, per candidate: SASRec's score (standardised within the shopper's candidates) and rank, the
seed ranker's score with the shopper's taste vector as the query, that vector's cosine with the
item, the gap between the item's log price and the shopper's (Feast user feature
``log_mean_clicked_price``), and the item's popularity.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

# SASRec candidates the re-ranker rescores per shopper.
CANDIDATES = 100
VALIDATION_SHARE = 6  # one shopper in six gives a validation row
RERANK_FEATURES = ["sasrec_z", "log_rank", "ranker", "cosine", "price_gap", "popularity"]


def sequences(histories: pd.DataFrame, row_of: dict[str, int]) -> dict[str, list[int]]:
    """user_key -> item rows in the order first engaged with."""
    h = histories[histories["item_id"].isin(row_of)].sort_values(["user_key", "first_engaged_at", "item_id"])
    return {user: rows["item_id"].map(row_of).tolist() for user, rows in h.groupby("user_key", sort=True)}


def _in_validation(user_key: str) -> bool:
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
        if len(seq) >= 3 and _in_validation(user):
            val[0].append(user), val[1].append(seq[:-1]), val[2].append(seq[-1])
            seq = seq[:-1]
        if len(seq) >= 2:
            train_h.append(seq[:-1]), train_t.append(seq[-1])
    return Split((train_h, train_t), val, test)


def candidates(scores: np.ndarray, history: list[int], k: int = CANDIDATES) -> np.ndarray:
    """The top-k rows by SASRec score, never an item the shopper already has."""
    scores = scores.copy()
    scores[history] = -np.inf
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top], kind="stable")]


def rerank_features(sasrec_scores: np.ndarray, ranker_scores: np.ndarray, cosine: np.ndarray,
                    log_price: np.ndarray, user_log_price: float, popularity: np.ndarray) -> np.ndarray:
    """[n_candidates, len(RERANK_FEATURES)] for one shopper's candidates, in SASRec order."""
    z = (sasrec_scores - sasrec_scores.mean()) / (sasrec_scores.std() + 1e-6)
    gap = np.abs(log_price - user_log_price) if np.isfinite(user_log_price) else np.zeros_like(log_price)
    return np.stack([z, np.log1p(np.arange(len(z))), ranker_scores, cosine, gap, popularity], axis=1)


@dataclass
class Reranker:
    """Logistic regression over RERANK_FEATURES (standardised), fitted with scikit-learn."""

    coef: np.ndarray
    intercept: float
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, seed: int = 7) -> "Reranker":
        from sklearn.linear_model import LogisticRegression

        mean, std = features.mean(0), features.std(0) + 1e-6
        model = LogisticRegression(C=1.0, max_iter=1000, random_state=seed).fit((features - mean) / std, labels)
        return cls(model.coef_[0], float(model.intercept_[0]), mean, std)

    def score(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.std) @ self.coef + self.intercept

    def state(self) -> dict:
        return {"coef": self.coef.tolist(), "intercept": self.intercept, "mean": self.mean.tolist(),
                "std": self.std.tolist(), "features": RERANK_FEATURES}

    @classmethod
    def from_state(cls, state: dict) -> "Reranker":
        return cls(np.array(state["coef"]), state["intercept"], np.array(state["mean"]), np.array(state["std"]))
