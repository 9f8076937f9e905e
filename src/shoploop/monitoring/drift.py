"""Drift checks over the monitor's two windows (shoploop.monitoring.monitor): Evidently's data drift of the watched
columns, the shoppers' queries (embeddings), prices item against itself, and waves of new items.

Each drift run is saved as HTML, as a JSON summary (``drift.json``, what shoploop.monitoring.decision reads), and as
a run of the "shoploop" project in the local Evidently workspace that `evidently ui` shows.

A drift run is a pure function of the marts, the serving version and the dates: when none of them changed since
the saved ``drift.json`` (the loop's monitor runs once per interleaving batch, between two refreshes of the
marts), the saved summary is returned, marked ``reused``, instead of scoring every impression again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from shoploop.monitoring.monitor import (
    CATEGORICAL,
    COLUMNS,
    CURRENT_DAYS,
    EVIDENTLY_NOTICES,
    NUMERICAL,
    evidently_project,
    impressions,
    model_scores,
    split_windows,
)
from shoploop.serving.predict import SearchEngine
from shoploop.settings import Settings

__all__ = ["COLUMNS", "drift_report", "fingerprint", "summarise", "watchable", "catalog_arrivals", "price_moves", "query_drift"]

# Prices are also checked category by category, item against itself: a move in one category is lost in
# the catalog's whole price range. A category needs this many items shown in both windows.
MIN_PRICED_ITEMS = 20
PRICE_MOVE = 0.10  # relative change of the median item's price
ARRIVALS_SHARE = 0.01  # of the catalog arriving in the current window, beyond its usual rate


def summarise(snapshot_dict: dict) -> dict:
    """The JSON the loop reads: how many columns drifted and, per column, the test and its result."""
    summary: dict = {"columns": {}}
    for metric in snapshot_dict["metrics"]:
        config, value = metric["config"], metric["value"]
        if config["type"].endswith(":DriftedColumnsCount"):
            summary["drifted_columns"] = int(value["count"])
            summary["drift_share"] = round(float(value["share"]), 4)
        elif config["type"].endswith(":ValueDrift"):
            # p-value tests drift below the threshold; distance tests (Wasserstein, PSI...) above it.
            is_p_value = "p_value" in config["method"]
            drifted = value < config["threshold"] if is_p_value else value > config["threshold"]
            summary["columns"][config["column"]] = {"method": config["method"], "value": round(float(value), 6),
                                                    "threshold": config["threshold"], "drifted": bool(drifted)}
    return summary


def drift_report(settings: Settings, load_engine: Callable[[], SearchEngine], run_date, model_version: str,
                 as_of: datetime | None = None) -> dict:
    """``load_engine`` gives the serving version's engine: called only when the run is computed, not reused."""
    from shoploop.pipeline.progress import quiet

    out = settings.reports / str(run_date)
    inputs = fingerprint(settings, model_version, run_date, as_of)
    saved = out / "drift.json"
    if saved.exists():
        before = json.loads(saved.read_text())
        if before.get("inputs") == inputs:
            return {**before, "reused": f"computed {before.get('computed_at')}: the marts and the serving version "
                                        "are unchanged since"}
    with quiet(*EVIDENTLY_NOTICES):
        from evidently import Report
        from evidently.presets import DataDriftPreset

    frame = impressions(settings, as_of)
    if frame.empty:  # a catalog with judgments and no logs: nothing behaved, so nothing drifted
        return {"run_date": str(run_date), "model_version": model_version,
                "skipped": "no search impressions logged yet: behaviour and score drift need search events"}
    engine = load_engine()
    frame["model_score"] = model_scores(engine, frame)
    reference, current = split_windows(frame)
    if reference.empty or current.empty:
        return {"run_date": str(run_date), "model_version": model_version,
                "skipped": f"drift needs a reference and a current window: events span less than {CURRENT_DAYS + 1} days"}
    watched, unwatched = watchable(reference, current)
    report = Report([DataDriftPreset(columns=watched)])
    snapshot = report.run(current_data=_dataset(current, watched), reference_data=_dataset(reference, watched),
                          name=f"drift {run_date}", tags=["drift", "search"])
    out.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(out / "drift.html"))
    queries, query_snapshot = query_drift(engine, reference, current, run_date)
    summary = {
        "run_date": str(run_date), "reference_rows": len(reference), "current_rows": len(current),
        "model_version": model_version, **summarise(snapshot.dict()), "unwatched": unwatched, "query_embeddings": queries,
        "price_moves": price_moves(reference, current), "arrivals": catalog_arrivals(settings, reference, current),
        "html": str(out / "drift.html"), "inputs": inputs, "computed_at": datetime.now().isoformat(timespec="seconds"),
    }
    (out / "drift.json").write_text(json.dumps(summary, indent=2))
    workspace, project = evidently_project(settings)
    workspace.add_run(project.id, snapshot)
    if query_snapshot is not None:
        workspace.add_run(project.id, query_snapshot)
    return summary


