"""The monitor's decision on crafted windows, and online quality read from crafted event logs."""

from datetime import datetime, timedelta

import pandas as pd
import pytest

from shoploop.monitoring.decision import Thresholds, ctr_drop_p_value, decide
from shoploop.monitoring.monitor import online_quality

CALM = {"drifted_columns": 1, "drift_share": 0.125,
        "columns": {"model_score": {"method": "Wasserstein distance (normed)", "value": 0.02, "threshold": 0.1,
                                    "drifted": False}}}


def _online(**windows) -> dict:
    """windows: name=[(version, impressions, clicks), ...] -> the shape online_quality returns."""
    return {name: {v: {"search": {"impressions": n, "clicks": c, "ctr": c / n}} for v, n, c in rows}
            for name, rows in windows.items()}


CHAMPION = {"tag": "m:2", "previous": None}


def test_nothing_moved_nothing_to_do():
    got = decide(CALM, _online(reference=[("m:2", 2000, 400)], current=[("m:2", 1000, 195)]), CHAMPION)
    assert got["decision"] == "none" and not got["reasons"]
    assert any("data drift" in c for c in got["checked"]) and any("online quality" in c for c in got["checked"])


def test_data_drift_retrains():
    category = {"method": "Jensen-Shannon distance", "value": 0.21, "threshold": 0.1, "drifted": True}
    drifted = {**CALM, "drifted_columns": 1, "drift_share": 0.1429, "columns": {**CALM["columns"], "category": category}}
    got = decide(drifted, _online(reference=[("m:2", 2000, 400)], current=[("m:2", 1000, 200)]), CHAMPION)
    assert got["decision"] == "retrain" and got["reasons"] == [
        "data drift: 1 of 1 watched columns drifted: category (Jensen-Shannon distance 0.21, threshold 0.1)"]
    # a model input that moved less than Evidently's threshold is checked, not a reason
    calm = {**drifted, "columns": {**drifted["columns"], "category": {**category, "value": 0.04, "drifted": False}}}
    assert decide(calm, {}, CHAMPION)["decision"] == "none"


def test_a_price_move_in_one_category_retrains():
    electronics = {"method": "median price change of the same items", "value": 0.6, "threshold": 0.1, "items": 41,
                   "drifted": True}
    books = {**electronics, "value": 0.0, "items": 37, "drifted": False}
    got = decide({**CALM, "price_moves": {"Electronics": electronics, "Books": books}}, {}, CHAMPION)
    assert got["decision"] == "retrain" and got["reasons"] == [
        "price moves (median price change of the same items): Electronics (+60% over 41 items, threshold 10%)"]
    got = decide({**CALM, "price_moves": {"Books": books}}, {}, CHAMPION)
    assert got["decision"] == "none"
    assert "price moves (median price change of the same items): none in 1 categories" in got["checked"]


def test_prediction_drift_retrains():
    scores = {**CALM, "columns": {"model_score": {**CALM["columns"]["model_score"], "value": 0.3, "drifted": True}}}
    got = decide(scores, {}, CHAMPION)
    assert got["decision"] == "retrain" and got["reasons"] == [
        "prediction drift: model_score Wasserstein distance (normed) 0.3 (threshold 0.1)"]


def test_query_drift_retrains_and_calm_queries_are_reported_as_checked():
    asked = {"method": "classifier ROC AUC", "value": 0.81, "threshold": 0.55, "drifted": True, "queries": [300, 120]}
    got = decide({**CALM, "query_embeddings": asked}, {}, CHAMPION)
    assert got["decision"] == "retrain" and got["reasons"] == ["query drift: embeddings classifier ROC AUC 0.81 (threshold 0.55)"]
    calm = decide({**CALM, "query_embeddings": {**asked, "value": 0.5, "drifted": False}}, {}, CHAMPION)
    assert calm["decision"] == "none" and any(c.startswith("query drift") for c in calm["checked"])


def test_a_significant_fall_in_click_through_retrains():
    got = decide(CALM, _online(reference=[("m:2", 2000, 400)], current=[("m:2", 2000, 240)]), CHAMPION)
    assert got["decision"] == "retrain" and "CTR 0.2000 -> 0.1200" in got["reasons"][0]


@pytest.mark.parametrize("current, why", [
    (("m:2", 300, 54), "p "),                         # 0.20 -> 0.18: within noise on 300 impressions
    (("m:2", 100, 5), "too few impressions"),         # a steep fall, on too little traffic to trust
])
def test_noise_and_thin_traffic_never_retrain(current, why):
    got = decide(CALM, _online(reference=[("m:2", 2000, 400)], current=[current]), CHAMPION)
    assert got["decision"] == "none" and why in got["checked"][-1]


def test_a_new_champion_worse_online_than_its_predecessor_rolls_back():
    promoted = {"tag": "m:3", "previous": "m:2"}
    online = _online(reference=[("m:2", 3000, 600)], current=[("m:3", 1500, 150), ("m:2", 10, 2)])
    got = decide(CALM, online, promoted)
    assert got["decision"] == "rollback" and got["rollback_to"] == "m:2"
    assert got["reasons"][0].startswith("champion m:3 against m:2: CTR")


def test_a_new_champion_as_good_as_its_predecessor_stays():
    promoted = {"tag": "m:3", "previous": "m:2"}
    got = decide(CALM, _online(reference=[("m:2", 3000, 600)], current=[("m:3", 1500, 310)]), promoted)
    assert got["decision"] == "none"


