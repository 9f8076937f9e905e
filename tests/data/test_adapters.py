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


@pytest.mark.parametrize("relevance, grade", [(1.0, 0), (1.33, 0.5), (1.67, 1), (2.0, 1.5), (2.25, 1.9), (2.33, 2), (2.67, 2.5), (3.0, 3)])
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
    pd.DataFrame({"query_id": ["q1", None, "q1", "q2", "q3"], "query_text": ["pan", "pot", "pan", "lid", "lid"],
                  "item_id": ["i1", "i2", "i3", "i1", "i2"],
                  "grade": [3, 1, 2.5, 7, "high"]}).to_csv(tmp_path / "judgments.csv", index=False)
    landed = adapters.read("generic", tmp_path, LANDED_AT)
    # then a mean rater score keeps its fraction; a row with no key or a grade off the 0..3 scale is quarantined
    _fits_contract(landed)
    assert landed.tables["judgments"]["grade"].tolist() == [3.0, 2.5]
    assert landed.quarantine["reason"].tolist() == ["missing query_id", "grade '7' is not a number from 0 to 3",
                                                    "grade 'high' is not a number from 0 to 3"]
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


# --- malformed files: one clear line or a quarantine row, never a parser's traceback -----------------
def _amazon(folder: Path, reviews: bytes | None = None) -> None:
    import gzip

    meta = b'{"asin": "A1", "title": "Gift card", "price": "$25.00"}\n'
    (folder / "meta_Shop.json.gz").write_bytes(gzip.compress(meta))
    review = b'{"asin": "A1", "reviewerID": "r1", "overall": 5.0, "unixReviewTime": 1500000000}\n'
    (folder / "Shop_5.json.gz").write_bytes(gzip.compress(review if reviews is None else reviews))


