"""The ranker's training rows from each learning signal, and the label weights chosen on validation queries.

Rows of three kinds: a judged item of a judged query (target grade / 3), a candidate the retriever
found for that query but nobody judged (target 0; a full negative when judgments are complete, a
weak one when sparse), and the logs: beside judgments one row per logged (query, item) pair (target
its attractiveness under the position-based click model, ``labels.click_model``: clicks per
examination, so an item shown often is not a pile of negatives), alone one per impression (target its
implicit grade / 3, a click weighted by the inverse examination propensity of its position). Each kind's weight is scaled as one,
and the scales no default fits for every shop are chosen on validation queries (``choose_scale``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from shoploop import features
from shoploop.data.text import price_bound
from shoploop.models import labels
from shoploop.models.bias import ipw_weights
from shoploop.models.encoder import TextEncoder
from shoploop.models.evaluate import ndcg_at_k, spearman
from shoploop.models.ranker import RankerConfig, SeedRanker
from shoploop.models.retrieval import LexicalIndex, hybrid_candidates
from shoploop.serving.predict import ranking_features, scaled_bm25
from shoploop.settings import Settings

# Hard negatives per judged training query, from the retriever the ranker will sit behind.
TRAIN_CANDIDATES = 50
# Logged (query, item) pairs the ranker learns from (a sample when there are more).
MAX_LOG_ROWS = 40_000
# A logged pair weighs its expected examinations, at most this many: a pair seen often is surer
# evidence, but a handful of head pairs must not outweigh the rest.
MAX_PAIR_WEIGHT = 5.0
# Weights no default fits for every shop, each chosen on the validation queries (labels.VALIDATION_SHARE)
# by the nDCG@10 of a ranker fitted on the other training queries (by the mean per-query Spearman correlation
# with the grades where judgments are sparse: a small, mostly relevant judged pool's nDCG barely separates
# rankers; on Home Depot the unjudged weights' validation nDCG@10 spanned 0.918-0.919):
# sparse judgments: an unjudged candidate's weight as a negative (0: the judged pools alone);
UNJUDGED_WEIGHTS = (0.0, 0.1, 0.3)
# judgments and logs together: the log rows' weight against the judged rows. Judgments grade relevance;
# what shoppers click also follows what no judge grades (an item's quality, its price): the weight is
# the one shoppers' clicks on the validation queries favour among those whose judged nDCG@10 is within
# RELEVANCE_TOLERANCE of the best (relevance first, then what shoppers do).
LOG_WEIGHTS = (0.0, 0.1, 0.3, 1.0, 3.0)
RELEVANCE_TOLERANCE = 0.005
# Too few validation queries and the sweep measures noise: the middle defaults are kept.
MIN_VALIDATION_QUERIES = 10
# Sparse judgments: unjudged candidates kept per query as weak negatives, the retriever's top ones.
UNJUDGED_PER_QUERY = 20


def point_in_time_rows(settings: Settings, rows: pd.DataFrame) -> np.ndarray:
    """ITEM_FEATURES of each (item_id, event_timestamp) row as Feast knew them at that moment."""
    from shoploop.models.ranker import ITEM_FEATURES

    entity_rows = rows[["item_id", "event_timestamp"]].drop_duplicates().reset_index(drop=True)
    entity_rows["event_timestamp"] = pd.to_datetime(entity_rows["event_timestamp"], utc=True)
    joined = features.historical(settings, entity_rows)
    joined["event_timestamp"] = pd.to_datetime(joined["event_timestamp"], utc=True)
    keyed = rows[["item_id", "event_timestamp"]].assign(event_timestamp=lambda f: pd.to_datetime(f["event_timestamp"], utc=True))
    return keyed.merge(joined, on=["item_id", "event_timestamp"], how="left")[ITEM_FEATURES].to_numpy(np.float64)


# Kinds of ranker rows: each kind's weight is scaled as one.
JUDGED, UNJUDGED, LOGGED = 0, 1, 2


@dataclass
class RankerRows:
    """The ranker's training rows with, per row, its kind, query and grade (-1: unjudged or logged)."""

    hq: np.ndarray
    hi: np.ndarray
    hf: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    kind: np.ndarray
    query_id: np.ndarray
    grade: np.ndarray

    @classmethod
    def concat(cls, parts: list["RankerRows"]) -> "RankerRows":
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__))

    def fit(self, scale: tuple[float, float, float], config: RankerConfig, keep: np.ndarray | None = None) -> SeedRanker:
        """A ranker fitted on the rows (``keep``: a mask), each kind's weight scaled by ``scale``."""
        if config.fixed:  # nothing to fit
            return SeedRanker.matching(config)
        weight = self.weight * np.asarray(scale, dtype=np.float32)[self.kind]
        use = (weight > 0) & (True if keep is None else keep)
        return SeedRanker.fit_averaged(config, self.hq[use], self.hi[use], self.hf[use], self.target[use], weight[use])

    def validation_click_ndcg(self, ranker: SeedRanker, queries: np.ndarray, k: int = 10) -> float:
        """Mean nDCG@k over the given queries' logged pairs ranked by the ranker, each pair's gain its
        attractiveness (what shoppers clicked, per examination): how well the ranker orders what
        shoppers were shown by what they chose. NaN where no validation query was logged."""
        import torch

        rows = np.flatnonzero((self.kind == LOGGED) & np.isin(self.query_id, queries))
        if not len(rows):
            return float("nan")
        with torch.inference_mode():
            logits = ranker(*(torch.from_numpy(a[rows]) for a in (self.hq, self.hi, self.hf))).numpy()
        discount = 1.0 / np.log2(np.arange(2, k + 2))
        scores = []
        for _, group in pd.DataFrame({"query_id": self.query_id[rows], "logit": logits,
                                      "gain": self.target[rows]}).groupby("query_id", sort=False):
            if len(group) < 2:
                continue
            gain = group["gain"].to_numpy()  # linear: an attractiveness is a click chance (ndcg_at_k's 2^g - 1 is for grades)
            got = gain[np.argsort(-group["logit"].to_numpy(), kind="stable")][:k]
            best = np.sort(gain)[::-1][:k]
            scores.append(float(got @ discount[:len(got)]) / max(float(best @ discount[:len(best)]), 1e-12))
        return float(np.mean(scores)) if scores else float("nan")

    def validation_ndcg(self, ranker: SeedRanker, queries: np.ndarray, complete: bool, k: int = 10) -> float:
        """Mean nDCG@k over the given judged queries: their judged items and retrieved candidates ranked
        when judgments are complete, their judged pool alone when sparse."""
        import torch

        ranked = (self.kind == JUDGED) | ((self.kind == UNJUDGED) & complete)
        rows = np.flatnonzero(ranked & np.isin(self.query_id, queries))
        with torch.inference_mode():
            logits = ranker(*(torch.from_numpy(a[rows]) for a in (self.hq, self.hi, self.hf))).numpy()
        frame = pd.DataFrame({"row": rows, "query_id": self.query_id[rows], "logit": logits, "grade": self.grade[rows]})
        scores = []
        for _, group in frame.groupby("query_id", sort=False):
            grades = {r: g for r, g in zip(group["row"], group["grade"]) if g > 0}
            if grades:
                order = np.argsort(-group["logit"].to_numpy(), kind="stable")
                scores.append(ndcg_at_k(list(group["row"].to_numpy()[order]), grades, k))
        return float(np.mean(scores)) if scores else float("nan")

    def validation_spearman(self, ranker: SeedRanker, queries: np.ndarray) -> float:
        """Mean per-query Spearman correlation of the ranker's scores with the grades over the given judged
        queries' judged pools (queries whose pool is graded all alike say nothing and are left out)."""
        rhos = self.validation_spearmans(ranker, queries)
        return float(rhos.mean()) if len(rhos) else float("nan")

    def validation_spearmans(self, ranker: SeedRanker, queries: np.ndarray) -> pd.Series:
        """``validation_spearman`` per query (query_id -> rho), for comparing two rankers query by query."""
        import torch

        rows = np.flatnonzero((self.kind == JUDGED) & np.isin(self.query_id, queries))
        with torch.inference_mode():
            logits = ranker(*(torch.from_numpy(a[rows]) for a in (self.hq, self.hi, self.hf))).numpy()
        frame = pd.DataFrame({"query_id": self.query_id[rows], "logit": logits, "grade": self.grade[rows]})
        rhos = {query_id: rho for query_id, group in frame.groupby("query_id", sort=False)
                if (rho := spearman(group["logit"].to_numpy(), group["grade"].to_numpy())) is not None}
        return pd.Series(rhos, dtype=float)


