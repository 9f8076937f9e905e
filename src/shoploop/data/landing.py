"""The landing zone: partitioned parquet in the data contract's shape.

``$SHOPLOOP_HOME/landing/<table>/dt=YYYY-MM-DD/*.parquet``. ``dt`` is the day the rows landed
(a historical backfill lands each day of history under its own date). A bulk load replaces its
own file of the day, so a step re-run for the same date gives the same result; appends (live
feedback) add their own files beside it and are never overwritten by a reload. Every file is
written to a temporary name, fsynced, then renamed, so a crash never leaves half a file behind.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
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
    "judgments": {"query_id": pa.string(), "query_text": pa.string(), "item_id": pa.string(), "grade": pa.float64()},
    # Rows an adapter could not land, kept with the reason (the record as JSON, cut at 4,000 chars).
    "quarantine": {"source": pa.string(), "table_name": pa.string(), "record": pa.string(), "reason": pa.string()},
}
EVENT_TYPES = ("impression", "click", "add_to_cart", "purchase", "view")


@functools.cache
def schema(name: str) -> pa.Schema:
    """The contract of one table as an Arrow schema (made once: the event log asks on every request)."""
    return pa.schema(list(CONTRACT[name].items()))


def to_table(name: str, frame: pd.DataFrame) -> pa.Table:
    """Cast a frame to the contract; a missing or extra column is an error, not a silent fix."""
    contract = schema(name)
    missing = set(contract.names) - set(frame.columns)
    extra = set(frame.columns) - set(contract.names)
    if missing or extra:
        raise ValueError(f"{name}: columns do not match the contract (missing {sorted(missing)}, extra {sorted(extra)})")
    return pa.Table.from_pandas(frame[contract.names], schema=contract, preserve_index=False)


def partition_dir(landing: Path, name: str, dt: date) -> Path:
    return landing / name / f"dt={dt.isoformat()}"


def write_partition(landing: Path, name: str, dt: date, frame: pd.DataFrame, part: str = "part") -> Path:
    """Replace one bulk load of a day; other files in the day (appends, other sources) are kept.

    The file is named after its content (``<part>-<sha1>.parquet``), so an incremental reader
    knows a reloaded day by its new name and drops what came from the old one.
    """
    target = partition_dir(landing, name, dt)
    target.mkdir(parents=True, exist_ok=True)
    staged = target / f".{part}-{uuid.uuid4().hex}.staged"
    pq.write_table(to_table(name, frame), staged)
    digest = hashlib.sha1(staged.read_bytes()).hexdigest()[:12]
    final = target / f"{part}-{digest}.parquet"
    _make_durable(staged, final)
    for old in target.glob(f"{part}-*.parquet"):
        if old != final:
            old.unlink()
    return target


def append(landing: Path, name: str, dt: date, frame: pd.DataFrame, prefix: str = "append") -> Path:
    """Add rows to a day's partition as a new file (used by live feedback)."""
    return append_table(landing, name, dt, to_table(name, frame), prefix)


def append_table(landing: Path, name: str, dt: date, table: pa.Table, prefix: str = "append") -> Path:
    """``append`` for rows already in the contract's schema."""
    if not table.schema.equals(schema(name)):
        raise ValueError(f"{name}: the table is not in the contract's schema ({table.schema})")
    target = partition_dir(landing, name, dt)
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"{prefix}-{uuid.uuid4().hex}.parquet"
    _write_durably(table, path)
    return path


def _write_durably(table: pa.Table, path: Path) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    pq.write_table(table, tmp)
    _make_durable(tmp, path)


def _make_durable(tmp: Path, path: Path) -> None:
    """fsync the written file, rename it into place, fsync the folder: a crash leaves all or nothing."""
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make the renames and removals in a folder durable (a rename is durable once its folder is)."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# A compacted file names, in its parquet metadata, the commit files whose rows it holds (``sources_of``).
SOURCES_KEY = b"shoploop.sources"


def sources_of(path: Path) -> list[tuple[str, int]] | None:
    """The commit files a compacted file holds, in row order, with their row counts (None: not compacted)."""
    metadata = pq.read_schema(path).metadata or {}
    return [tuple(entry) for entry in json.loads(metadata[SOURCES_KEY])] if SOURCES_KEY in metadata else None


def table_files(landing: Path, name: str) -> list[Path]:
    """The files that hold a table now, each row once: leading-dot temp files are never read, and a
    compacted file's sources still beside it (a compaction under way, or cut short by a crash) are left
    out, the compacted file holding their rows, and so is a compacted file merged again into a larger one
    not yet removed. Raises FileNotFoundError when a compaction removes a
    file meanwhile; ``read_files`` lists again."""
    files = sorted(p for p in (landing / name).glob("dt=*/*.parquet") if not p.name.startswith("."))
    compacted = {path: {source for source, _ in sources_of(path) or []} for path in files if path.name.startswith("compacted-")}
    kept: list[Path] = []  # the compacted files not held by a larger one (a compaction of compacted files)
    for path in sorted(compacted, key=lambda p: -len(compacted[p])):
        if not any(k.parent == path.parent and compacted[path] <= compacted[k] for k in kept):
            kept.append(path)
    held = {(path.parent, source) for path in kept for source in compacted[path]}
    return [path for path in files if path in kept or (path not in compacted and (path.parent, path.name) not in held)]


def read_files(landing: Path, name: str, read, attempts: int = 30):
    """``read(files)`` over a table's files as of one moment, though the live service's feeder compacts
    while others read: listed again when a compaction removed a file between the listing and the read,
    or finished meanwhile (a listing taken during its rename may lack both its sources and its file).
    Each retry waits a little longer (10 ms more each time, 4.4 s in all at most), so a read slower than
    back-to-back compactions gets a quiet moment: on a slow, busy machine ten immediate tries were not
    enough against a compactor running without pause."""
    def merged() -> set[Path]:
        return set((landing / name).glob("dt=*/compacted-*.parquet"))

    for attempt in range(attempts):
        if attempt:
            time.sleep(0.01 * attempt)
        before = merged()
        try:
            result = read(table_files(landing, name))
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise
            continue
        if merged() <= before:
            return result
    raise FileNotFoundError(f"{landing / name}: compacted faster than it could be read ({attempts} tries)")


def read_table(landing: Path, name: str) -> pd.DataFrame:
    """All partitions of a table, each row once, whatever compaction runs meanwhile."""
    frames = read_files(landing, name, lambda files: [pq.read_table(f).to_pandas() for f in files])
    if not frames:
        raise FileNotFoundError(f"no {name} in {landing}; run `shoploop simulate` or `shoploop ingest` first")
    return pd.concat(frames, ignore_index=True)
