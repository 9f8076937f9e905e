"""Live mode: simulated shoppers driving a running service over HTTP, as a real client would.

``run_shoppers`` searches with queries from the judged pool and clicks on the graded relevance alone.
``MarketShoppers`` are the simulator's own shoppers (shoploop.data.simulator, rebuilt from the seed):
their tastes pick the query, and the simulator's click model decides (relevance, item quality, taste
for the category, the price shown against the type's usual); a drift scenario switches on when told,
as it would on a date in the batch simulator (trend_shift: tastes move; new_items: the wave exists).
Each session draws from its own random stream (seed, session number), so the same sessions run
against two models meet the same shoppers with the same luck: their click-through compares directly.
Either posts the impressions, clicks, carts and purchases to /feedback.
"""

from __future__ import annotations

import time
import uuid
from datetime import date, datetime, timezone

import httpx
import numpy as np
import pandas as pd

from shoploop.data.relevance import query_id_for


def run_shoppers(base_url: str, judgments: pd.DataFrame, user_ids: list[str], n_sessions: int, seed: int,
                 k: int = 10, rate: float = 0.0) -> dict:
    """Drive ``n_sessions`` shopper sessions at ``rate`` sessions a second (0: as fast as the service answers)."""
    rng = np.random.default_rng(seed)
    started = time.monotonic()
    queries = judgments[["query_id", "query_text"]].drop_duplicates("query_id").reset_index(drop=True)
    grades = {(q, i): g for q, i, g in judgments[["query_id", "item_id", "grade"]].itertuples(index=False)}
    stats = {"sessions": 0, "impressions": 0, "clicks": 0, "purchases": 0, "errors": 0}
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        for s in range(n_sessions):
            if rate > 0:  # open-loop pacing: session s starts at s / rate seconds
                time.sleep(max(0.0, started + s / rate - time.monotonic()))
            q = queries.iloc[int(rng.integers(len(queries)))]
            user_id = user_ids[int(rng.integers(len(user_ids)))]
            response = client.post("/search", json={"query": q.query_text, "user_id": user_id, "k": k})
            if response.status_code != 200:
                stats["errors"] += 1
                continue
            body = response.json()
            session_id = f"live-{uuid.uuid4().hex[:12]}"
            now = datetime.now(timezone.utc).isoformat()
            events = []
            for pos, item in enumerate(body["items"], start=1):
                base = {"session_id": session_id, "user_id": user_id, "item_id": item["item_id"],
                        "query_id": q.query_id, "query_text": q.query_text, "position": pos, "surface": "search",
                        # an interleaved list names the model of each hit: the click is credited to it
                        "model_version": item.get("model_version") or body["model_version"],
                        "price_seen": item["price"], "ts": now}
                events.append({**base, "event_type": "impression"})
                grade = grades.get((q.query_id, item["item_id"]), 0)
                if rng.random() < (1.0 / pos) ** 0.9 and rng.random() < 1 / (1 + np.exp(-(-2.4 + 1.1 * grade))):
                    events.append({**base, "event_type": "click"})
                    stats["clicks"] += 1
                    if rng.random() < 0.1 + 0.05 * grade:
                        events.append({**base, "event_type": "purchase"})
                        stats["purchases"] += 1
            stats["impressions"] += len(body["items"])
            if client.post("/feedback", json={"events": events}).status_code != 200:
                stats["errors"] += 1
            stats["sessions"] += 1
    stats["seconds"] = round(time.monotonic() - started, 1)
    return stats


