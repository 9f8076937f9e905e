"""Adapters: real-data formats landed in the data contract's shape (`shoploop ingest FORMAT PATH`).

Each adapter reads its files where they are and returns contract tables plus a quarantine frame:
rows that cannot be landed (no id, no title, a rating outside 1..5, an unreadable time) are
rejected there with a reason, never dropped silently. Text is landed raw; HTML, CSS and Unicode
cleaning is the warehouse's job (see ``shoploop.data.text`` and the staging models), so the landing
zone keeps what the source said.

Formats: ``amazon2018`` (reviews + ``meta_*`` json, gzipped or not), ``esci`` (products jsonl[.zst]
+ labelled parquet), ``unisrec`` (``*.item.json`` + ``*.valid.csv``/``*.test.csv`` histories),
``recbole`` (atomic ``.inter`` / ``.item`` files), ``homedepot`` (the Kaggle search relevance
``train.csv[.zip]``: product titles and human-graded query-product pairs), ``generic`` (``<table>.csv`` or ``<table>.parquet``
with the contract's columns).
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import re
import zipfile
import zlib
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from shoploop.data.landing import CONTRACT
from shoploop.data.sources import (
    _READING,
    MAX_LINE_BYTES,
    MalformedSource,
    _check_line_lengths,
    _lines,
    _open_binary,
    _reading,
    _require,
)

FORMATS = ("amazon2018", "esci", "unisrec", "recbole", "homedepot", "generic")
ESCI_GRADES = {"E": 3, "S": 2, "C": 1, "I": 0}
# Histories without times (UniSRec splits) keep their order on this synthetic clock: one step a minute.
ORDER_EPOCH = datetime(2018, 1, 1)
_PRICE = re.compile(r"^\$?\s*(\d[\d,]*(?:\.\d+)?)(?:\s*-\s*\$?\s*(\d[\d,]*(?:\.\d+)?))?$")


class Landing:
    """Contract tables being assembled by an adapter, with their quarantine."""

    def __init__(self, source: str):
        self.source = source
        self.tables: dict[str, pd.DataFrame] = {}
        self.rejected: list[dict] = []

    def reject(self, table: str, record: dict, reason: str) -> None:
        self.rejected.append({"source": self.source, "table_name": table,
                              "record": json.dumps(record, default=str)[:4000], "reason": reason})

    def put(self, table: str, frame: pd.DataFrame) -> None:
        for column in CONTRACT[table]:
            if column not in frame:
                frame[column] = None
        self.tables[table] = frame[list(CONTRACT[table])].reset_index(drop=True)

    @property
    def quarantine(self) -> pd.DataFrame:
        return pd.DataFrame(self.rejected, columns=list(CONTRACT["quarantine"]))


def parse_price(raw) -> tuple[float | None, str | None]:
    """'$25.00' -> 25.0; '$10.00 - $50.00' -> 10.0 (the lower bound, noted); '' -> None. Returns (price, note)."""
    if raw is None or (isinstance(raw, float) and pd.isna(raw)):
        return None, None
    if isinstance(raw, (int, float)):
        return (float(raw), None) if raw > 0 else (None, f"non-positive price {raw}")
    text = str(raw).strip()
    if not text:
        return None, None
    match = _PRICE.match(text)
    if not match:
        return None, f"unparseable price {text[:40]!r}"
    low = float(match.group(1).replace(",", ""))
    if low <= 0:
        return None, f"non-positive price {text!r}"
    return low, ("price range, lower bound kept" if match.group(2) else None)


def _read_json_lines(path: Path, out: "Landing", table: str) -> list[dict]:
    """JSON objects, one a line; a line that is not one (too long, not UTF-8, not JSON) is quarantined."""
    rows, rejected = [], 0
    with _open_binary(_reading(path)) as fh:
        for n, line in _lines(fh):
            if line is not None and not line.strip():
                continue
            try:
                if line is None:
                    raise ValueError(f"longer than {MAX_LINE_BYTES // 2**20} MiB")
                row = json.loads(line.decode("utf-8"))
                if not isinstance(row, dict):
                    raise ValueError(f"a JSON {type(row).__name__}, not an object")
            except ValueError as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                out.reject(table, {"file": path.name, "line": n, "head": (line or b"")[:200].decode("utf-8", "replace")},
                           f"line {n} unreadable: {str(error)[:200]}")
                rejected += 1
                continue
            rows.append(row)
    if rejected and not rows:
        raise MalformedSource(f"{path}: none of its {rejected} lines is a UTF-8 JSON object "
                              f"({out.rejected[-1]['reason']}): is it JSON lines?")
    return rows


def _hash_id(*parts) -> str:
    return hashlib.sha1("|".join(str(p) for p in parts).encode()).hexdigest()[:20]


def _first_file(path: Path, *patterns: str) -> Path:
    for pattern in patterns:
        found = sorted(path.glob(pattern))
        if found:
            return _reading(found[0])
    raise FileNotFoundError(f"{path}: none of {patterns} found")


def amazon2018(path: Path, landed_at: datetime) -> Landing:
    out = Landing("amazon2018")
    meta_rows = _read_json_lines(_first_file(path, "meta_*.json.gz", "meta_*.json"), out, "items")
    review_file = _first_file(path, "[!m]*_5.json.gz", "[!m]*.json.gz", "[!m]*_5.json", "[!m]*.json")
    reviews = []
    for r in _read_json_lines(review_file, out, "reviews"):
        if not r.get("asin") or not r.get("reviewerID"):
            out.reject("reviews", r, "missing asin or reviewerID")
        elif r.get("overall") not in (1, 2, 3, 4, 5, 1.0, 2.0, 3.0, 4.0, 5.0):
            out.reject("reviews", r, f"rating {r.get('overall')!r} outside 1..5")
        elif not isinstance(r.get("unixReviewTime"), int):
            out.reject("reviews", r, "missing or unreadable unixReviewTime")
        else:
            reviews.append({
                "review_id": _hash_id(r["reviewerID"], r["asin"], r["unixReviewTime"]), "item_id": r["asin"],
                "user_id": r["reviewerID"], "rating": int(r["overall"]),
                "text": ". ".join(t for t in (r.get("summary"), r.get("reviewText")) if t),
                "ts": datetime.utcfromtimestamp(r["unixReviewTime"]),
            })
    reviews = pd.DataFrame(reviews, columns=list(CONTRACT["reviews"]))
    stats = reviews.groupby("item_id").agg(rating=("rating", "mean"), review_count=("rating", "size"),
                                           first_review=("ts", "min"))
    items = []
    for m in meta_rows:
        if not m.get("asin") or not str(m.get("title") or "").strip():
            out.reject("items", m, "missing asin or title")
            continue
        price, note = parse_price(m.get("price"))
        images = m.get("imageURLHighRes") or m.get("imageURL") or []
        attributes = {"main_cat": m.get("main_cat"), "features": m.get("feature") or [], "price_raw": m.get("price")}
        if note:
            attributes["price_note"] = note
        s = stats.loc[m["asin"]] if m["asin"] in stats.index else None
        items.append({
            "item_id": m["asin"], "title": m["title"], "description": " ".join(m.get("description") or []),
            "brand": m.get("brand") or None, "category_path": " > ".join(m.get("category") or []) or None,
            "attributes": json.dumps(attributes), "price": price, "currency": "USD",
            "image_url": images[0] if images else None,
            "rating": float(s["rating"]) if s is not None else None,
            "review_count": int(s["review_count"]) if s is not None else 0,
            "created_at": s["first_review"] if s is not None else landed_at,
        })
    out.put("items", pd.DataFrame(items))
    out.put("reviews", reviews)
    # A review is a purchase the shopper made: the behaviour the recommender learns from.
    out.put("events", pd.DataFrame({
        "event_id": "rv-" + reviews["review_id"], "ts": reviews["ts"], "session_id": "rv-" + reviews["review_id"],
        "user_id": reviews["user_id"], "event_type": "purchase", "item_id": reviews["item_id"], "surface": None,
    }))
    # Only the pseudonymisable id and first-seen time are kept: reviewerName never lands.
    users = reviews.groupby("user_id", as_index=False)["ts"].min().rename(columns={"ts": "signup_ts"})
    users["attributes"] = "{}"
    out.put("users", users)
    return out


def esci(path: Path, landed_at: datetime) -> Landing:
    out = Landing("esci")
    products_file = _first_file(path, "*products*.jsonl.zst", "*products*.jsonl", "*products*.parquet")
    if products_file.suffix == ".parquet":
        products = pd.read_parquet(products_file)
    else:
        products = pd.DataFrame(_read_json_lines(products_file, out, "items"))
    if "fields" in products:  # Vespa feed format: {"put": "id:...", "fields": {...}}
        products = pd.json_normalize(products["fields"].tolist())
    products = products.rename(columns={"id": "product_id", "product_title": "title",
                                        "product_description": "description", "product_bullet_point": "bullets",
                                        "product_brand": "brand", "product_color": "color", "product_locale": "locale"})
    items = []
    for p in products.to_dict("records"):
        if not p.get("product_id") or not str(p.get("title") or "").strip():
            out.reject("items", p, "missing product_id or title")
            continue
        items.append({"item_id": str(p["product_id"]), "title": p["title"],
                      "description": " ".join(str(x) for x in (p.get("description"), p.get("bullets")) if x and str(x) != "nan"),
                      "brand": p.get("brand") or None,
                      "attributes": json.dumps({"color": p.get("color"), "locale": p.get("locale")}, default=str),
                      "currency": None, "review_count": 0, "created_at": landed_at})
    out.put("items", pd.DataFrame(items))
    labels_file = (_first_file(path, "*.parquet") if products_file.suffix != ".parquet"
                   else _first_file(path, "*sample*.parquet", "*examples*.parquet"))
    labels = _require(pd.read_parquet(labels_file), {"query_id", "query", "product_id", "esci_label"}, labels_file)
    judged = []
    for row in labels.to_dict("records"):
        if row.get("esci_label") not in ESCI_GRADES:
            out.reject("judgments", row, f"esci_label {row.get('esci_label')!r} is not one of E, S, C, I")
            continue
        judged.append({"query_id": f"esci-{row['query_id']}", "query_text": row["query"],
                       "item_id": str(row["product_id"]), "grade": ESCI_GRADES[row["esci_label"]]})
    out.put("judgments", pd.DataFrame(judged))
    return out


def _id_list(raw) -> list:
    value = ast.literal_eval(raw) if isinstance(raw, str) else raw
    return list(value) if isinstance(value, (list, tuple)) else [value]


def unisrec(path: Path, landed_at: datetime) -> Landing:
    """Preprocessed Amazon (UniSRec / MiniOneRec style): items by index, histories in the split files."""
    out = Landing("unisrec")
    item_file = _first_file(path, "*.item.json.gz", "*.item.json")
    with (gzip.open if item_file.suffix == ".gz" else open)(item_file, "rt", encoding="utf-8") as fh:
        catalog = json.load(fh)
    items = []
    for index, m in catalog.items():
        if not str(m.get("title") or "").strip():
            out.reject("items", {"index": index, **m}, "missing title")
            continue
        description = m.get("description") or ""
        try:  # descriptions are often a stringified list of paragraphs
            parts = ast.literal_eval(description) if description.startswith("[") else [description]
            description = " ".join(str(p) for p in parts)
        except (ValueError, SyntaxError):
            pass
        categories = m.get("categories") or ""
        items.append({"item_id": str(index), "title": m["title"], "description": description,
                      "brand": m.get("brand") or None,
                      "category_path": categories.replace(",", " > ") if isinstance(categories, str) else " > ".join(categories),
                      "attributes": "{}", "review_count": 0, "created_at": landed_at})
    out.put("items", pd.DataFrame(items))
    events = []
    for split_file in sorted(path.glob("*.valid.csv*")):
        # Each row is a user's history so far plus the next item; the longest row per user holds it all.
        frame = _require(pd.read_csv(_check_line_lengths(_reading(split_file))),
                         {"user_id", "history_item_id", "item_id"}, split_file)
        frame["n"] = frame["history_item_id"].map(lambda h: len(_id_list(h)))
        for row in frame.sort_values("n").drop_duplicates("user_id", keep="last").to_dict("records"):
            sequence = [*_id_list(row["history_item_id"]), row["item_id"]]
            for step, item_id in enumerate(sequence):
                events.append({"event_id": f"{split_file.name.split('.')[1]}-{row['user_id']}-{step}",
                               "ts": ORDER_EPOCH + timedelta(minutes=step), "session_id": f"hist-{row['user_id']}",
                               "user_id": str(row["user_id"]), "event_type": "purchase", "item_id": str(item_id),
                               "position": None, "surface": "recommend"})
    out.put("events", pd.DataFrame(events, columns=list(CONTRACT["events"])))
    users = pd.DataFrame({"user_id": sorted({e["user_id"] for e in events})})
    users["signup_ts"], users["attributes"] = ORDER_EPOCH, "{}"
    out.put("users", users)
    return out


def _read_atomic(file: Path) -> pd.DataFrame:
    """RecBole atomic file: tab-separated, header fields named ``name:type``."""
    frame = pd.read_csv(_check_line_lengths(_reading(file)), sep="\t", dtype=str, quoting=3)
    frame.columns = [c.split(":")[0] for c in frame.columns]
    return frame


def recbole(path: Path, landed_at: datetime) -> Landing:
    out = Landing("recbole")
    inter_file = _first_file(path, "*.inter")
    inter = _require(_read_atomic(inter_file), {"user_id", "item_id"}, inter_file)
    item_file = sorted(path.glob("*.item"))
    items = _read_atomic(item_file[0]) if item_file else pd.DataFrame({"item_id": inter["item_id"].unique()})
    items = items.rename(columns={"categories": "category_path"})
    if "title" not in items:
        items["title"] = "item " + items["item_id"]
    missing = items["title"].isna() | (items["title"].str.strip() == "")
    for record in items[missing].to_dict("records"):
        out.reject("items", record, "missing title")
    items = items[~missing].copy()
    items["price"] = pd.to_numeric(items.get("price"), errors="coerce")
    items["attributes"], items["review_count"], items["created_at"] = "{}", 0, landed_at
    out.put("items", items)
    ts = pd.to_numeric(inter.get("timestamp"), errors="coerce")
    bad = ts.isna() | inter["user_id"].isna() | inter["item_id"].isna()
    for record in inter[bad].to_dict("records"):
        out.reject("events", record, "missing user_id, item_id or timestamp")
    inter, ts = inter[~bad], ts[~bad]
    out.put("events", pd.DataFrame({
        "event_id": [f"rb-{_hash_id(u, i, t)}" for u, i, t in zip(inter["user_id"], inter["item_id"], ts)],
        "ts": pd.to_datetime(ts, unit="s"), "session_id": "rb-" + inter["user_id"], "user_id": inter["user_id"],
        "event_type": "purchase", "item_id": inter["item_id"], "surface": "recommend",
    }))
    users = out.tables["events"].groupby("user_id", as_index=False)["ts"].min().rename(columns={"ts": "signup_ts"})
    users["attributes"] = "{}"
    out.put("users", users)
    return out


def homedepot_grade(relevance: float) -> float:
    """Home Depot's mean rater score 1 (irrelevant) .. 3 (exact) on the contract's 0..3 grade scale, kept
    fractional in steps of 0.05 (the file writes a third as .33: 1.33 -> 0.5, 2.67 -> 2.5): rounded to whole
    grades the seven levels the raters' means make would fall to four."""
    return float(np.clip(round((relevance - 1.0) * 30) / 20, 0.0, 3.0))


