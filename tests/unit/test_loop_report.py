"""The loop's report: every stage with its time, the click-through per phase, each monitor decision
and the registry's promotions, and the plots beside them."""

from pathlib import Path

from shoploop.pipeline import loop
from shoploop.settings import Settings


def test_the_report_shows_each_stage_decision_and_promotion(tmp_path: Path):
    settings = Settings(home=tmp_path)
    phases = {"before_drift": 0.22, "drift_started": 0.21, "drifted_stale": 0.19, "drifted_fresh": 0.2}
    result = {
        "run_date": "2026-11-30", "home": str(tmp_path), "drift": "trend_shift@2026-11-29", "scale": loop.SCALE,
        "stale": "m:old", "fresh": "m:new", "champion": "m:new", "drift_to_serving_s": 953.2, "drift_to_challenger_s": 720.0,
        "stages": [{"stage": "shop", "seconds": 400.0, "ended_s": 400.0, "line": "serves m:old"},
                   {"stage": "retrain", "seconds": 560.0, "ended_s": 1000.0, "line": "m:new: offline gate passed"}],
        "ctr": phases, "purchase_rate": phases, "online_ndcg": phases,
        "monitors": [{"at_s": 600.0, "why": "after the refresh", "decision": "retrain", "reasons": ["new items: 94 arrived"]}],
        "history": [{"at": "2026-11-30T22:50:48+00:00", "event": "promotion", "tag": "m:new", "replaced": "m:old",
                     "reason": "online: the challenger is better"}],
    }
    path = loop.write_report(settings, result)
    text = path.read_text()
    assert "| retrain | 560 | m:new: offline gate passed |" in text
    assert "15.9 minutes" in text and "challenger, interleaved, after 12.0 minutes" in text and "new items: 94 arrived" in text and "**promotion** m:new" in text
    assert "| 0.19 |" in text and (path.parent / "loop.png").stat().st_size > 10_000
    assert (path.parent / "loop.json").exists()