def fingerprint(settings: Settings, model_version: str, run_date, as_of: datetime | None) -> str:
    """What a drift run reads, as one hash: every file under the marts (path, size, modification time; the
    impressions, the Feast offline store and the catalog all live there), the version scoring them, the dates
    and this package's version."""
    from shoploop import __version__

    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{__version__}|{model_version}|{run_date}|{as_of}".encode())
    for path in sorted(p for p in settings.marts.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"|{path.relative_to(settings.marts)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def watchable(reference: pd.DataFrame, current: pd.DataFrame) -> tuple[list[str], dict[str, str]]:
    """The watched columns that hold a value in both windows, and why each other one is left out (no
    click in a window, a catalog without creation dates...): a test over an empty column means nothing."""
    empty = {c: f"no value in the {name} window" for name, frame in (("current", current), ("reference", reference))
             for c in COLUMNS if frame[c].isna().all()}
    return [c for c in COLUMNS if c not in empty], empty


def _dataset(frame: pd.DataFrame, columns: list[str]):
    """An Evidently Dataset of the watched columns, each declared numerical or categorical (never guessed)."""
    from evidently import DataDefinition, Dataset

    return Dataset.from_pandas(frame[columns], data_definition=DataDefinition(
        numerical_columns=[c for c in columns if c in NUMERICAL], categorical_columns=[c for c in columns if c in CATEGORICAL]))


def catalog_arrivals(settings: Settings, reference: pd.DataFrame, current: pd.DataFrame) -> dict:
    """Did a wave of items arrive? The items created in the current window against the reference
    window's daily rate (one-sided Poisson test); a wave counts when significant (p < 0.01) and at
    least ARRIVALS_SHARE of the catalog: items no log has taught the model about yet."""
    from scipy.stats import poisson

    created = pd.to_datetime(pd.read_parquet(settings.marts / "item_text.parquet", columns=["created_at"])["created_at"])
    start, cut = reference["event_timestamp"].min().normalize(), current["event_timestamp"].min().normalize()
    end = current["event_timestamp"].max().normalize() + timedelta(days=1)
    catalog = int((created < end).sum())
    before, now = int(created.between(start, cut, inclusive="left").sum()), int(created.between(cut, end, inclusive="left").sum())
    expected = before / max((cut - start).days, 1) * (end - cut).days
    p = float(poisson.sf(now - 1, expected)) if expected > 0 else float(now == 0)
    share = now / max(catalog, 1)
    return {"method": "new items against the reference's daily rate (Poisson)", "items": now, "expected": round(expected, 1),
            "p_value": round(p, 6), "share": round(share, 4), "threshold": ARRIVALS_SHARE,
            "drifted": p < 0.01 and share >= ARRIVALS_SHARE}


def price_moves(reference: pd.DataFrame, current: pd.DataFrame) -> dict:
    """Did the same items' prices move, category by category? The median change of the mean price seen
    per item, over the items of the category shown in both windows (at least MIN_PRICED_ITEMS).
    Item by item, so a change in which items were shown (the query mix) is not a price move; a
    distribution test per category (Evidently's) cannot pair the items and flags that mix."""
    seen = [frame.groupby(["category", "item_id"])["log_price_seen"].mean() for frame in (reference, current)]
    change = (seen[1] - seen[0]).dropna()
    out = {}
    for category, moves in change.groupby(level="category"):
        if category and len(moves) >= MIN_PRICED_ITEMS:
            value = float(np.expm1(moves.median()))
            out[category] = {"method": "median price change of the same items", "value": round(value, 4),
                             "threshold": PRICE_MOVE, "items": len(moves), "drifted": abs(value) > PRICE_MOVE}
    return out


# A window needs this many distinct queries for their embeddings' drift to mean anything; above the
# threshold, a classifier tells the windows' searches apart (ROC AUC, Evidently's default method).
MIN_QUERIES = 30
QUERY_DRIFT_THRESHOLD = 0.55


def query_drift(engine: SearchEngine, reference: pd.DataFrame, current: pd.DataFrame, run_date,
                sample: int = 1000) -> tuple[dict, object]:
    """Drift of what shoppers ask: the serving encoder's embeddings of each window's searches (up to
    ``sample`` of each, as often as they were asked), compared by Evidently's EmbeddingsDrift (a
    classifier trained to tell the windows apart: ROC AUC). Searches, not distinct texts: a head query
    asked in both windows is the same traffic, and as distinct texts it would sit in both classes."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import EmbeddingsDrift

    asked = [frame.drop_duplicates(["session_id", "query_id"])["query_text"].dropna() for frame in (reference, current)]
    if min(s.nunique() for s in asked) < MIN_QUERIES:
        return {"skipped": f"fewer than {MIN_QUERIES} distinct queries in a window"}, None
    asked = [s.sample(min(sample, len(s)), random_state=0).tolist() for s in asked]
    distinct = list(dict.fromkeys(asked[0] + asked[1]))
    vector_of = dict(zip(distinct, engine.encoder.encode(distinct)))
    columns = [f"q{i}" for i in range(len(next(iter(vector_of.values()))))]
    reference_data, current_data = (
        Dataset.from_pandas(pd.DataFrame([vector_of[t] for t in texts], columns=columns),
                            data_definition=DataDefinition(embeddings={"query": columns}))
        for texts in asked)
    snapshot = Report([EmbeddingsDrift(embeddings_name="query")]).run(
        current_data=current_data, reference_data=reference_data, name=f"query drift {run_date}", tags=["drift", "queries"])
    value = float(snapshot.dict()["metrics"][0]["value"])
    return {"method": "classifier ROC AUC", "value": round(value, 4), "threshold": QUERY_DRIFT_THRESHOLD,
            "drifted": value > QUERY_DRIFT_THRESHOLD, "searches": [len(t) for t in asked]}, snapshot