def homedepot(path: Path, landed_at: datetime) -> Landing:
    """Home Depot product search relevance (Kaggle 2016): ``train.csv`` or ``train.csv.zip`` with id,
    product_uid, product_title, search_term, relevance. Products become items (titles only: the file has
    no description, brand, category or price); judgments keep every graded (query, product) pair. The
    file is latin-1."""
    from shoploop.data.relevance import query_id_for

    file = _first_file(path, "train.csv.zip", "train.csv")
    frame = _require(pd.read_csv(_check_line_lengths(file), encoding="latin-1"),
                     {"product_uid", "product_title", "search_term", "relevance"}, file)
    out = Landing("homedepot")
    bad = frame["product_title"].isna() | frame["search_term"].isna() | ~frame["relevance"].between(1, 3)
    for record in frame[bad].to_dict("records"):
        out.reject("judgments", record, "missing title or query, or relevance outside 1..3")
    frame = frame[~bad]
    items = frame.drop_duplicates("product_uid")
    out.put("items", pd.DataFrame({
        "item_id": "hd" + items["product_uid"].astype(str), "title": items["product_title"],
        "attributes": "{}", "review_count": 0, "created_at": landed_at - timedelta(days=1)}))
    judged = frame.assign(query_id=frame["search_term"].map(query_id_for), item_id="hd" + frame["product_uid"].astype(str),
                          grade=frame["relevance"].map(homedepot_grade))
    # The same query typed twice about one product: the mean of its graders' scores.
    judged = judged.groupby(["query_id", "item_id"], as_index=False).agg(
        query_text=("search_term", "first"), relevance=("relevance", "mean"))
    out.put("judgments", judged.assign(grade=judged["relevance"].map(homedepot_grade)))
    return out


