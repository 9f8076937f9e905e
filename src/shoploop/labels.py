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


def examined_skips(logs: pd.DataFrame) -> pd.DataFrame:
    """Impressions the shopper examined and passed over: not clicked, shown above a clicked item of
    the same query in the same logged moment (the skip-above rule of Joachims, 2002). Returns their
    query_id and item_id. Logs are grouped by query and event_timestamp's day when no session is kept."""
    key = ["query_id", "session_id"] if "session_id" in logs else ["query_id"]
    last_click = logs[logs["clicked"]].groupby(key)["position"].max().rename("last_click")
    joined = logs.join(last_click, on=key)
    skipped = joined[~joined["clicked"] & (joined["position"] < joined["last_click"])]
    return skipped[["query_id", "item_id"]].drop_duplicates()


def implicit_judgments(logs: pd.DataFrame) -> pd.DataFrame:
    """Per (query, item) logged, the best implicit grade any shopper gave it (for evaluation on
    held-out queries when a shop has no judgments): query_id, query_text, item_id, grade."""
    graded = logs.assign(grade=implicit_grades(logs))
    return (graded.groupby(["query_id", "item_id"], as_index=False)
            .agg(query_text=("query_text", "first"), grade=("grade", "max"))
            [["query_id", "query_text", "item_id", "grade"]])
