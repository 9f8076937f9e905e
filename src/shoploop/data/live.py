"""Live mode: simulated shoppers driving a running service over HTTP, as a real client would.

Each shopper searches with a query from the judged pool, examines the answer top-down with the
same position-based click model as the simulator (examination falls with rank, attraction follows
the graded relevance), and posts the impressions, clicks and purchases to /feedback.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import httpx
import numpy as np
import pandas as pd


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