def generic(path: Path, landed_at: datetime) -> Landing:
    """``<table>.csv`` or ``<table>.parquet`` per contract table, with exactly the contract's columns."""
    out = Landing("generic")
    for table, columns in CONTRACT.items():
        if table == "quarantine":
            continue
        files = sorted(path.glob(f"{table}.parquet")) + sorted(path.glob(f"{table}.csv"))
        if not files:
            continue
        file = _reading(files[0])
        frame = pd.read_parquet(file) if file.suffix == ".parquet" else pd.read_csv(_check_line_lengths(file))
        missing = set(columns) - set(frame.columns)
        if missing:
            raise MalformedSource(f"{file}: missing contract columns {sorted(missing)}; see README 'Generic layout'")
        for column, kind in columns.items():
            if str(kind).startswith("timestamp"):
                frame[column] = pd.to_datetime(frame[column], errors="coerce", utc=True).dt.tz_localize(None)
        key = next(iter(columns))
        bad = frame[key].isna()
        for record in frame[bad].to_dict("records"):
            out.reject(table, record, f"missing {key}")
        frame = frame[~bad]
        if table == "judgments":  # a grade the scale has no place for cannot be ranked against
            grade = pd.to_numeric(frame["grade"], errors="coerce")
            off_scale = ~grade.between(0, 3)
            for record in frame[off_scale].to_dict("records"):
                out.reject(table, record, f"grade {record['grade']!r} is not a number from 0 to 3")
            frame = frame[~off_scale].assign(grade=grade[~off_scale])
        out.put(table, frame.copy())
    if not out.tables:
        raise FileNotFoundError(f"{path}: no <table>.csv or <table>.parquet for any of {sorted(CONTRACT)}")
    return out


def read(fmt: str, path: Path, landed_at: datetime) -> Landing:
    """The dataset at ``path`` landed by its format's adapter. A file that cannot be read as that format
    raises MalformedSource: one line naming the file and what is wrong, never a parser's traceback."""
    import pyarrow

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    token = _READING.set(None)
    try:
        return globals()[fmt](path, landed_at)
    except (MalformedSource, FileNotFoundError):
        raise
    except (EOFError, gzip.BadGzipFile, zipfile.BadZipFile, zlib.error) as error:
        fault = f"truncated or corrupt compressed file ({error})"
    except UnicodeDecodeError as error:
        fault = f"not {error.encoding} text (byte {error.start}): save it as UTF-8"
    except KeyError as error:
        fault = f"missing column or field {error}: see the README's '{fmt}' layout"
    except (pd.errors.ParserError, pd.errors.EmptyDataError, pyarrow.ArrowException, json.JSONDecodeError,
            SyntaxError, OSError, ValueError, TypeError) as error:
        fault = f"unreadable as {fmt} ({type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''})"
    finally:
        file = _READING.get()
        _READING.reset(token)
    raise MalformedSource(f"{fmt}: {file or path}: {fault}")