def _esci(folder: Path) -> None:
    import zstandard

    products = b'{"product_id": "P1", "product_title": "Red pan"}\n'
    (folder / "sample-products.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(products))
    pd.DataFrame({"query_id": [1], "query": ["pan"], "product_id": ["P1"], "esci_label": ["E"]}).to_parquet(
        folder / "test-sample.parquet")


def _unisrec(folder: Path) -> None:
    import gzip

    (folder / "Shop.item.json.gz").write_bytes(gzip.compress(b'{"0": {"title": "Stapler"}, "1": {"title": "Pen"}}'))
    pd.DataFrame({"user_id": [7], "history_item_id": ["[0]"], "item_id": [1]}).to_csv(
        folder / "Shop.valid.csv.gz", index=False)


def _homedepot(folder: Path) -> None:
    pd.DataFrame({"id": [1], "product_uid": [100001], "product_title": ["Angle bracket"],
                  "search_term": ["angle bracket"], "relevance": [3.0]}).to_csv(folder / "train.csv", index=False)


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: len(file.read_bytes()) // 2])


def _utf16(file: Path) -> None:
    file.write_bytes(file.read_text(encoding="utf-8").encode("utf-16"))


def _break_amazon_gzip(f):
    _amazon(f)
    _truncate(f / "Shop_5.json.gz")


def _break_esci_zst(f):
    _esci(f)
    _truncate(f / "sample-products.jsonl.zst")


def _break_unisrec_gzip(f):
    _unisrec(f)
    _truncate(f / "Shop.item.json.gz")


def _break_homedepot_zip(f):
    import zipfile

    _homedepot(f)
    with zipfile.ZipFile(f / "train.csv.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.write(f / "train.csv", "train.csv")
    (f / "train.csv").unlink()
    _truncate(f / "train.csv.zip")


def _break_amazon_encoding(f):
    import gzip

    _amazon(f)
    (f / "Shop_5.json.gz").write_bytes(gzip.compress(
        '{"asin": "A1", "reviewerID": "r1", "overall": 5.0, "unixReviewTime": 1500000000}\n'.encode("utf-16")))


def _break_generic_encoding(f):
    (f / "items.csv").write_bytes("item_id,title\ni1,Crème brûlée dish\n".encode("utf-16"))


def _break_recbole_encoding(f):
    (f / "shop.inter").write_bytes("user_id:token\titem_id:token\ttimestamp:float\nu1\ti1\t1600000000\n".encode("utf-16"))


def _break_homedepot_columns(f):
    _homedepot(f)
    pd.read_csv(f / "train.csv").drop(columns="relevance").to_csv(f / "train.csv", index=False)


def _break_recbole_columns(f):
    (f / "shop.inter").write_text("user_id:token\ttimestamp:float\nu1\t1600000000\n")


def _break_unisrec_columns(f):
    _unisrec(f)
    pd.DataFrame({"user_id": [7], "item_id": [1]}).to_csv(f / "Shop.valid.csv.gz", index=False)


def _break_esci_columns(f):
    _esci(f)
    pd.DataFrame({"query": ["pan"], "product_id": ["P1"]}).to_parquet(f / "test-sample.parquet")


def _break_generic_columns(f):
    pd.DataFrame({"item_id": ["i1"]}).to_csv(f / "items.csv", index=False)


@pytest.mark.parametrize("fmt, damage, fault", [
    ("amazon2018", _break_amazon_gzip, "Shop_5.json.gz: truncated or corrupt compressed file"),
    ("esci", _break_esci_zst, "sample-products.jsonl.zst: truncated or corrupt compressed file"),
    ("unisrec", _break_unisrec_gzip, "Shop.item.json.gz: truncated or corrupt compressed file"),
    ("homedepot", _break_homedepot_zip, "train.csv.zip: truncated or corrupt compressed file"),
    ("amazon2018", _break_amazon_encoding, "Shop_5.json.gz: none of its 2 lines is a UTF-8 JSON object"),
    ("generic", _break_generic_encoding, "items.csv: not utf-8 text"),
    ("recbole", _break_recbole_encoding, "shop.inter: not utf-8 text"),
    ("homedepot", _break_homedepot_columns, "train.csv: missing column(s) relevance"),
    ("recbole", _break_recbole_columns, "shop.inter: missing column(s) item_id"),
    ("unisrec", _break_unisrec_columns, "Shop.valid.csv.gz: missing column(s) history_item_id"),
    ("esci", _break_esci_columns, "test-sample.parquet: missing column(s) esci_label, query_id"),
    ("generic", _break_generic_columns, "items.csv: missing contract columns"),
])
def test_a_malformed_file_gives_one_line_naming_the_file_and_the_fault(tmp_path, fmt, damage, fault):
    damage(tmp_path)
    with pytest.raises(adapters.MalformedSource) as error:
        adapters.read(fmt, tmp_path, LANDED_AT)
    message = str(error.value)
    assert "\n" not in message and fault in message, message


def test_every_fixture_lands_before_it_is_broken(tmp_path):
    for fmt, make in [("amazon2018", _amazon), ("esci", _esci), ("unisrec", _unisrec), ("homedepot", _homedepot)]:
        folder = tmp_path / fmt
        folder.mkdir()
        make(folder)
        landed = adapters.read(fmt, folder, LANDED_AT)
        _fits_contract(landed)
        assert len(landed.tables["items"]) >= 1 and landed.quarantine.empty, fmt


def test_bad_json_lines_are_quarantined_and_the_rest_lands(tmp_path):
    _amazon(tmp_path, reviews=b'{"asin": "A1", "reviewerID": "r1", "overall": 5.0, "unixReviewTime": 1500000000}\n'
                              b'{"asin": "A1", "reviewerID": \n' b'[1, 2]\n' b'\xff\xfe{"asin": "A1"}\n')
    landed = adapters.read("amazon2018", tmp_path, LANDED_AT)
    _fits_contract(landed)
    assert len(landed.tables["reviews"]) == 1
    reasons = landed.quarantine["reason"].tolist()
    assert len(reasons) == 3 and all(r.startswith("line ") for r in reasons), reasons
    assert "a JSON list, not an object" in reasons[1] and "utf-8" in reasons[2].lower()


def test_a_one_gigabyte_line_is_never_read_whole(tmp_path):
    # One 1 GiB line with no newline: JSON lines quarantine it (read in 16 MiB pieces) and land the
    # rest; a table file (CSV) is refused in one line before pandas would try to hold it.
    blob = tmp_path / "blob"
    with blob.open("wb") as f:
        f.write(b'{"asin": "A1", "reviewerID": "r1", "overall": 5.0, "unixReviewTime": 1500000000}\n')
        chunk = b"x" * 2**24
        for _ in range(64):
            f.write(chunk)
    amazon, generic = tmp_path / "amazon", tmp_path / "generic"
    amazon.mkdir(), generic.mkdir()
    _amazon(amazon)
    (amazon / "Shop_5.json.gz").unlink()
    blob.rename(amazon / "Shop_5.json")
    landed = adapters.read("amazon2018", amazon, LANDED_AT)
    assert len(landed.tables["reviews"]) == 1
    assert landed.quarantine["reason"].tolist() == ["line 2 unreadable: longer than 16 MiB"]
    (amazon / "Shop_5.json").rename(generic / "items.csv")
    with pytest.raises(adapters.MalformedSource, match="items.csv: line 2 is longer than 16 MiB"):
        adapters.read("generic", generic, LANDED_AT)


def test_the_cli_says_what_is_wrong_in_one_line(tmp_path):
    import os
    import subprocess
    import sys

    _break_homedepot_zip(tmp_path)
    shoploop = Path(sys.executable).parent / "shoploop"
    result = subprocess.run([str(shoploop), "ingest", "homedepot", str(tmp_path), "--run-date", "2026-11-29"],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "SHOPLOOP_HOME": str(tmp_path / "home")})
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "train.csv.zip: truncated or corrupt compressed file" in result.stderr
