"""Monitoring: what the loop watches, reference window vs current window — the logged impressions with
the model's scores (the drift checks over them are shoploop.monitoring.drift), online quality from the feedback log
per model version, the service's health — and the Evidently workspace and dashboard they are shown in.

The reference window is the older part of the logged events, the current window the most recent
days (live feedback included once dbt has run over it). ``monitor.json`` (shoploop.pipeline.operate.monitor) holds
drift, online quality per model version and the decision with its reasons (shoploop.monitoring.decision).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from shoploop.data import landing
from shoploop.models.evaluate import click_ndcg
from shoploop.serving.predict import SearchEngine, scaled_bm25
from shoploop.settings import Settings

PROJECT = "shoploop"
# Evidently's imports touch numpy.core and litestar's deprecated helpers: notices for Evidently to act on.
# (and its column summary divides by the count of a column that one window holds no value of)
EVIDENTLY_NOTICES = ("numpy.core is deprecated", "Call to deprecated function 'Dependency'",
                     "Use of deprecated class 'DependencyKwarg'", "invalid value encountered in scalar divide")
CURRENT_DAYS = 2
# Columns watched for drift, each stationary while the shop is: where results were shown, whether and
# where they were clicked (shoppers click the top; a bot, a broken client or a new layout does not), the
# price the shopper saw, the item's rating and category, whether it was new
# (under a week online), what the model scores. The ranker's cumulative counts (popularity, smoothed
# CTR) grow by construction, so they would drift in every shop every day: not watched.
NUMERICAL = ["position", "click_position", "log_price_seen", "rating", "model_score"]
CATEGORICAL = ["clicked", "category", "new_item"]
COLUMNS = NUMERICAL + CATEGORICAL
NEW_ITEM_DAYS = 7


def impressions(settings: Settings, as_of: datetime | None = None) -> pd.DataFrame:
    """Logged search impressions before ``as_of``: click, position, the price seen, and the item as Feast
    knew it at the impression (point in time, from the offline store)."""
    from shoploop import features
    from shoploop.data.catalog import top_category

    pairs = pd.read_parquet(settings.marts / "ranker_training_pairs.parquet")
    logged = pairs[pairs["label_source"] == "click_log"]
    if as_of is not None:
        logged = logged[logged["event_timestamp"] < pd.Timestamp(as_of)]
    logged = logged.reset_index(drop=True)
    if logged.empty:
        return logged.reindex(columns=[*logged.columns, *COLUMNS])
    seen = features.historical(settings, logged[["item_id", "event_timestamp"]].assign(row=np.arange(len(logged))))
    seen = seen.set_index("row").sort_index()
    items = pd.read_parquet(settings.marts / "item_text.parquet", columns=["item_id", "category_path", "created_at"])
    items = items.set_index("item_id")
    # How long the item had been online when shown, from the catalog: on its first day an item has no
    # feature snapshot yet, so Feast's age_days cannot tell.
    age = logged["event_timestamp"] - pd.to_datetime(logged["item_id"].map(items["created_at"]))
    return logged.assign(
        clicked=logged["clicked"].astype(int).astype(str),
        click_position=logged["position"].where(logged["clicked"]),
        # the feature's price when the client sent none (an API client need not)
        log_price_seen=np.log(logged["price_seen"].where(logged["price_seen"] > 0)).fillna(seen["log_price"]),
        rating=seen["rating"],
        category=logged["item_id"].map(items["category_path"]).fillna("").map(top_category),
        new_item=(age < pd.Timedelta(days=NEW_ITEM_DAYS)).map({True: "new", False: "established"}).where(age.notna()),
    )


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


def _windows(ts: pd.Series, current_days: int = CURRENT_DAYS) -> pd.Series:
    """'current' for the last ``current_days`` days of ``ts``, 'reference' before."""
    end = pd.Timestamp(ts.max()).normalize() + timedelta(days=1)
    return pd.Series(np.where(ts >= end - timedelta(days=current_days), "current", "reference"), index=ts.index)


def online_quality(events: pd.DataFrame, tail_items: set[str], k: int = 10) -> dict:
    """Per window, model version and surface, from attributed events (session_id, query_id, item_id,
    event_type, position, surface, model_version, ts): impressions, clicks, purchases, CTR, purchase
    rate, CTR by position, slates clicked, online nDCG@k from clicks (clicked positions against the
    same clicks at the top), and long-tail exposure (share of impressions on tail items)."""
    if events.empty:
        return {}
    events = events.assign(window=_windows(events["ts"]), model_version=events["model_version"].fillna(""))
    shown = events[events["event_type"] == "impression"]
    # A click's slate and position are its impression's: the session was shown the item there.
    slate_of = shown.drop_duplicates(["session_id", "item_id", "surface"], keep="last")[
        ["session_id", "item_id", "surface", "query_id", "position"]].rename(columns={"query_id": "slate", "position": "at"})
    clicks = events[events["event_type"] == "click"].merge(slate_of, on=["session_id", "item_id", "surface"], how="left")
    out: dict = {}
    for (window, version, surface), group in shown.groupby(["window", "model_version", "surface"]):
        mine = clicks[(clicks["window"] == window) & (clicks["model_version"] == version) & (clicks["surface"] == surface)]
        bought = events[(events["event_type"] == "purchase") & (events["window"] == window)
                        & (events["model_version"] == version) & (events["surface"] == surface)]
        by_position = group["position"].value_counts()
        clicked_at = mine["at"].value_counts()
        slates = group.groupby(["session_id", "query_id"], dropna=False).ngroups
        gains = []
        for _, slate in mine[mine["at"].notna()].groupby(["session_id", "slate"], dropna=False):
            at = [int(p) for p in slate["at"] if p <= k]
            if at:
                gains.append(click_ndcg(at))
        n = len(group)
        out.setdefault(window, {}).setdefault(version, {})[surface] = {
            "impressions": n, "clicks": len(mine), "purchases": len(bought),
            "ctr": round(len(mine) / n, 5), "purchase_rate": round(len(bought) / n, 5),
            "ctr_by_position": {int(p): round(float(clicked_at.get(p, 0)) / int(c), 4)
                                for p, c in sorted(by_position.items()) if p is not None and p <= k},
            "slates": slates, "slates_clicked": round(mine.groupby(["session_id", "slate"], dropna=False).ngroups / max(slates, 1), 4),
            f"online_ndcg@{k}": round(float(np.mean(gains)), 4) if gains else None,
            "long_tail_exposure": round(float(group["item_id"].isin(tail_items).mean()), 4),
        }
    return out


def tail_items(latest: pd.DataFrame, head_share: float = 0.2) -> set[str]:
    """Items outside the most popular ``head_share`` of the catalog."""
    ranked = latest["popularity"].fillna(0).sort_values(ascending=False)
    return set(ranked.index[int(len(ranked) * head_share):])


def attributed_events(settings: Settings, as_of: datetime | None = None) -> pd.DataFrame:
    """The warehouse's attributed events (int_events_valid) before ``as_of``: what online quality is measured on."""
    from shoploop.warehouse import connected

    with connected(settings) as con:
        return con.execute("select session_id, query_id, item_id, event_type, position, surface, model_version, ts "
                           "from int_events_valid where ts < coalesce(?, 'infinity'::timestamp)", [as_of]).df()


