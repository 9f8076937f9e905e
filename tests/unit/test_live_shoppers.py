"""The simulator's shoppers in live mode: the instrument `make loop` measures click-through with.
A stand-in service (httpx's MockTransport) answers /search from the simulator's own truth, so what
is checked is the shoppers: the same sessions meet the same luck, better answers earn more clicks,
and a trend shift moves what they ask for."""

import json
from datetime import date

import httpx
import numpy as np
import pytest

from shoploop.data.live import MarketShoppers
from shoploop.data.relevance import CATEGORIES
from shoploop.settings import Settings

RUN_DATE = date(2026, 11, 30)


@pytest.fixture(scope="module")
def shoppers(tmp_path_factory):
    settings = Settings(home=tmp_path_factory.mktemp("home"), n_items=400, n_users=200, n_days=5, sessions_per_day=50,
                        drift="trend_shift@2026-11-29,new_items@2026-11-29")
    return MarketShoppers(settings, RUN_DATE)


def shop(shoppers, best_first: bool):
    """/search ranks by the true grade (best first) or worst first; /feedback records what was posted."""
    catalog, posted, asked = shoppers.catalog, [], []
    text_to_query = {t: i for i, t in enumerate(shoppers.pool["query_text"])}

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path == "/feedback":
            posted.extend(body["events"])
            return httpx.Response(200, json={"accepted": len(body["events"])})
        q = text_to_query[body["query"]]
        asked.append(int(shoppers.pool["category"].iloc[q]))
        order = np.argsort(-shoppers.grades(q) if best_first else shoppers.grades(q), kind="stable")[:body["k"]]
        return httpx.Response(200, json={"model_version": "m", "items": [
            {"item_id": catalog.frame["item_id"].iloc[i], "price": float(catalog.price[i])} for i in order]})

    return httpx.MockTransport(answer), posted, asked


def test_the_same_sessions_meet_the_same_luck(shoppers):
    runs = []
    for _ in range(2):
        transport, posted, _ = shop(shoppers, best_first=True)
        runs.append((shoppers.run("http://shop", 60, drifted=False, transport=transport), posted))
    (first, events_a), (second, events_b) = runs
    assert first["clicks"] == second["clicks"] > 0 and first["impressions"] == 600
    strip = lambda events: [(e["user_id"], e["query_text"], e["item_id"], e["event_type"]) for e in events]  # noqa: E731
    assert strip(events_a) == strip(events_b)


def test_better_answers_earn_more_clicks_from_the_same_shoppers(shoppers):
    good, _, _ = shop(shoppers, best_first=True)
    bad, posted, _ = shop(shoppers, best_first=False)
    best = shoppers.run("http://shop", 300, drifted=True, transport=good)
    worst = shoppers.run("http://shop", 300, drifted=True, transport=bad)
    assert best["ctr"] > 2 * worst["ctr"] and best["errors"] == worst["errors"] == 0
    # what was posted is a shop's feedback: an impression per position, each click on a shown item
    shown = {(e["session_id"], e["item_id"]) for e in posted if e["event_type"] == "impression"}
    assert all((e["session_id"], e["item_id"]) in shown for e in posted if e["event_type"] == "click")
    assert sorted({e["position"] for e in posted}) == list(range(1, 11))


def test_a_trend_shift_moves_what_shoppers_ask_for(shoppers):
    sports = CATEGORIES.index("Sports & Outdoors")
    shares = []
    for drifted in (False, True):
        transport, _, asked = shop(shoppers, best_first=True)
        shoppers.run("http://shop", 400, drifted=drifted, first=5000, transport=transport)
        shares.append(np.mean(np.array(asked) == sports))
    assert shares[1] > shares[0] + 0.2