def clearly_better(richer: pd.Series, simpler: pd.Series) -> tuple[bool, float | None]:
    """Whether the richer ranker orders the same validation queries better than the simpler one by more
    than one standard error of their per-query difference (the one-standard-error rule), and that error.
    Sparse judgments need it: about six judged products a query leave each query's Spearman coarse, and on
    Home Depot a fitted ranker that led its encoder by 0.003 on 300 validation queries trailed it by 0.015
    on the held-out ones."""
    both = pd.concat({"richer": richer, "simpler": simpler}, axis=1).dropna()
    gain = both["richer"] - both["simpler"]
    if len(gain) < 2:
        return bool(gain.sum() > 0), None  # no error to measure (None, not NaN: the report is JSON)
    error = float(gain.std(ddof=1) / np.sqrt(len(gain)))
    return bool(gain.mean() > error), round(error, 4)


def judged_rows(queries: pd.DataFrame, judgments: pd.DataFrame, q_emb: np.ndarray, embeddings: np.ndarray,
                item_feats: np.ndarray, fill: np.ndarray, row_of: dict[str, int], lexical: LexicalIndex,
                complete: bool) -> RankerRows:
    """Every judged training query's judged items (target grade / 3) and the retriever's top candidates
    it did not judge (target 0, kind UNJUDGED)."""
    by_query = {query_id: rows for query_id, rows in judgments.groupby("query_id")}
    parts = []
    for (query_id, text), qv in zip(queries.itertuples(index=False), q_emb):
        grades = by_query[query_id]
        graded = dict(zip(grades["item_id"].map(row_of), grades["grade"]))
        corrected = lexical.correct(text)
        bm25 = scaled_bm25(lexical.scores(corrected))
        candidates = [r for r in hybrid_candidates(bm25, embeddings @ qv, TRAIN_CANDIDATES) if r not in graded]
        if not complete:  # weak negatives at most: the top ones the retriever found, not the whole list
            candidates = candidates[:UNJUDGED_PER_QUERY]
        rows = np.array(sorted(graded) + sorted(candidates), dtype=int)
        grade = np.array([graded.get(r, -1) for r in rows])
        parts.append(RankerRows(
            hq=np.repeat(qv[None, :], len(rows), axis=0), hi=embeddings[rows],
            hf=ranking_features(item_feats[rows], fill, bm25[rows], embeddings[rows] @ qv, price_bound(text),
                                lexical.coverage(corrected)[rows]),
            target=(np.maximum(grade, 0) / 3.0).astype(np.float32), weight=np.ones(len(rows), np.float32),
            kind=np.where(grade >= 0, JUDGED, UNJUDGED), query_id=np.full(len(rows), query_id, dtype=object),
            grade=grade))
    return RankerRows.concat(parts)