def feedback_events(settings: Settings, since: str | None = None) -> pd.DataFrame:
    """The raw event log as the service accepted it, each event once (by ``event_id``), from ``since``
    (ISO time, naive UTC) on: what online evaluation reads between builds of the warehouse."""
    import pyarrow.dataset as ds

    columns = ["event_id", "session_id", "query_id", "item_id", "event_type", "surface", "model_version", "ts"]

    def read(files: list) -> pd.DataFrame:
        if not files:
            return pd.DataFrame(columns=columns)
        table = ds.dataset([str(f) for f in files], format="parquet").to_table(
            columns=columns, filter=ds.field("ts") >= pd.Timestamp(since).to_datetime64() if since else None)
        return table.to_pandas().drop_duplicates("event_id")

    return landing.read_files(settings.landing, "events", read)


# The dashboard's time series: each monitor run adds one value of each (MeanValue over a one-row frame:
# Evidently plots metrics of runs, and these are the loop's own measurements).
ONLINE = {"ctr": "click-through (clicks / impressions)", "purchase_rate": "purchases / impressions",
          "online_ndcg": "online nDCG@10 from clicked positions", "long_tail_exposure": "long-tail share of impressions",
          "zero_result_rate": "searches with no result", "search_p99_ms": "/search p99 (ms)",
          "version": "model version (registry order)"}


def _quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """A quantile from cumulative Prometheus histogram buckets (upper bound, count), interpolated within
    its bucket as Prometheus's histogram_quantile does."""
    buckets = sorted(buckets)
    total = buckets[-1][1] if buckets else 0
    if not total:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = upper, count
    return lower


def service_health(settings: Settings, model_version: str) -> dict:
    """From the running service's Prometheus metrics (since it started; every worker): the serving
    version's zero-result rate and /search latency (p50, p99). Empty when no service answers."""
    import httpx

    try:
        text = httpx.get(f"http://{settings.host}:{settings.service_port}/metrics", timeout=10).text
    except httpx.HTTPError:
        return {}
    return parse_health(text, model_version)


