"""Adapters on the real datasets in ../shared/datasets (read in place), plus small format fixtures."""

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from shoploop.data import adapters, landing

DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"
LANDED_AT = datetime(2026, 11, 29)
needs_datasets = pytest.mark.skipif(not DATASETS.exists(), reason=f"real datasets not found at {DATASETS}")


def _fits_contract(landed: adapters.Landing) -> None:
    for name, frame in landed.tables.items():
        assert landing.to_table(name, frame).num_rows == len(frame)
    landing.to_table("quarantine", landed.quarantine)


@needs_datasets
def test_amazon_2018_gift_cards():
    landed = adapters.read("amazon2018", DATASETS / "amazon_gift_cards", LANDED_AT)
    _fits_contract(landed)
    items, reviews = landed.tables["items"], landed.tables["reviews"]
    assert len(items) == 1547 and len(reviews) == 2972
    assert reviews["user_id"].nunique() == 458
    # "$25.00" strings became numbers; HTML/CSS left in a price field is not a price
    assert items["price"].dropna().between(1, 5000).all() and items["price"].notna().sum() > 300
    assert items["attributes"].str.contains("unparseable price").sum() >= 1
    # every review is a purchase event on a known item, and reviewer names never land
    assert set(landed.tables["events"]["item_id"]) <= set(items["item_id"])
    assert not any("reviewerName" in str(v) for v in landed.tables["users"].to_numpy().ravel())


@needs_datasets
def test_unisrec_office_products():
    landed = adapters.read("unisrec", DATASETS / "amazon_office_products", LANDED_AT)
    _fits_contract(landed)
    items, events = landed.tables["items"], landed.tables["events"]
    assert len(items) == 3459
    # histories keep their order on the synthetic clock, one session per user
    first_user = events[events["user_id"] == events["user_id"].iat[0]]
    assert first_user["ts"].is_monotonic_increasing and first_user["session_id"].nunique() == 1
    assert set(events["item_id"]) <= set(items["item_id"])


@needs_datasets
def test_homedepot_search_relevance():
    # given Home Depot's real graded pairs / when landed
    landed = adapters.read("homedepot", DATASETS / "homedepot_search", LANDED_AT)
    _fits_contract(landed)
    items, judgments = landed.tables["items"], landed.tables["judgments"]
    # then every product is an item with its title, every (query, product) pair a judgment on 0..3
    assert len(items) == 54_667 and items["item_id"].is_unique and items["title"].notna().all()
    assert judgments["query_id"].nunique() == 11_793 and judgments["grade"].between(0, 3).all()
    assert set(judgments["item_id"]) <= set(items["item_id"])
    assert judgments.groupby("query_id").size().median() == 7  # sparse: a handful of judged products a query


@pytest.mark.parametrize("relevance, grade", [(1.0, 0), (1.33, 1), (1.67, 1), (2.0, 2), (2.33, 2), (2.67, 3), (3.0, 3)])
def test_homedepot_mean_rater_scores_map_onto_the_grade_scale(relevance, grade):
    assert adapters.homedepot_grade(relevance) == grade


def test_homedepot_rows_without_a_query_are_quarantined(tmp_path):
    pd.DataFrame({"id": [1, 2], "product_uid": [100001, 100002], "product_title": ["Angle bracket", "Deck paint"],
                  "search_term": ["angle bracket", None], "relevance": [3.0, 2.0]}).to_csv(tmp_path / "train.csv", index=False)
    landed = adapters.read("homedepot", tmp_path, LANDED_AT)
    assert len(landed.tables["judgments"]) == 1 and landed.quarantine["reason"].str.contains("missing").all()


@needs_datasets
def test_esci_sample():
    landed = adapters.read("esci", DATASETS / "esci_sample", LANDED_AT)
    _fits_contract(landed)
    assert len(landed.tables["items"]) == 16
    judgments = landed.tables["judgments"]
    assert len(judgments) == 16 and set(judgments["grade"]) <= {0, 1, 2, 3}
    assert set(judgments["item_id"]) <= set(landed.tables["items"]["item_id"])


def test_recbole_atomic_files_with_a_bad_row(tmp_path):
    (tmp_path / "shop.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "u1\ti1\t5\t1600000000\nu1\ti2\t4\t1600000100\nu2\ti1\t3\tnot-a-time\n")
    (tmp_path / "shop.item").write_text("item_id:token\ttitle:token_seq\tprice:float\ni1\tRed pan\t20\ni2\t\t5\n")
    landed = adapters.read("recbole", tmp_path, LANDED_AT)
    _fits_contract(landed)
    assert landed.tables["items"]["item_id"].tolist() == ["i1"]
    assert len(landed.tables["events"]) == 2
    assert sorted(landed.quarantine["reason"]) == ["missing title", "missing user_id, item_id or timestamp"]


def test_generic_layout_and_its_errors(tmp_path):
    pd.DataFrame({"query_id": ["q1", None], "query_text": ["pan", "pot"], "item_id": ["i1", "i2"],
                  "grade": [3, 1]}).to_csv(tmp_path / "judgments.csv", index=False)
    landed = adapters.read("generic", tmp_path, LANDED_AT)
    assert len(landed.tables["judgments"]) == 1 and landed.quarantine["reason"].tolist() == ["missing query_id"]
    pd.DataFrame({"item_id": ["i1"]}).to_csv(tmp_path / "items.csv", index=False)
    with pytest.raises(ValueError, match="missing contract columns"):
        adapters.read("generic", tmp_path, LANDED_AT)


@pytest.mark.parametrize("raw, price", [("$25.00", 25.0), ("$1,250.00", 1250.0), ("$10.00 - $50.00", 10.0),
                                        ("", None), (None, None), ('<div class="a">', None), (0, None)])
def test_price_parsing(raw, price):
    assert adapters.parse_price(raw)[0] == price


def test_unknown_format_names_the_choices(tmp_path):
    with pytest.raises(ValueError, match="amazon2018, esci"):
        adapters.read("csvish", tmp_path, LANDED_AT)
