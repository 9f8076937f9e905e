"""The event stream, embedded default: a durable append-only log in the landing zone.

Every accepted batch becomes one fsynced parquet file in today's ``events`` partition before the
request is answered, so an acknowledged event survives a crash or restart. Duplicate deliveries
are harmless: staging deduplicates on ``event_id``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pandas as pd

from shoploop.data import landing
from shoploop.privacy import scrub
from shoploop.settings import Settings


def record_events(settings: Settings, events: list[dict]) -> pd.DataFrame:
    """Append events (contract fields; event_id and ts filled when absent); returns them as written."""
    if not events:
        return pd.DataFrame(columns=list(landing.CONTRACT["events"]))
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    rows = []
    for event in events:
        row = {column: event.get(column) for column in landing.CONTRACT["events"]}
        row["event_id"] = row["event_id"] or str(uuid.uuid4())
        row["ts"] = (row["ts"].astimezone(timezone.utc).replace(tzinfo=None)
                     if row["ts"] is not None and row["ts"].tzinfo else row["ts"] or now)
        row["query_text"] = scrub(row["query_text"])
        rows.append(row)
    frame = pd.DataFrame(rows)
    # Partitioned by arrival day: a late event lands today, where an incremental build looks.
    landing.append(settings.landing, "events", now.date(), frame, prefix="feedback")
    return frame
