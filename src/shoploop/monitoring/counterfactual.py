"""What a ranker's click-through would be, estimated from impressions another ranker logged.

Under the position-based click model, P(click | q, d at slot k) = θ_k · α(q, d): θ_k the chance a
shopper examines slot k (estimated from the logs, ``models.bias``), α(q, d) the item's
attractiveness for the query. From the logs, α̂(q, d) = clicks / Σ θ_k over its impressions: each
click weighted by the inverse of its slot's examination chance, self-normalised by the expected
examinations (θ clipped below at ``bias.MIN_PROPENSITY``, and α̂ at 1, so a rarely examined slot
cannot blow the estimate up). A ranking π then expects, per search, Σ_{d in π(q)[:k]} θ_{rank(d)} · α̂(q, d)
clicks. Items π shows that were never logged for the query carry no evidence: they count 0 and the
share of such slots is reported (``logged_slot_share``): the lower it is, the more the estimate
understates a ranking that differs from the logging one. The interval is a bootstrap over queries.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from shoploop.models.bias import MIN_PROPENSITY, estimate_propensities


def attractiveness(logs: pd.DataFrame, propensities: np.ndarray) -> pd.Series:
    """α̂ per (query_id, item_id): clicks over expected examinations (self-normalised IPS), at most 1."""
    logs = logs[logs["position"].between(1, len(propensities))]
    theta = np.maximum(propensities[logs["position"].astype(int).to_numpy() - 1], MIN_PROPENSITY)
    frame = pd.DataFrame({"query_id": logs["query_id"].to_numpy(), "item_id": logs["item_id"].to_numpy(),
                          "clicks": logs["clicked"].astype(float).to_numpy(), "examined": theta})
    sums = frame.groupby(["query_id", "item_id"])[["clicks", "examined"]].sum()
    return (sums["clicks"] / sums["examined"]).clip(upper=1.0)


def expected_clicks(logs: pd.DataFrame, rank: Callable[[str], list[str]], propensities: np.ndarray,
                    k: int = 10, resamples: int = 500, seed: int = 7) -> dict:
    """Clicks per search a ranking would get on the logged queries (``rank``: query text -> item ids,
    best first), with a 95% bootstrap interval over queries."""
    alpha = attractiveness(logs, propensities)
    by_query = {query_id: group.droplevel(0) for query_id, group in alpha.groupby(level=0)}
    theta = np.maximum(propensities[:k], MIN_PROPENSITY)
    queries = logs.drop_duplicates("query_id")[["query_id", "query_text"]]
    estimate, covered = [], []
    for query_id, text in zip(queries["query_id"], queries["query_text"]):
        known = by_query.get(query_id, pd.Series(dtype=float))
        values = np.array([known.get(item, np.nan) for item in rank(text)[:k]], dtype=float)
        covered.append(float(np.mean(~np.isnan(values))) if len(values) else 0.0)
        estimate.append(float((theta[: len(values)] * np.nan_to_num(values)).sum()))
    if not estimate:
        return {"queries": 0, "clicks_per_search": None, "ci95": None, "logged_slot_share": None}
    estimate = np.array(estimate)
    draws = np.random.default_rng(seed).integers(0, len(estimate), size=(resamples, len(estimate)))
    means = estimate[draws].mean(axis=1)
    return {"queries": len(estimate), "clicks_per_search": round(float(estimate.mean()), 4),
            "ci95": [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)],
            "logged_slot_share": round(float(np.mean(covered)), 3)}


def logging_ranking(logs: pd.DataFrame) -> Callable[[str], list[str]]:
    """The logging ranker's usual slate per query: its items by their mean logged position."""
    order = (logs.groupby(["query_text", "item_id"])["position"].mean().reset_index()
             .sort_values(["query_text", "position"], kind="stable"))
    slates = {text: group["item_id"].tolist() for text, group in order.groupby("query_text")}
    return lambda text: slates.get(text, [])


def logged_clicks(logs: pd.DataFrame, propensities: np.ndarray, k: int = 10) -> dict:
    """What the logging ranker got (clicks in its top k per search; a search shows one item at slot
    1), and its own slates under the same estimate: the like-for-like reference for a challenger."""
    top = logs[logs["position"].between(1, k)]
    searches = int((top["position"] == 1).sum())
    observed = round(float(top["clicked"].sum()) / searches, 4) if searches else None
    return {"searches": searches, "observed_clicks_per_search": observed,
            **expected_clicks(logs, logging_ranking(logs), propensities, k)}


def gate_record(logs: pd.DataFrame, engine, champion=None) -> dict:
    """Clicks per search the version (and the champion) would get on the held-out queries' logged
    impressions (``expected_clicks``), beside what the logging ranker got: the gate's record shows
    it next to the offline nDCG."""
    from shoploop.models.evaluate import is_heldout

    held = logs[logs["query_id"].map(is_heldout)] if len(logs) else logs
    if not len(held):
        return {"skipped": "no logged search impressions on held-out queries"}
    propensities = estimate_propensities(logs)

    def ranking(of):
        return lambda text: [of.item_ids[r] for r in of.search_rows(text, 10)[0]]

    out = {"logged": logged_clicks(held, propensities), "model": expected_clicks(held, ranking(engine), propensities),
           "examination_by_position": [round(float(p), 3) for p in propensities]}
    if champion is not None:
        out["champion"] = expected_clicks(held, ranking(champion), propensities)
    return out
