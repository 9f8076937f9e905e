"""Monitoring with Evidently: drift of features and model scores, reference window vs current window.

The reference window is the older part of the logged search impressions, the current window the
most recent days (live feedback included once dbt has run over it). Each run is saved as HTML, as
a JSON summary the loop can act on, and as a run of the "shoploop" project in the local Evidently
workspace that `evidently ui` shows.
"""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pandas as pd

from shoploop.predict import SearchEngine, scaled_bm25
from shoploop.settings import Settings

PROJECT = "shoploop"
CURRENT_DAYS = 2
# Columns watched for drift: what shoppers saw and did, what the item looked like, what the model said.
COLUMNS = ["position", "price_seen", "clicked", "log_price", "rating", "ctr_smoothed", "popularity", "model_score"]


def impressions(settings: Settings, latest: pd.DataFrame) -> pd.DataFrame:
    """Logged search impressions with their click, the item's latest features and the day."""
    pairs = pd.read_parquet(settings.marts / "ranker_training_pairs.parquet")
    logged = pairs[pairs["label_source"] == "click_log"].copy()
    logged = logged.join(latest[["price", "log_price", "rating", "ctr_smoothed", "popularity"]], on="item_id")
    logged["price_seen"] = logged["price"]
    logged["clicked"] = logged["clicked"].astype(int)
    return logged


def model_scores(engine: SearchEngine, frame: pd.DataFrame) -> np.ndarray:
    """The serving ranker's score for every logged (query, item) pair (NaN where the item is unknown)."""
    row_of = {item_id: r for r, item_id in enumerate(engine.item_ids)}
    scores = np.full(len(frame), np.nan)
    known = frame.assign(row=frame["item_id"].map(row_of), at=np.arange(len(frame)))
    known = known[known["row"].notna() & known["query_text"].fillna("").ne("")]
    texts = known["query_text"].unique().tolist()
    vectors = dict(zip(texts, engine.encoder.encode(texts)))
    for text, rows in known.groupby("query_text"):
        bm25 = scaled_bm25(engine.bundle.lexical.scores(text))
        scores[rows["at"].to_numpy()] = engine.rank(vectors[text], rows["row"].to_numpy(dtype=int), bm25, query=text)
    return scores


def split_windows(frame: pd.DataFrame, current_days: int = CURRENT_DAYS) -> tuple[pd.DataFrame, pd.DataFrame]:
    end = pd.Timestamp(frame["event_timestamp"].max()).normalize() + timedelta(days=1)
    cut = end - timedelta(days=current_days)
    is_current = frame["event_timestamp"] >= cut
    return frame[~is_current], frame[is_current]


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


def drift_report(settings: Settings, engine: SearchEngine, latest: pd.DataFrame, run_date, model_version: str) -> dict:
    from evidently import Report
    from evidently.presets import DataDriftPreset
    from evidently.ui.workspace import Workspace

    frame = impressions(settings, latest)
    if frame.empty:  # a catalog with judgments and no logs: nothing behaved, so nothing drifted
        return {"run_date": str(run_date), "model_version": model_version,
                "skipped": "no search impressions logged yet: behaviour and score drift need search events"}
    frame["model_score"] = model_scores(engine, frame)
    reference, current = split_windows(frame)
    if reference.empty or current.empty:
        return {"run_date": str(run_date), "model_version": model_version,
                "skipped": f"drift needs a reference and a current window: events span less than {CURRENT_DAYS + 1} days"}
    report = Report([DataDriftPreset(columns=COLUMNS)])
    snapshot = report.run(current_data=current[COLUMNS], reference_data=reference[COLUMNS],
                          name=f"drift {run_date}", tags=["drift", "search"])
    out = settings.reports / str(run_date)
    out.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(out / "drift.html"))
    summary = {
        "run_date": str(run_date), "reference_rows": len(reference), "current_rows": len(current),
        "model_version": model_version, **summarise(snapshot.dict()),
        "html": str(out / "drift.html"),
    }
    (out / "drift.json").write_text(json.dumps(summary, indent=2))
    workspace = Workspace.create(str(settings.evidently_workspace))
    found = workspace.search_project(PROJECT)
    project = found[0] if found else workspace.create_project(PROJECT, description="shoploop drift and quality")
    workspace.add_run(project.id, snapshot)
    return summary