def log_rows(settings: Settings, logs: pd.DataFrame, propensities: np.ndarray, encoder: TextEncoder,
             embeddings: np.ndarray, row_of: dict[str, int], lexical: LexicalIndex, fill: np.ndarray,
             seed: int, pairs: pd.DataFrame | None = None) -> RankerRows:
    """Ranker rows from the training queries' logs, features as of the (latest) impression.

    ``pairs`` (beside judgments; ``labels.click_model`` of these logs): one row per logged (query, item)
    pair, target its attractiveness under the position-based click model (clicks per expected
    examination, the propensities estimated from these logs), weight its examinations (at most
    MAX_PAIR_WEIGHT). The
    judged rows teach relevance; these teach what shoppers choose among what they were shown.
    Otherwise (logs alone): one row per impression, target its implicit grade / 3, a click weighted by
    the inverse propensity of its position: the unclicked impressions are the only negatives there are.

    Beside judgments, rows per impression made every unclicked impression a negative: an item shown often
    piled up negatives whatever its click-through, and the ranker learnt to push down what the serving
    model favoured. Measured on a default-scale shop's warm retraining after a drift (bench/shopper_value.py:
    the simulator's click model, 3,000 drifted sessions, expected clicks per search; each ranker refitted
    on the same rows and encoder): per-impression rows lowered clicks as their weight rose (2.381 at log
    weight 0, 2.334 at 0.05, 2.290 at 0.1; validation nDCG@10 0.83 at 1); per-pair rows raised them
    (2.346 at 0, 2.345 at 0.3, 2.377 at 1; validation nDCG@10 0.941, 0.945, 0.944), against 2.326 for
    the champion shoppers preferred to the per-impression one. Alone, per-pair rows fell far below
    (held-out nDCG@10 0.733 against 0.875, bench/label_sources.py): without judged negatives, the skipped
    impressions are what teaches relevance."""
    per_pair = pairs is not None
    frame = pairs.merge(logs.groupby(["query_id", "item_id"], as_index=False)["event_timestamp"].max(),
                        on=["query_id", "item_id"]) if per_pair else logs
    if len(frame) > MAX_LOG_ROWS:
        frame = frame.sample(MAX_LOG_ROWS, random_state=seed)
    frame = frame.reset_index(drop=True)
    texts = frame["query_text"].drop_duplicates().tolist()
    served = [lexical.correct(t) for t in texts]  # the query as the serving path ranks it
    q_of = dict(zip(texts, encoder.encode(served)))
    bm25_of = {t: scaled_bm25(lexical.scores(c)) for t, c in zip(texts, served)}
    coverage_of = {t: lexical.coverage(c) for t, c in zip(texts, served)}
    rows = frame["item_id"].map(row_of).to_numpy()
    hq = np.stack([q_of[t] for t in frame["query_text"]])
    hi = embeddings[rows]
    bm25 = np.array([bm25_of[t][r] for t, r in zip(frame["query_text"], rows)], dtype=np.float32)
    budgets = np.array([price_bound(t) or np.nan for t in frame["query_text"]])
    coverage = np.array([coverage_of[t][r] for t, r in zip(frame["query_text"], rows)], dtype=np.float32)
    feats = ranking_features(point_in_time_rows(settings, frame), fill, bm25, (hq * hi).sum(1), budgets, coverage)
    if per_pair:
        target = frame["attractiveness"].to_numpy(np.float32)
        weight = np.minimum(frame["examinations"].to_numpy(np.float32), MAX_PAIR_WEIGHT)
    else:
        target = (labels.implicit_grades(frame) / 3.0).astype(np.float32)
        weight = ipw_weights(frame["position"].to_numpy(), frame["clicked"].to_numpy(), propensities).astype(np.float32)
    return RankerRows(hq=hq, hi=hi, hf=feats, target=target, weight=weight, kind=np.full(len(frame), LOGGED),
                      query_id=frame["query_id"].to_numpy(object), grade=np.full(len(frame), -1))


