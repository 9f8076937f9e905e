"""The landing zone: partitioned parquet in the data contract's shape.

``$SHOPLOOP_HOME/landing/<table>/dt=YYYY-MM-DD/*.parquet``. A bulk load replaces the day's
``part-0.parquet``, so a step re-run for the same date gives the same result; appends (live
feedback) add their own files beside it and are never overwritten by a reload. Every file is
written to a temporary name, fsynced, then renamed, so a crash never leaves half a file behind.
"""

from __future__ import annotations

import os
import uuid
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# The contract: column -> arrow type. Every source lands in exactly this shape.
CONTRACT: dict[str, dict[str, pa.DataType]] = {
    "items": {
        "item_id": pa.string(), "title": pa.string(), "description": pa.string(), "brand": pa.string(),
        "category_path": pa.string(), "attributes": pa.string(), "price": pa.float64(), "currency": pa.string(),
        "image_url": pa.string(), "rating": pa.float64(), "review_count": pa.int64(), "created_at": pa.timestamp("us"),
    },
    "reviews": {
        "review_id": pa.string(), "item_id": pa.string(), "user_id": pa.string(), "rating": pa.int64(),
        "text": pa.string(), "ts": pa.timestamp("us"),
    },
    "users": {"user_id": pa.string(), "signup_ts": pa.timestamp("us"), "attributes": pa.string()},
    "events": {
        "event_id": pa.string(), "ts": pa.timestamp("us"), "session_id": pa.string(), "user_id": pa.string(),
        "event_type": pa.string(), "item_id": pa.string(), "query_id": pa.string(), "query_text": pa.string(),
        "position": pa.int64(), "surface": pa.string(), "model_version": pa.string(), "price_seen": pa.float64(),
    },
    "judgments": {"query_id": pa.string(), "query_text": pa.string(), "item_id": pa.string(), "grade": pa.int64()},
    # Rows an adapter could not land, kept with the reason (the record as JSON, cut at 4,000 chars).
    "quarantine": {"source": pa.string(), "table_name": pa.string(), "record": pa.string(), "reason": pa.string()},
}
EVENT_TYPES = ("impression", "click", "add_to_cart", "purchase", "view")


def to_table(name: str, frame: pd.DataFrame) -> pa.Table:
    """Cast a frame to the contract; a missing or extra column is an error, not a silent fix."""
    schema = pa.schema(list(CONTRACT[name].items()))
    missing = set(schema.names) - set(frame.columns)
    extra = set(frame.columns) - set(schema.names)
    if missing or extra:
        raise ValueError(f"{name}: columns do not match the contract (missing {sorted(missing)}, extra {sorted(extra)})")
    return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)


def partition_dir(landing: Path, name: str, dt: date) -> Path:
    return landing / name / f"dt={dt.isoformat()}"


def write_partition(landing: Path, name: str, dt: date, frame: pd.DataFrame, part: str = "part-0") -> Path:
    """Replace one bulk load of a day (``<part>.parquet``) atomically; other files in the day are kept."""
    target = partition_dir(landing, name, dt)
    target.mkdir(parents=True, exist_ok=True)
    _write_durably(to_table(name, frame), target / f"{part}.parquet")
    return target


def append(landing: Path, name: str, dt: date, frame: pd.DataFrame, prefix: str = "append") -> Path:
    """Add rows to a day's partition as a new file (used by live feedback)."""
    target = partition_dir(landing, name, dt)
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"{prefix}-{uuid.uuid4().hex}.parquet"
    _write_durably(to_table(name, frame), path)
    return path


def _write_durably(table: pa.Table, path: Path) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    pq.write_table(table, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_table(landing: Path, name: str) -> pd.DataFrame:
    """All partitions of a table (the leading-dot temp files are never read)."""
    files = sorted(p for p in (landing / name).glob("dt=*/*.parquet") if not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"no {name} in {landing}; run `shoploop simulate` or `shoploop ingest` first")
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
