"""Learning signals: what a shop's data holds, turned into training labels.

A simulator can judge every (query, item) pair; a shop cannot. It has event logs (impressions
with their positions, then clicks, carts and purchases), perhaps a few thousand human judgments,
never complete ones. Training takes what the data holds, chosen here and written in the model card:

- ``judgments``: graded human labels alone. *Complete* judgments (every relevant item of a query is
  judged, as a deep TREC-style pool or the simulator's are) make an unjudged candidate irrelevant;
  *sparse* ones (a handful of judged items per query, as a real shop's) leave it unknown, so it is at
  most a weakly weighted negative, its weight measured on validation queries.
- ``logs``: graded implicit labels from the search logs, purchase > add to cart > click > examined
  skip, each click weighted by the inverse of its position's examination propensity.
- ``judgments+logs``: both, the weight of the log rows measured on validation queries.
- ``none``: a catalog with no search signal yet (perhaps purchase histories): search serves the
  zero-shot encoder and a ranker that adds BM25 and cosine, until clicks arrive.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

# Implicit grades on the judgments' 0..3 scale: what the shopper did after seeing the item.
PURCHASE, CART, CLICK, SKIP = 3, 2, 1, 0
# Judgments are complete when the median judged query has at least this many judged items, or this
# share of the catalog if that is fewer: a pool as deep as the retriever's candidate list the ranker
# rescores (ranker_rows.TRAIN_CANDIDATES), so an unjudged candidate lies below the pool (TREC's
# pooling assumption). The simulator judges every relevant item and 20 irrelevant ones (median: several
# hundred a query at 5,000 items, 20+ at 400); Home Depot's human judgments hold 7 of 54,667 items.
COMPLETE_POOL_DEPTH = 50
COMPLETE_POOL_SHARE = 0.05
# One training query in this many is kept for validation: the label weights are chosen on them.
VALIDATION_SHARE = 8
SOURCES = ("auto", "judgments", "logs", "both")


@dataclass(frozen=True)
class LabelPlan:
    """Which signals train this version, and how far the judgments can be trusted."""

    use_judgments: bool
    use_logs: bool
    judgments_complete: bool
    judged_per_query: float
    reason: str

    @property
    def mode(self) -> str:
        if not (self.use_judgments or self.use_logs):
            return "none"
        if self.use_judgments and self.use_logs:
            return "judgments+logs"
        return "judgments" if self.use_judgments else "logs"

    def describe(self) -> dict:
        kind = "complete" if self.judgments_complete else "sparse"
        return {"mode": self.mode, "judgments": kind if self.use_judgments else "not used",
                "judged_items_per_query": round(self.judged_per_query, 1), "reason": self.reason}


def is_complete(judgments: pd.DataFrame, n_items: int) -> bool:
    """Whether the judgments judge every relevant item of a query, in a catalog of ``n_items``
    (see COMPLETE_POOL_DEPTH)."""
    depth = min(COMPLETE_POOL_DEPTH, COMPLETE_POOL_SHARE * n_items)
    return bool(len(judgments)) and float(judgments.groupby("query_id").size().median()) >= depth


def plan(judgments: pd.DataFrame, logs: pd.DataFrame, n_items: int, source: str = "auto") -> LabelPlan:
    """Decide what trains: ``source`` 'auto' takes whatever the data holds; 'judgments', 'logs' or
    'both' insist (a benchmark withholds the simulator's judgments with 'logs')."""
    if source not in SOURCES:
        raise ValueError(f"unknown label source {source!r}: use one of {', '.join(SOURCES)}")
    per_query = float(judgments.groupby("query_id").size().median()) if len(judgments) else 0.0
    complete = is_complete(judgments, n_items)
    has_logs = bool(len(logs)) and bool(logs["clicked"].any())
    has_judgments = bool(len(judgments)) and bool((judgments["grade"] > 0).any())
    use_judgments = has_judgments and source in ("auto", "judgments", "both")
    use_logs = has_logs and source in ("auto", "logs", "both")
    wanted = {"judgments": "judgments", "logs": "search logs with clicks", "both": "judgments and search logs"}
    if source != "auto" and (source in ("judgments", "both") and not has_judgments
                             or source in ("logs", "both") and not has_logs):
        raise ValueError(f"training labels set to {source!r}, but the marts hold no {wanted[source]}: "
                         "land them, or set SHOPLOOP_TRAIN_LABELS=auto")
    if not (use_judgments or use_logs):  # a catalog (perhaps with histories) and no search signal yet
        return LabelPlan(False, False, False, per_query, "no search labels (no judgments, no clicked search "
                         "impressions): search serves the zero-shot MiniLM + BM25 retriever until shoppers' clicks arrive")
    held = [name for name, used in (("judgments", use_judgments), ("search logs", use_logs)) if used]
    reason = f"{source} requested" if source != "auto" else "the data holds " + " and ".join(held)
    return LabelPlan(use_judgments, use_logs, complete, per_query, reason)


def in_validation(query_id: str) -> bool:
    """A stable slice of the training queries (never the held-out ones) that chooses label weights."""
    return int(hashlib.md5(("val:" + query_id).encode()).hexdigest()[:8], 16) % VALIDATION_SHARE == 0


def implicit_grades(logs: pd.DataFrame) -> np.ndarray:
    """Each logged impression's implicit grade: purchase 3, add to cart 2, click 1, otherwise 0."""
    purchased = logs["purchased"].fillna(False).to_numpy(bool) if "purchased" in logs else np.zeros(len(logs), bool)
    carted = logs["carted"].fillna(False).to_numpy(bool) if "carted" in logs else np.zeros(len(logs), bool)
    clicked = logs["clicked"].to_numpy(bool)
    return np.select([purchased, carted, clicked], [PURCHASE, CART, CLICK], SKIP).astype(np.int64)


# Prior examinations that smooth a logged pair's attractiveness towards the mean (a pair seen once at
# the top and clicked is weak evidence; one clicked in most of a dozen examinations is strong).
PRIOR_EXAMINATIONS = 2.0


def click_model(logs: pd.DataFrame, propensities: np.ndarray) -> pd.DataFrame:
    """Each logged (query, item) pair as the position-based click model sees it (the examination
    hypothesis the propensities are estimated under: P(click) = p_position * attractiveness).

    Returns query_id, query_text, item_id, examinations (expected: the sum of p_position over the
    pair's impressions), clicks, grade (its best implicit grade) and attractiveness: clicks per
    examination, smoothed towards the mean over all pairs by PRIOR_EXAMINATIONS
    (Chuklin, Markov & de Rijke, "Click Models for Web Search", 2015, ch. 3)."""
    seen = propensities[np.clip(logs["position"].fillna(1).astype(int), 1, len(propensities)) - 1]
    frame = logs.assign(examined=seen, grade=implicit_grades(logs), clicks=logs["clicked"].astype(int))
    pairs = (frame.groupby(["query_id", "item_id"], as_index=False)
             .agg(query_text=("query_text", "first"), examinations=("examined", "sum"), clicks=("clicks", "sum"),
                  grade=("grade", "max")))
    mean = pairs["clicks"].sum() / max(pairs["examinations"].sum(), 1e-9)
    pairs["attractiveness"] = (pairs["clicks"] + PRIOR_EXAMINATIONS * mean) / (pairs["examinations"] + PRIOR_EXAMINATIONS)
    return pairs


def confident_labels(pairs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What the click model makes of the logged pairs (``click_model``'s frame), as the encoder's labels:

    - positives: pairs added to a cart or bought (implicit grade 2-3), and clicked pairs more attractive
      than the mean pair (a click that the slot's examination alone does not explain; grade 1);
    - examined skips: pairs the model expects to have been examined at least once and never clicked.

    Clicks the position explains and pairs hardly examined stay unknown. On the simulated shop's
    training logs (a judged grade >= 2 counting as relevant), these positives were 69% relevant (every
    clicked pair: 66%), and these skips 12% (the per-session skip-above rule's: 40%, since shoppers,
    simulated or real, do not read strictly top-down; every logged pair: 32%).
    Returns (positives: query_id, query_text, item_id, grade; skips: query_id, item_id)."""
    mean = pairs["clicks"].sum() / max(pairs["examinations"].sum(), 1e-9)
    positive = (pairs["grade"] >= CART) | ((pairs["clicks"] > 0) & (pairs["attractiveness"] > mean))
    skipped = (pairs["clicks"] == 0) & (pairs["examinations"] >= 1.0)
    return (pairs.loc[positive, ["query_id", "query_text", "item_id", "grade"]].reset_index(drop=True),
            pairs.loc[skipped, ["query_id", "item_id"]].reset_index(drop=True))


# The encoder learns from carts and purchases alone where at least this many training queries have one.
# Measured on the simulated shop (bench/label_sources.py, logs only, held-out nDCG@10 over the catalog
# against its judgments): fine-tuned on every confident positive the dense retriever fell below the
# zero-shot one (0.820 against 0.823; a third of the clicked positives are irrelevant), on carts and
# purchases alone (82% relevant) it rose above it (0.855); the model 0.8722 -> 0.8747.
ENCODER_MIN_QUERIES = 50


def encoder_positives(positives: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The logged positives the encoder is fine-tuned on (``confident_labels``' first frame): the pairs
    added to a cart or bought, where ENCODER_MIN_QUERIES queries have one, else every confident positive.
    Returns them and what they are, in words."""
    strong = positives[positives["grade"] >= CART]
    queries = strong["query_id"].nunique()
    if queries >= ENCODER_MIN_QUERIES:
        return strong, "carts and purchases"
    return positives, f"clicks, carts and purchases (carts or purchases for {queries} queries, fewer than {ENCODER_MIN_QUERIES})"


def implicit_judgments(logs: pd.DataFrame) -> pd.DataFrame:
    """Per (query, item) logged, the best implicit grade any shopper gave it (for evaluation on
    held-out queries when a shop has no judgments): query_id, query_text, item_id, grade."""
    graded = logs.assign(grade=implicit_grades(logs))
    return (graded.groupby(["query_id", "item_id"], as_index=False)
            .agg(query_text=("query_text", "first"), grade=("grade", "max"))
            [["query_id", "query_text", "item_id", "grade"]])