class MarketShoppers:
    """The simulated shop's shoppers, rebuilt from the settings' seed for ``run_date`` (drifts from
    settings.drift; a scheduled new_items wave exists once the run date's window holds it)."""

    def __init__(self, settings, run_date: date):
        from shoploop.data.simulator import MarketSimulator, parse_drifts

        self.drifts = {d.name for d in parse_drifts(settings.drift)}
        sim = MarketSimulator(settings.seed, settings.n_items, settings.n_users, settings.n_days,
                              settings.sessions_per_day, parse_drifts(settings.drift))
        _, self.catalog, self.users, self.taste, self.pool = sim.truth(run_date)
        self.row = {item: i for i, item in enumerate(self.catalog.frame["item_id"])}
        self.activity = (a := self.users["activity"].to_numpy()) / a.sum()
        self.seed = settings.seed
        self._grades: dict[int, np.ndarray] = {}

    def grades(self, query: int) -> np.ndarray:
        if query not in self._grades:
            self._grades[query] = self.catalog.grades(self.pool["intent"].iloc[query])
        return self._grades[query]

    def draw(self, s: int, drifted: bool) -> tuple[np.random.Generator, int, int, np.ndarray, str]:
        """Session ``s``'s stream and its first draws: (rng, user row, query row, taste, query text). The
        same session is the same shopper and query whoever serves it (and in bench/shopper_value.py)."""
        from shoploop.data.simulator import pick_queries, trend_shifted

        rng = np.random.default_rng([self.seed, 7919, s])
        user = int(rng.choice(len(self.users), p=self.activity))
        taste = self.taste[user:user + 1]
        if drifted and "trend_shift" in self.drifts:
            taste = trend_shifted(taste)
        q = int(pick_queries(rng, taste, self.pool)[0])
        text = self.pool["query_text"].iloc[q]
        if drifted and "vocab_shift" in self.drifts and rng.random() < 0.6:
            text = self.pool["shifted_text"].iloc[q]
        return rng, user, q, taste[0], text

    def run(self, base_url: str, n_sessions: int, drifted: bool, first: int = 0, k: int = 10,
            transport: httpx.BaseTransport | None = None) -> dict:
        """Sessions ``first`` .. ``first + n_sessions - 1``, as fast as the service answers; ``drifted``:
        the drift scenarios have started. Returns what was shown, clicked and bought (per model version
        under ``by_model``: an interleaved list credits each hit to the model that placed it)."""
        from shoploop.data.simulator import attraction, price_pain
        from shoploop.models.evaluate import click_ndcg

        started = time.monotonic()
        stats = {"sessions": 0, "impressions": 0, "clicks": 0, "purchases": 0, "errors": 0, "by_model": {}}
        gains: list[float] = []
        with httpx.Client(base_url=base_url, timeout=30.0, transport=transport) as client:
            for s in range(first, first + n_sessions):
                rng, user, q, taste, text = self.draw(s, drifted)
                # The draws of a session are fixed before the answer: the same luck whatever is shown.
                examine, attract_u, cart_u, buy_u = rng.random((4, k))
                user_id = self.users["user_id"].iloc[user]
                response = client.post("/search", json={"query": text, "user_id": user_id, "k": k})
                if response.status_code != 200:
                    stats["errors"] += 1
                    continue
                body = response.json()
                hits = body["items"][:k]
                rows = np.array([self.row.get(h["item_id"], -1) for h in hits], dtype=np.int64)
                known = rows >= 0
                g = np.where(known, self.grades(q)[np.maximum(rows, 0)], 0)
                quality = np.where(known, self.catalog.quality[np.maximum(rows, 0)], 0.0)
                cat_taste = np.where(known, taste[self.catalog.category[np.maximum(rows, 0)]], 0.0)
                price = np.array([h.get("price") or 0.0 for h in hits], dtype=float)
                pain = np.where(known & (price > 0), price_pain(float(self.users["price_sensitivity"].iloc[user]),
                                                                np.where(price > 0, price, 1.0),
                                                                self.catalog.type[np.maximum(rows, 0)]), 0.0)
                pos = np.arange(1, len(hits) + 1)
                n = len(hits)
                click = (examine[:n] < (1.0 / pos) ** 0.9) & (attract_u[:n] < attraction(g, quality, cat_taste, pain))
                cart = click & (cart_u[:n] < 0.15 + 0.08 * g - 0.05 * pain)
                purchase = cart & (buy_u[:n] < 0.55 - 0.1 * pain)
                session_id = f"live-{s}-{uuid.uuid4().hex[:8]}"
                now = datetime.now(timezone.utc).isoformat()
                events = []
                for i, hit in enumerate(hits):
                    version = hit.get("model_version") or body["model_version"]
                    base = {"session_id": session_id, "user_id": user_id, "item_id": hit["item_id"],
                            "query_id": query_id_for(text), "query_text": text, "position": i + 1, "surface": "search",
                            "model_version": version, "price_seen": hit.get("price"), "ts": now}
                    mine = stats["by_model"].setdefault(version, {"impressions": 0, "clicks": 0, "purchases": 0})
                    mine["impressions"] += 1
                    events.append({**base, "event_type": "impression"})
                    for happened, event_type, counted in ((click[i], "click", "clicks"), (cart[i], "add_to_cart", None),
                                                          (purchase[i], "purchase", "purchases")):
                        if happened:
                            events.append({**base, "event_type": event_type})
                            if counted:
                                stats[counted] += 1
                                mine[counted] += 1
                stats["impressions"] += n
                clicked_at = pos[click]
                if len(clicked_at):
                    gains.append(click_ndcg(clicked_at))
                if client.post("/feedback", json={"events": events}).status_code != 200:
                    stats["errors"] += 1
                stats["sessions"] += 1
        stats["ctr"] = round(stats["clicks"] / max(stats["impressions"], 1), 4)
        stats["purchase_rate"] = round(stats["purchases"] / max(stats["impressions"], 1), 4)
        stats["online_ndcg"] = round(float(np.mean(gains)), 4) if gains else None
        stats["seconds"] = round(time.monotonic() - started, 1)
        return stats