def test_the_drop_test_is_one_sided_and_calibrated():
    assert ctr_drop_p_value(200, 1000, 200, 1000) == pytest.approx(0.5)
    assert ctr_drop_p_value(200, 1000, 150, 1000) < 0.01 < 0.99 < ctr_drop_p_value(150, 1000, 200, 1000)
    assert Thresholds().alpha == 0.05


def test_online_quality_per_window_version_and_position():
    t0 = datetime(2026, 11, 20, 12)
    late = t0 + timedelta(days=8)  # the current window: the last two days

    def slate(session, version, ts, clicked_at=(), bought_at=(), items=("a", "b", "c", "d")):
        rows = [dict(session_id=session, query_id="q1", item_id=item, event_type="impression", position=p + 1,
                     surface="search", model_version=version, ts=ts) for p, item in enumerate(items)]
        rows += [dict(session_id=session, query_id="q1", item_id=items[p - 1], event_type="click", position=p,
                      surface="search", model_version=version, ts=ts) for p in clicked_at]
        rows += [dict(session_id=session, query_id="q1", item_id=items[p - 1], event_type="purchase", position=p,
                      surface="search", model_version=version, ts=ts) for p in bought_at]
        return rows

    events = pd.DataFrame(slate("s1", "m:1", t0, clicked_at=[1]) + slate("s2", "m:1", t0)
                          + slate("s3", "m:2", late, clicked_at=[3], bought_at=[3]) + slate("s4", "m:2", late, clicked_at=[1, 2]))
    got = online_quality(events, tail_items={"c", "d"})
    old, new = got["reference"]["m:1"]["search"], got["current"]["m:2"]["search"]
    assert (old["impressions"], old["clicks"], old["ctr"], old["slates_clicked"]) == (8, 1, 0.125, 0.5)
    assert old["ctr_by_position"] == {1: 0.5, 2: 0.0, 3: 0.0, 4: 0.0} and old["online_ndcg@10"] == 1.0
    assert new["purchases"] == 1 and new["purchase_rate"] == 0.125 and new["slates_clicked"] == 1.0
    # s3: one click at 3 -> 1/log2(4) = 0.5; s4: clicks at 1 and 2 -> 1.0
    assert new["online_ndcg@10"] == pytest.approx(0.75) and new["long_tail_exposure"] == 0.5


def test_price_moves_pair_items_so_a_new_mix_of_items_is_not_a_move():
    import numpy as np

    from shoploop.monitoring.drift import price_moves

    rng = np.random.default_rng(0)
    items = [f"e{i}" for i in range(30)] + [f"b{i}" for i in range(30)]
    price = dict(zip(items, rng.uniform(5, 500, len(items))))
    category = {i: "Electronics" if i.startswith("e") else "Books" for i in items}

    def shown(names, factor):
        return pd.DataFrame({"item_id": names, "category": [category[i] for i in names],
                             "log_price_seen": [np.log(price[i] * (factor if category[i] == "Electronics" else 1)) for i in names]})

    reference = shown(items * 3, 1.0)
    cheap_books = sorted((i for i in items if i.startswith("b")), key=price.get)[:22]  # shoppers turn to cheap books
    current = shown([i for i in items if i.startswith("e")] + cheap_books * 4, 1.6)
    moves = price_moves(reference, current)
    assert moves["Electronics"]["drifted"] and moves["Electronics"]["value"] == pytest.approx(0.6)
    assert moves["Books"] == {**moves["Books"], "value": 0.0, "items": 22, "drifted": False}
    assert "Books" not in price_moves(reference, shown(cheap_books[:10], 1.0))  # too few items to say


def test_a_wave_of_new_items_retrains_and_the_usual_arrivals_do_not():
    wave = {"method": "new items against the reference's daily rate (Poisson)", "items": 56, "expected": 6.3,
            "p_value": 1e-20, "share": 0.054, "threshold": 0.01, "drifted": True}
    got = decide({**CALM, "arrivals": wave}, {}, CHAMPION)
    assert got["decision"] == "retrain" and got["reasons"] == [
        "new items: 56 arrived in the current window (5.4% of the catalog), 6.3 expected at the reference's rate (p 1e-20)"]
    usual = {**wave, "items": 7, "p_value": 0.39, "share": 0.007, "drifted": False}
    assert decide({**CALM, "arrivals": usual}, {}, CHAMPION)["decision"] == "none"


def test_a_column_empty_in_a_window_is_left_out_with_its_reason():
    import numpy as np

    from shoploop.monitoring.drift import COLUMNS, watchable

    reference = pd.DataFrame({c: [1.0, 2.0] for c in COLUMNS})
    current = reference.assign(click_position=np.nan)  # nobody clicked lately
    watched, unwatched = watchable(reference.assign(new_item=None), current)
    assert unwatched == {"click_position": "no value in the current window", "new_item": "no value in the reference window"}
    assert watched == [c for c in COLUMNS if c not in unwatched]


def test_one_monitor_run_at_a_time_in_a_home(tmp_path):
    # given a monitor run holding the home's lock (the hourly DAG's) / when another starts (a person's) /
    # then it waits for the first to end instead of writing the same reports and workspace at once
    import fcntl
    import threading
    from datetime import date

    from shoploop.pipeline import operate
    from shoploop.settings import Settings

    settings = Settings(home=tmp_path)
    settings.run_dir.mkdir(parents=True)
    done = []
    with open(settings.run_dir / "monitor.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        second = threading.Thread(target=lambda: done.append(operate.monitor(settings, date(2026, 11, 29))))
        second.start()
        second.join(2)
        assert second.is_alive() and not done
    second.join(30)
    assert done and done[0]["decision"] == "retrain" and done[0]["reasons"] == ["no model serves yet"]
