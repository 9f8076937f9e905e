"""What the monitor decides: ``none``, ``retrain`` or ``rollback``, always with its reasons.

Inputs are the drift summary (shoploop.monitoring.drift.summarise) and the online quality per window and
model version (shoploop.monitoring.monitor.online_quality). The rules, in order:

- **rollback** when the champion was promoted over a previous version and, on enough impressions
  each, shoppers click its search results significantly less (two-proportion z-test) and by more
  than ``rollback_margin`` than they clicked the previous version's;
- **retrain** when the data drifted (``drifted_columns`` of the watched columns: Evidently's per-column
  tests, distance-based on windows of over 1,000 rows, so noise does not count), the same items'
  prices moved in a category (shoploop.monitoring.drift.price_moves), a wave of new items arrived
  (shoploop.monitoring.drift.catalog_arrivals), the model's scores or the shoppers' queries drifted, or the champion's own
  click-through fell significantly and by more than ``ctr_drop`` from the reference window to the
  current one;
- **none** otherwise, with what was checked.

Only significant drops count, so the noise of a quiet day never retrains or rolls back.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Thresholds:
    drifted_columns: int = 1        # watched input columns (model score apart) that must drift to retrain
    ctr_drop: float = 0.10          # relative fall of the champion's CTR, reference -> current window
    rollback_margin: float = 0.10   # relative CTR shortfall of a new champion against its predecessor
    min_impressions: int = 300      # per side, before an online comparison is made at all
    alpha: float = 0.05             # one-sided significance of a CTR drop


def ctr_drop_p_value(clicks_a: int, shown_a: int, clicks_b: int, shown_b: int) -> float:
    """One-sided p-value that B's click-through is below A's (pooled two-proportion z-test)."""
    pooled = (clicks_a + clicks_b) / (shown_a + shown_b)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / shown_a + 1 / shown_b))
    if spread == 0:
        return 1.0
    z = (clicks_a / shown_a - clicks_b / shown_b) / spread
    return 0.5 * math.erfc(z / math.sqrt(2))


def _compare(before: dict | None, after: dict | None, margin: float, t: Thresholds) -> tuple[bool, str]:
    """Did search CTR fall from ``before`` to ``after`` by more than ``margin``, significantly?"""
    if not before or not after:
        return False, "no traffic to compare"
    if min(before["impressions"], after["impressions"]) < t.min_impressions:
        return False, (f"too few impressions to compare ({before['impressions']} and {after['impressions']}, "
                       f"{t.min_impressions} needed each)")
    p = ctr_drop_p_value(before["clicks"], before["impressions"], after["clicks"], after["impressions"])
    fell = after["ctr"] < before["ctr"] * (1 - margin) and p < t.alpha
    return fell, f"CTR {before['ctr']:.4f} -> {after['ctr']:.4f} (one-sided p {p:.3g})"


def decide(drift: dict, online: dict, champion: dict | None, t: Thresholds = Thresholds()) -> dict:
    """The decision and its reasons. ``online``: {"reference"|"current": {model_version: {"search": {...}}}}."""
    checked, reasons = [], []
    current = champion and champion.get("tag")
    previous = champion and champion.get("previous")

    def search(window: str, version: str | None) -> dict | None:
        return online.get(window, {}).get(version or "", {}).get("search")

    if previous:
        # The predecessor's traffic is wherever it served (mostly the reference window): all of it counts.
        served = [s for s in (search("reference", previous), search("current", previous)) if s]
        theirs = None
        if served:
            shown, clicked = sum(s["impressions"] for s in served), sum(s["clicks"] for s in served)
            theirs = {"impressions": shown, "clicks": clicked, "ctr": clicked / shown}
        fell, how = _compare(theirs, search("current", current), t.rollback_margin, t)
        (reasons if fell else checked).append(f"champion {current} against {previous}: {how}")
        if fell:
            return {"decision": "rollback", "rollback_to": previous, "reasons": reasons, "checked": checked,
                    "thresholds": asdict(t)}
    if "drift_share" in drift:
        inputs = {name: c for name, c in drift.get("columns", {}).items() if name != "model_score"}
        moved = [f"{name} ({c['method']} {c['value']}, threshold {c['threshold']})" for name, c in inputs.items() if c["drifted"]]
        text = (f"data drift: {len(moved)} of {len(inputs)} watched columns drifted"
                + (": " + ", ".join(moved) if moved else f" (share {drift['drift_share']})"))
        (reasons if moved and len(moved) >= t.drifted_columns else checked).append(text)
        prices = drift.get("price_moves", {})
        moved = [f"{name} ({c['value']:+.0%} over {c['items']} items, threshold {c['threshold']:.0%})"
                 for name, c in prices.items() if c["drifted"]]
        if prices:
            text = f"price moves ({next(iter(prices.values()))['method']}): {', '.join(moved) or f'none in {len(prices)} categories'}"
            (reasons if moved else checked).append(text)
        arrivals = drift.get("arrivals")
        if arrivals:
            text = (f"new items: {arrivals['items']} arrived in the current window ({arrivals['share']:.1%} of the catalog), "
                    f"{arrivals['expected']} expected at the reference's rate (p {arrivals['p_value']:.3g})")
            (reasons if arrivals["drifted"] else checked).append(text)
        score = drift.get("columns", {}).get("model_score")
        if score:
            text = f"prediction drift: model_score {score['method']} {score['value']} (threshold {score['threshold']})"
            (reasons if score["drifted"] else checked).append(text)
        queries = drift.get("query_embeddings", {})
        if "value" in queries:
            text = f"query drift: embeddings {queries['method']} {queries['value']} (threshold {queries['threshold']})"
            (reasons if queries["drifted"] else checked).append(text)
    else:
        checked.append(f"no drift measured: {drift.get('skipped', 'no report')}")
    fell, how = _compare(search("reference", current), search("current", current), t.ctr_drop, t)
    (reasons if fell else checked).append(f"online quality of {current}: {how}")
    return {"decision": "retrain" if reasons else "none", "reasons": reasons, "checked": checked,
            "thresholds": asdict(t)}
