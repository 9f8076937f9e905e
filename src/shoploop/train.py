"""Train model v0: encode the catalog, build the BM25 index, fit the seed ranker on graded judgments.

Training rows are, for every training query, its judged items plus the hybrid retriever's top
candidates (unjudged candidates are irrelevant: the simulator judges every relevant item), so the
ranker learns on the same candidate distribution it will rescore when serving. Item features come
from Feast's point-in-time join at the moment the labels were known.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from shoploop import features
from shoploop.evaluate import is_heldout
from shoploop.models.bundle import CATALOG_COLUMNS, ModelBundle
from shoploop.models.encoder import TextEncoder
from shoploop.models.ranker import RankerConfig, SeedRanker
from shoploop.models.retrieval import LexicalIndex, hybrid_candidates
from shoploop.predict import frame_lookup, ranking_features, scaled_bm25
from shoploop.settings import Settings

# Hard negatives per training query, from the retriever the ranker will sit behind.
TRAIN_CANDIDATES = 50


@dataclass
class TrainingData:
    catalog: pd.DataFrame
    item_text: list[str]
    judgments: pd.DataFrame   # query_id, query_text, item_id, grade (judgment rows only)
    as_of: pd.Timestamp       # when the labels were known
    histories: pd.DataFrame


def load_training_data(settings: Settings) -> TrainingData:
    marts = settings.marts
    items = pd.read_parquet(marts / "item_text.parquet").sort_values("item_id", ignore_index=True)
    pairs = pd.read_parquet(marts / "ranker_training_pairs.parquet")
    judged = pairs[pairs["label_source"] == "judgment"]
    if judged.empty:
        raise ValueError(f"no judgments in {marts / 'ranker_training_pairs.parquet'}: land a judgments table first")
    return TrainingData(
        catalog=items[CATALOG_COLUMNS], item_text=items["item_text"].tolist(),
        judgments=judged[["query_id", "query_text", "item_id", "grade"]].reset_index(drop=True),
        as_of=pd.Timestamp(judged["event_timestamp"].max()),
        histories=pd.read_parquet(marts / "user_histories.parquet"),
    )


def point_in_time_features(settings: Settings, item_ids: list[str], as_of: pd.Timestamp) -> pd.DataFrame:
    entity_rows = pd.DataFrame({"item_id": item_ids, "event_timestamp": as_of})
    if entity_rows["event_timestamp"].dt.tz is None:
        entity_rows["event_timestamp"] = entity_rows["event_timestamp"].dt.tz_localize("UTC")
    return features.historical(settings, entity_rows).set_index("item_id")


def user_profiles(histories: pd.DataFrame, row_of: dict[str, int], embeddings: np.ndarray) -> dict[str, np.ndarray]:
    """A shopper's taste: the engagement-weighted mean of the items they engaged with (purchase > cart > click)."""
    h = histories[histories["item_id"].isin(row_of)].copy()
    h["weight"] = h["clicks"] + 2 * h["add_to_carts"] + 3 * h["purchases"]
    profiles = {}
    for user_key, rows in h.groupby("user_key"):
        v = (embeddings[rows["item_id"].map(row_of).to_numpy()] * rows["weight"].to_numpy()[:, None]).sum(0)
        norm = np.linalg.norm(v)
        if norm > 0:
            profiles[user_key] = (v / norm).astype(np.float32)
    return profiles


def train(settings: Settings, encoder: TextEncoder | None = None) -> tuple[ModelBundle, dict]:
    started = time.perf_counter()
    data = load_training_data(settings)
    encoder = encoder or TextEncoder()
    item_ids = data.catalog["item_id"].tolist()
    row_of = {item_id: r for r, item_id in enumerate(item_ids)}
    embeddings = encoder.encode(data.item_text)
    lexical = LexicalIndex.build(data.item_text)
    pit = point_in_time_features(settings, item_ids, data.as_of)
    lookup = frame_lookup(pit)
    item_feats = lookup(item_ids)
    fill = np.nanmean(item_feats, axis=0)

    train_judgments = data.judgments[~data.judgments["query_id"].map(is_heldout)]
    queries = train_judgments[["query_id", "query_text"]].drop_duplicates("query_id")
    q_emb = encoder.encode(queries["query_text"].tolist())
    by_query = {query_id: rows for query_id, rows in train_judgments.groupby("query_id")}
    hq, hi, hf, target = [], [], [], []
    for (query_id, text), qv in zip(queries.itertuples(index=False), q_emb):
        grades = by_query[query_id]
        graded = dict(zip(grades["item_id"].map(row_of), grades["grade"]))
        bm25 = scaled_bm25(lexical.scores(text))
        candidates = hybrid_candidates(bm25, embeddings @ qv, TRAIN_CANDIDATES)
        rows = np.array(sorted(set(graded) | set(candidates.tolist())))
        cosine = embeddings[rows] @ qv
        hq.append(np.broadcast_to(qv, (len(rows), len(qv))))
        hi.append(embeddings[rows])
        hf.append(ranking_features(item_feats[rows], fill, bm25[rows], cosine))
        target.append(np.array([graded.get(r, 0) / 3.0 for r in rows]))

    ranker = SeedRanker(RankerConfig(embedding_dim=encoder.dim, seed=settings.seed))
    losses = ranker.fit(np.concatenate(hq), np.concatenate(hi), np.concatenate(hf), np.concatenate(target))
    popularity = pit["popularity"].reindex(item_ids).fillna(0).to_numpy()
    bundle = ModelBundle(
        ranker=ranker, catalog=data.catalog, item_embeddings=embeddings, lexical=lexical,
        user_profiles=user_profiles(data.histories, row_of, embeddings),
        popular=np.argsort(-popularity, kind="stable")[:200],
    )
    report = {
        "train_queries": len(queries), "train_rows": int(sum(len(t) for t in target)),
        "items": len(item_ids), "loss_per_epoch": [round(x, 4) for x in losses],
        "labels_as_of": data.as_of.isoformat(), "seconds": round(time.perf_counter() - started, 1),
    }
    return bundle, report
