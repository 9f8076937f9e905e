"""Training reads the marts in a fixed order: DuckDB writes them in none, and batches, samples and
query order follow row order, so two trainings on the same data would otherwise differ."""

import pandas as pd

from shoploop.models.train import load_training_data
from shoploop.settings import Settings


def _write_marts(home, seed: int | None) -> Settings:
    marts = home / "marts"
    marts.mkdir(parents=True)
    shuffle = (lambda f: f.sample(frac=1.0, random_state=seed)) if seed is not None else (lambda f: f)
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(6)], "title": "t", "brand": "b",
                          "category_path": "c", "price": 1.0, "item_text": "text"})
    ts = pd.Timestamp("2026-11-28")
    pairs = pd.DataFrame(
        [{"query_id": f"q{q}", "query_text": f"query {q}", "item_id": f"i{i}", "label_source": "judgment",
          "grade": float((q + i) % 4), "position": None, "clicked": None, "event_timestamp": ts}
         for q in range(5) for i in range(6)]
        + [{"query_id": f"q{q}", "query_text": f"query {q}", "item_id": f"i{p}", "label_source": "click_log",
            "grade": None, "position": float(p + 1), "clicked": p % 2 == 0, "event_timestamp": ts + pd.Timedelta(hours=q)}
           for q in range(5) for p in range(4)])
    histories = pd.DataFrame({"user_key": ["u1", "u1", "u2"], "item_id": ["i1", "i2", "i3"],
                              "first_engaged_at": [ts, ts, ts]})
    for name, frame in (("item_text", items), ("ranker_training_pairs", pairs), ("user_histories", histories)):
        shuffle(frame).to_parquet(marts / f"{name}.parquet", index=False)
    return Settings(home=home)


def test_training_data_does_not_depend_on_mart_row_order(tmp_path):
    base = load_training_data(_write_marts(tmp_path / "a", None))
    shuffled = load_training_data(_write_marts(tmp_path / "b", 3))
    for name in ("catalog", "judgments", "logs", "histories"):
        pd.testing.assert_frame_equal(getattr(base, name), getattr(shuffled, name), obj=name)
    assert base.item_text == shuffled.item_text
