"""Position bias from the click logs: examination propensities by intervention harvesting.

The examination hypothesis: P(click | q, i, k) = p_k * P(relevant | q, i). When the logging ranker
shows the same (query, item) at different positions (its exploration noise, or simply ranking
changes over time) the item's relevance is held fixed, so the ratio of its click-through at
adjacent positions estimates p_k / p_{k-1} (Agarwal et al., "Estimating Position Bias without
Intrusive Interventions", WSDM 2019). Ratios are pooled over every (query, item) seen at both
positions, weighted by the smaller of its two impression counts, and chained from position 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MIN_PROPENSITY = 0.05  # the clip that keeps inverse-propensity weights (and their variance) bounded


def estimate_propensities(logs: pd.DataFrame, max_position: int = 10) -> np.ndarray:
    """logs: one row per impression with query_id, item_id, position (1-based), clicked (bool).
    Returns p[0..max_position-1], relative to position 1 (p[0] == 1), clipped below at MIN_PROPENSITY."""
    logs = logs[logs["position"].between(1, max_position)]
    stats = (logs.groupby(["query_id", "item_id", "position"])["clicked"].agg(["sum", "count"])
             .rename(columns={"sum": "clicks", "count": "shown"}).reset_index())
    p = np.ones(max_position)
    for k in range(2, max_position + 1):
        upper = stats[stats["position"] == k - 1].set_index(["query_id", "item_id"])
        lower = stats[stats["position"] == k].set_index(["query_id", "item_id"])
        both = upper.join(lower, lsuffix="_a", rsuffix="_b", how="inner")
        if both.empty:
            p[k - 1] = p[k - 2]
            continue
        weight = np.minimum(both["shown_a"], both["shown_b"])
        ctr_a = (both["clicks_a"] / both["shown_a"] * weight).sum()
        ctr_b = (both["clicks_b"] / both["shown_b"] * weight).sum()
        p[k - 1] = p[k - 2] * (ctr_b / ctr_a if ctr_a > 0 else 1.0)
    return np.clip(p, MIN_PROPENSITY, 1.0)


def ipw_weights(positions: np.ndarray, clicked: np.ndarray, propensities: np.ndarray) -> np.ndarray:
    """Inverse-propensity weights for click-log training rows (Joachims et al., WSDM 2017): a click
    at position k counts 1 / p_k, because only a share p_k of shoppers examined that slot; a
    non-click counts 1."""
    p = propensities[np.clip(positions.astype(int), 1, len(propensities)) - 1]
    return np.where(clicked, 1.0 / p, 1.0)