def parse_health(text: str, model_version: str) -> dict:
    """``service_health`` from the text of a Prometheus /metrics page."""
    from prometheus_client.parser import text_string_to_metric_families

    searches: dict[str, float] = {}
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "shoploop_searches_total" and labels.get("model_version") == model_version:
                searches[labels["outcome"]] = searches.get(labels["outcome"], 0) + sample.value
            elif (sample.name == "bentoml_service_request_duration_seconds_bucket" and labels.get("endpoint") == "/search"
                  and labels.get("http_response_code") == "200"):
                bound = float(labels["le"])
                buckets[bound] = buckets.get(bound, 0) + sample.value
    answered = sum(searches.values())
    p50, p99 = (_quantile(list(buckets.items()), q) for q in (0.5, 0.99))
    return {"searches": int(answered),
            "zero_result_rate": round(searches.get("zero_results", 0) / answered, 4) if answered else None,
            "search_p50_ms": round(p50 * 1000, 2) if p50 is not None else None,
            "search_p99_ms": round(p99 * 1000, 2) if p99 is not None else None}


def evidently_project(settings: Settings):
    """The local Evidently workspace and its "shoploop" project, with the dashboard's panels."""
    from shoploop.pipeline.progress import quiet

    with quiet(*EVIDENTLY_NOTICES):
        from evidently.sdk.models import PanelMetric
        from evidently.sdk.panels import line_plot_panel
        from evidently.ui.workspace import Workspace

    workspace = Workspace.create(str(settings.evidently_workspace))
    found = workspace.search_project(PROJECT)
    project = found[0] if found else workspace.create_project(PROJECT, description="shoploop drift and quality")

    def online(*columns: str) -> list:
        return [PanelMetric(legend=ONLINE[c], metric="MeanValue", metric_labels={"column": c}) for c in columns]

    panels = {"Drift": [PanelMetric(legend="share of watched columns drifted", metric="DriftedColumnsCount",
                                    metric_labels={"value_type": "share"}),
                        PanelMetric(legend="model score drift", metric="ValueDrift", metric_labels={"column": "model_score"})],
              "Query drift (embeddings: a classifier's ROC AUC)": [
                  PanelMetric(legend="query embeddings", metric="EmbeddingsDrift", metric_labels={"embeddings_name": "query"})],
              "Click-through and purchases (current window, champion)": online("ctr", "purchase_rate"),
              "Online nDCG@10 and long-tail exposure": online("online_ndcg", "long_tail_exposure"),
              "Searches with no result (since the service started)": online("zero_result_rate"),
              "/search latency p99 (since the service started)": online("search_p99_ms"),
              "Model version serving": online("version")}
    shown = {panel.title for panel in project.dashboard.model().panels}
    for title, values in panels.items():  # a project made by an older version gets the panels it lacks
        if title not in shown:
            project.dashboard.add_panel(line_plot_panel(title=title, values=values, size="half"))
    return workspace, project


def log_online(settings: Settings, online: dict, health: dict, model_version: str, run_date) -> dict | None:
    """Add this run's online quality of the serving version (current window, search) and the service's
    health to the Evidently project, so the dashboard shows them over time beside drift. Returns the
    values logged (None: neither traffic nor a service to measure)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import MeanValue

    from shoploop.models import registry
    from shoploop.pipeline.progress import quiet

    quality = online.get("current", {}).get(model_version, {}).get("search") or {}
    if not quality and not health:
        return None
    served = list(dict.fromkeys(entry["tag"] for entry in registry.history(settings)))
    values = {"ctr": quality.get("ctr"), "purchase_rate": quality.get("purchase_rate"),
              "online_ndcg": quality.get("online_ndcg@10"), "long_tail_exposure": quality.get("long_tail_exposure"),
              "zero_result_rate": health.get("zero_result_rate"), "search_p99_ms": health.get("search_p99_ms"),
              "version": served.index(model_version) + 1 if model_version in served else None}
    values = {key: np.nan if value is None else value for key, value in values.items()}
    frame = pd.DataFrame([values]).astype(float)
    with quiet(*EVIDENTLY_NOTICES):  # a value this run has none of (NaN) is a column of no values to Evidently
        data = Dataset.from_pandas(frame, data_definition=DataDefinition(numerical_columns=list(values)))
        snapshot = Report([MeanValue(column=c) for c in values]).run(
            current_data=data, name=f"online {run_date}", tags=["online", "search", model_version])
    workspace, project = evidently_project(settings)
    workspace.add_run(project.id, snapshot)
    return values


def served_shoppers(settings: Settings, tag: str) -> bool:
    """Has this version served shoppers (any search feedback naming it in the event log)? A catalog
    refresh (``reindex``) of a version that served them counts: the same model, over more items."""
    from shoploop.models import registry

    models = [tag]
    while len(models) < 50 and (refreshed := registry.lineage(settings, models[-1]).get("reindexed_from")):
        models.append(refreshed)
    events = feedback_events(settings)
    return bool((events["model_version"].isin(models) & (events["surface"] == "search")).any())
