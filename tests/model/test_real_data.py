"""The loop on the data a real shop has, with no simulator judgments: search logs alone (a simulated
shop with its judgments removed), sparse human labels (a slice of Home Depot's real relevance set),
and a catalog with purchase histories and no search signal (a slice of Amazon Office Products)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path

import pandas as pd
import pytest
from conftest import RUN_DATE

pytestmark = pytest.mark.slow
DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"
needs_datasets = pytest.mark.skipif(not DATASETS.exists(), reason=f"real datasets not found at {DATASETS}")


@pytest.fixture(autouse=True)
def _own_environment():
    """Feast and the registry export a home to the environment (Feast's yaml and BentoML read it there):
    give the process back the environment it had, so later tests see their own home."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _home(tmp_path: Path, **overrides):
    from shoploop.settings import Settings

    # a short fine-tuning: the loop on real data is under test, its quality is bench/relevance_quality.py's
    return Settings(home=tmp_path / "home", pseudonym_key="real-data-test-key-0123456789", finetune_max_steps=10,
                    **overrides)


def _build(settings) -> tuple[dict, dict, dict]:
    from shoploop.pipeline import steps

    steps.land(settings, RUN_DATE)
    steps.transform(settings, RUN_DATE, full_refresh=True)
    steps.feature_store(settings, RUN_DATE)
    report = steps.train(settings, RUN_DATE)
    steps.compress(settings, RUN_DATE)
    metrics = steps.evaluate(settings, RUN_DATE)
    return report, metrics, steps.register(settings, RUN_DATE)


def _real_loop(tmp_path: Path, fmt: str, make_slice) -> tuple:
    """A home landing a slice of a shared dataset through its adapter, and the loop built on it."""
    # the student distils on a sample of 256 texts: the loop on real data is under test, not the compression
    settings = _home(tmp_path, source=f"{fmt}:{make_slice(tmp_path / fmt)}", distil_max_texts=256)
    return settings, _build(settings)


def _served(settings):
    from shoploop.serving.predict import served_engine

    return served_engine(settings)[1]


def test_a_shop_with_logs_and_no_judgments_trains_and_serves(tmp_path):
    # given a small simulated shop whose judgments are removed: impressions, clicks, carts, purchases only
    from shoploop.data import landing

    settings = _home(tmp_path, n_items=300, n_users=200, n_days=4, sessions_per_day=150)
    from shoploop.pipeline import steps

    steps.land(settings, RUN_DATE)
    landing.write_partition(settings.landing, "judgments", RUN_DATE, pd.DataFrame(columns=list(landing.CONTRACT["judgments"])))
    steps.transform(settings, RUN_DATE, full_refresh=True)
    steps.feature_store(settings, RUN_DATE)
    # when the loop trains, evaluates and registers
    report = steps.train(settings, RUN_DATE)
    metrics = steps.evaluate(settings, RUN_DATE)
    registered = steps.register(settings, RUN_DATE)
    # then it learned from the logs alone, judged on held-out queries' implicit grades, and serves
    assert report["labels"]["mode"] == "logs"
    assert report["click_log_rows"] == report["train_rows"] > 0 and report["encoder"]["finetune"]["triplets"] > 0
    assert report["propensities"][0] == 1.0 and report["propensities"][-1] < report["propensities"][0]
    assert metrics["labels"] == "implicit grades from the search logs" and metrics["n_queries"] >= 5
    assert metrics["model"] > metrics["random"]
    card = Path(registered["model_card"]).read_text()
    assert "## Labels: logs" in card
    if registered["promoted"]:
        hits = _served(settings).search("red skillet", 5)
        assert len(hits) == 5


def _homedepot_slice(folder: Path, every: int = 40) -> Path:
    """One real query in ``every`` (by a stable hash) with all its graded products."""
    raw = pd.read_csv(DATASETS / "homedepot_search" / "train.csv.zip", encoding="latin-1")
    keep = raw["search_term"].map(lambda t: int(hashlib.md5(t.encode()).hexdigest()[:8], 16) % every == 0)
    folder.mkdir(parents=True)
    raw[keep].to_csv(folder / "train.csv", index=False, encoding="latin-1")
    return folder


@needs_datasets
def test_real_relevance_labels_train_as_sparse_judgments_and_serve_the_real_catalog(tmp_path):
    # given a slice of Home Depot's real queries and human grades, no events / when the whole loop runs on it
    settings, (report, metrics, registered) = _real_loop(tmp_path, "homedepot", _homedepot_slice)
    # then judgments are known sparse: unjudged candidates are weak negatives with a measured weight
    labels = report["labels"]
    assert labels["mode"] == "judgments" and labels["judgments"] == "sparse"
    assert labels["unjudged_weight"] < 1.0 and labels["validation_queries"] >= 10
    card = Path(registered["model_card"]).read_text()  # with what each candidate measured on validation queries
    assert "unjudged_weight_validation_spearman" in card and "text_validation_spearman" in card and "ranker_text" in card
    assert report["recommender"]["sasrec"].startswith("not trained")  # no histories: said, not crashed
    # the compression step ran on it, within its bound
    from shoploop.pipeline import operate, steps

    compressed = json.loads((steps.artifacts(settings, RUN_DATE) / "compression.json").read_text())
    assert compressed["distil_texts"] == 256 and compressed["rows"]
    # evaluation ranks each held-out query's judged pool, with rank correlations
    assert metrics["metric"] == "pool_ndcg@10" and metrics["n_queries"] >= 20
    assert metrics["spearman"]["model"] > metrics["spearman"]["random"]
    if registered["promoted"]:
        engine = _served(settings)
        hits = engine.search("cordless drill", 5)
        assert hits and all(h.item_id.startswith("hd") for h in hits)
        assert "drill" in " ".join(h.title.lower() for h in hits)
    # and monitoring says in one line why there is nothing to watch
    if registered["promoted"]:
        assert "no search impressions" in operate.monitor(settings, RUN_DATE)["drift"]["skipped"]


def _office_slice(folder: Path, users: int = 600) -> Path:
    """The histories of ``users`` shoppers and the items they hold (1,792 of the 3,459: encoding the
    catalog is most of this loop's time)."""
    src = DATASETS / "amazon_office_products"
    folder.mkdir(parents=True)
    valid = pd.read_csv(src / "Office_Products.valid.csv.gz")
    histories = valid[valid["user_id"].isin(sorted(valid["user_id"].unique())[:users])]
    held = {str(i) for i in histories["item_id"]}
    held |= {str(i) for h in histories["history_item_id"] for i in json.loads(h)}
    with gzip.open(src / "Office_Products.item.json.gz", "rt") as fh:
        items = {key: item for key, item in json.load(fh).items() if key in held}
    with gzip.open(folder / "Office_Products.item.json.gz", "wt") as fh:
        json.dump(items, fh)
    with gzip.open(folder / "Office_Products.valid.csv.gz", "wt") as fh:
        histories.to_csv(fh, index=False)
    return folder


@needs_datasets
def test_a_catalog_with_histories_and_no_search_signal_serves_zero_shot_search_and_trained_recommendations(tmp_path):
    # given real Office Products items and shoppers' purchase histories, no queries at all / when the
    # whole loop runs on it
    settings, (report, metrics, registered) = _real_loop(tmp_path, "unisrec", _office_slice)
    # then search is the zero-shot retriever (said, not failed), the recommender is trained and judged
    assert report["labels"]["mode"] == "none" and report["encoder"]["finetune"]["steps"] == 0
    assert metrics["n_queries"] == 0 and "no search labels" in metrics["note"]
    rec = metrics["recommend"]
    assert rec["rows"] > 50 and rec["served"]["ndcg@10"] > rec["popularity"]["ndcg@10"]
    assert registered["promoted"], registered["reason"]
    engine = _served(settings)
    assert len(engine.search("stapler", 5)) == 5
    user = next(iter(engine.bundle.user_sequences))
    assert len(engine.recommend(user, 5)) == 5