def choose_scale(rows: RankerRows, plan: labels.LabelPlan,
                 config: RankerConfig) -> tuple[tuple[float, float, float], RankerConfig, dict]:
    """Each kind's weight, and the ranker's config: judged 1; unjudged 1 when judgments are complete, else
    the best of UNJUDGED_WEIGHTS by the judged pools' Spearman; logged 1 alone, else, beside judgments, the
    one of LOG_WEIGHTS whose ranker orders the validation queries' logged pairs best by shoppers' clicks
    (``validation_click_ndcg``) among those within RELEVANCE_TOLERANCE of the best judged nDCG. With sparse
    judgments, whether the ranker weighs the text at all (``RankerConfig.text``) is chosen the same way: the
    validation queries are then kept out of the encoder's fine-tuning (train.train), so the text weights
    are measured on queries neither model has seen; and a fitted ranker serves only where it orders those pools
    better than the fine-tuned encoder's cosine alone (``RankerConfig.fixed``). The candidates are compared on
    validation queries by a ranker fitted on the other training queries."""
    sparse = plan.use_judgments and not plan.judgments_complete
    scale = [1.0, 1.0 if plan.judgments_complete else UNJUDGED_WEIGHTS[1], 1.0 if not plan.use_judgments else LOG_WEIGHTS[1]]
    judged = np.unique(rows.query_id[rows.kind == JUDGED])
    validation = np.array([q for q in judged if labels.in_validation(q)], dtype=object)
    sweeps = [(UNJUDGED, UNJUDGED_WEIGHTS)] if sparse else []
    sweeps += [(LOGGED, LOG_WEIGHTS)] if plan.use_judgments and plan.use_logs else []
    report: dict = {"validation_queries": len(validation)}
    if sweeps and len(validation) < MIN_VALIDATION_QUERIES:
        report["note"] = f"defaults kept: {len(validation)} validation queries (< {MIN_VALIDATION_QUERIES}) cannot choose"
        sweeps = []

    def judged_order(ranker: SeedRanker) -> float:
        return rows.validation_spearman(ranker, validation) if sparse else \
            rows.validation_ndcg(ranker, validation, plan.judgments_complete)

    metric = "spearman" if sparse else "ndcg@10"
    keep = ~np.isin(rows.query_id, validation)
    fitted: dict[tuple[int, float], SeedRanker] = {}
    for kind, candidates in sweeps:
        measured, clicked = {}, {}
        for value in candidates:
            trial = list(scale)
            trial[kind] = value
            ranker = fitted[kind, value] = rows.fit(tuple(trial), config, keep)
            measured[value] = round(judged_order(ranker), 4)
            if kind == LOGGED:
                clicked[value] = round(rows.validation_click_ndcg(ranker, validation), 4)
        if kind == LOGGED and not any(np.isnan(v) for v in clicked.values()):
            relevant = [v for v in candidates if measured[v] >= max(measured.values()) - RELEVANCE_TOLERANCE]
            scale[kind] = max(relevant, key=lambda v: (clicked[v], -v))
            report["log_weight_validation_click_ndcg@10"] = clicked
        else:  # ties: the smaller weight
            scale[kind] = max(measured, key=lambda v: (measured[v], -v))
        report[("unjudged" if kind == UNJUDGED else "log") + f"_weight_validation_{metric}"] = measured
    if sparse and sweeps:
        # Each richer choice must beat the simpler one beyond noise (clearly_better). With text: the last
        # sweep already fitted the ranker at the chosen scale.
        last = sweeps[-1][0]
        by_query = {"with text": rows.validation_spearmans(fitted[last, scale[last]], validation),
                    "features alone": rows.validation_spearmans(rows.fit(tuple(scale), replace(config, text=False), keep),
                                                                validation)}
        errors = {}
        if len(by_query["with text"]) and len(by_query["features alone"]):  # no pool with two grades: nothing to choose by
            text, errors["text"] = clearly_better(by_query["with text"], by_query["features alone"])
            config = replace(config, text=text)
        report["text_validation_spearman"] = {name: round(float(rhos.mean()), 4) for name, rhos in by_query.items()}
        # and the fitted ranker must order the pools better than the fine-tuned encoder it sits on, or the encoder serves
        ranker_rhos = by_query["with text" if config.text else "features alone"]
        encoder_rhos = rows.validation_spearmans(SeedRanker.matching(replace(config, fixed=("cosine",))), validation)
        if len(ranker_rhos) and len(encoder_rhos):
            keep_fitted, errors["encoder"] = clearly_better(ranker_rhos, encoder_rhos)
            if not keep_fitted:
                config = replace(config, fixed=("cosine",))
        report["encoder_alone_validation_spearman"] = {"fitted ranker": round(float(ranker_rhos.mean()), 4),
                                                       "encoder alone": round(float(encoder_rhos.mean()), 4)}
        report["validation_spearman_standard_error"] = errors
    report.update(unjudged_weight=scale[UNJUDGED] if plan.use_judgments else None,
                  log_weight=scale[LOGGED] if plan.use_logs else None, ranker_text=config.text,
                  ranker_fixed=list(config.fixed) or None)
    return tuple(scale), config, report
