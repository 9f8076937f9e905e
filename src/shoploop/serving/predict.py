"""The request path: encode the query, retrieve candidates, fetch their features, rank.

The service calls only this module; offline evaluation calls the same code with features from a
point-in-time frame instead of the online store, so what is measured is what is served.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from pydantic import BaseModel

from shoploop.data.text import price_bound
from shoploop.models.bundle import ModelBundle
from shoploop.models.encoder import TextEncoder
from shoploop.models.ranker import COUNTERS, ITEM_FEATURES
from shoploop.models.retrieval import fuse, lexical_ranking, top_k
from shoploop.settings import Settings

# Items the ranker rescores per request: enough for recall, few enough for one Feast lookup.
CANDIDATES = 100
# A filtered catalog up to this many rows is searched exactly (a matrix product), larger ones by the ANN.
EXACT_UP_TO = 50_000
# Latest items of a history that make the shopper's taste vector (SASRec's own window).
RECENT = 10

# item ids -> [n, len(ITEM_FEATURES)] matrix; NaN where an item has no features yet.
FeatureLookup = Callable[[list[str]], np.ndarray]
# user_key -> the shopper's log mean clicked price (Feast user feature); NaN when unknown.
UserLookup = Callable[[str], float]


@dataclass(frozen=True)
class Filters:
    """What a shopper narrowed the results to: a category (its path or any level above it, e.g.
    "Kitchen" or "Kitchen > Cookware"), a brand (either case), a price range (inclusive)."""

    category: str | None = None
    brand: str | None = None
    price_min: float | None = None
    price_max: float | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.category, self.brand, self.price_min, self.price_max))


class CatalogFilter:
    """Catalog rows that pass a Filters, from lookups built once per model version (a request costs a
    few dict reads and one price comparison over the catalog, not a string scan)."""

    def __init__(self, catalog) -> None:
        self.n = len(catalog)
        self.price = catalog["price"].to_numpy(dtype=np.float64)
        self.by_path = _rows_by(catalog["category_path"].fillna("").str.strip().str.lower())
        self.by_brand = _rows_by(catalog["brand"].fillna("").str.strip().str.lower())

    def mask(self, filters: Filters) -> np.ndarray:
        keep = np.ones(self.n, dtype=bool)
        if filters.category is not None:
            wanted = " > ".join(part.strip() for part in filters.category.lower().split(">"))
            paths = [rows for path, rows in self.by_path.items() if path == wanted or path.startswith(wanted + " > ")]
            keep &= _as_mask(self.n, paths)
        if filters.brand is not None:
            keep &= _as_mask(self.n, [self.by_brand.get(filters.brand.strip().lower(), np.empty(0, np.int64))])
        if filters.price_min is not None:
            keep &= self.price >= filters.price_min
        if filters.price_max is not None:
            keep &= self.price <= filters.price_max
        return keep


def _rows_by(values) -> dict[str, np.ndarray]:
    return {key: np.asarray(rows, dtype=np.int64) for key, rows in values.groupby(values).indices.items()}


def _as_mask(n: int, row_sets: list[np.ndarray]) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    for rows in row_sets:
        mask[rows] = True
    return mask


def no_user_features(user_key: str) -> float:
    return float("nan")


def taste(item_embeddings: np.ndarray, history: list[int]) -> np.ndarray:
    """A shopper's taste vector: the normalised mean embedding of their latest items."""
    v = item_embeddings[history[-RECENT:]].mean(0)
    return (v / max(float(np.linalg.norm(v)), 1e-9)).astype(np.float32)


class Hit(BaseModel):
    """One ranked item, as the service returns it."""

    item_id: str
    score: float
    title: str
    brand: str | None  # real catalogs have unbranded items
    category_path: str
    price: float
    rating: float | None = None  # the shop's star rating, where the served features hold one
    # The model that placed this hit when the list interleaves two (shoploop.serving.interleaving); absent, the
    # answer's model_version. A client sends it back as its events' model_version.
    model_version: str | None = None


def scaled_bm25(bm25: np.ndarray) -> np.ndarray:
    """BM25 over the catalog divided by the query's best score, so it is comparable across queries."""
    top = float(bm25.max()) if len(bm25) else 0.0
    return bm25 / top if top > 0 else np.zeros_like(bm25)


def ranking_features(item_features: np.ndarray, fill: np.ndarray, bm25: np.ndarray, cosine: np.ndarray,
                     budget: float | np.ndarray | None = None, coverage: np.ndarray | None = None) -> np.ndarray:
    """H_features of candidates: item features (NaN -> ``fill``; counters as log(1 + count), NaN -> 0)
    then the match signals. ``budget``: the query's price bound (one, or one per row; None/NaN: none);
    ``coverage``: the share of the query's words each candidate holds (None: no words, as for a taste vector)."""
    feats = np.array(item_features, dtype=np.float64)
    counters = slice(len(ITEM_FEATURES) - len(COUNTERS), len(ITEM_FEATURES))
    feats[:, counters] = np.log1p(np.nan_to_num(feats[:, counters], nan=0.0))
    feats = np.where(np.isnan(feats), fill, feats)
    budget = np.broadcast_to(np.asarray(np.nan if budget is None else budget, dtype=np.float64), len(feats))
    within = np.where(np.isnan(budget), 0.0,
                      np.where(feats[:, ITEM_FEATURES.index("log_price")] <= np.log(np.where(budget > 0, budget, 1e-9)), 1.0, -1.0))
    coverage = np.zeros(len(feats)) if coverage is None else coverage
    return np.concatenate([feats, np.stack([bm25, cosine, within, coverage], axis=1)], axis=1).astype(np.float32)


class SearchEngine:
    def __init__(self, bundle: ModelBundle, encoder: TextEncoder, item_features: FeatureLookup,
                 user_features: UserLookup = no_user_features):
        self.bundle, self.encoder, self.item_features, self.user_features = bundle, encoder, item_features, user_features
        self.item_ids = bundle.catalog["item_id"].tolist()
        self.rows = {item_id: row for row, item_id in enumerate(self.item_ids)}
        self.filter = CatalogFilter(bundle.catalog)
        # What a hit shows, as plain lists: a pandas lookup per field per hit cost a millisecond a request.
        self.shown = {column: bundle.catalog[column].tolist() for column in ("item_id", "title", "brand", "category_path", "price")}

    def rank(self, h_query: np.ndarray, rows: np.ndarray, bm25: np.ndarray, feats: np.ndarray | None = None,
             budget: float | None = None, query: str | None = None) -> np.ndarray:
        """Ranker scores of the given item rows for one query vector (bm25: scaled, whole catalog;
        feats: the rows' item features when already looked up; budget: the query's price bound;
        query: its words, as served, for their coverage)."""
        h_items = self.bundle.item_embeddings[rows]
        # An item the store has no row for (new since materialisation) gets the training mean: neutral.
        fill = self.bundle.ranker.feature_mean.numpy()[: len(ITEM_FEATURES)]
        feats = self.item_features([self.item_ids[r] for r in rows]) if feats is None else feats
        coverage = self.bundle.lexical.coverage(query, rows) if query else None
        h_features = ranking_features(feats, fill, bm25[rows], h_items @ h_query, budget, coverage)
        # A version trained before a match feature was added reads only the features it knew.
        return self.bundle.ranker.score(h_query, h_items, h_features[:, : self.bundle.ranker.config.n_features])

    def candidates(self, query: str, k: int = CANDIDATES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Hybrid retrieval: (rows fused from BM25 and dense ANN, the query vector, scaled BM25 of all
        items), for the query with its misspellings corrected against the catalog's words."""
        return self._retrieve(self.bundle.lexical.correct(query), k)

    def _retrieve(self, corrected: str, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``allowed``: a mask of the rows a filter keeps (None: all); candidates come only from them."""
        h_query = self.encoder.encode([corrected])[0]
        bm25 = scaled_bm25(self.bundle.lexical.scores(corrected))
        lexical = lexical_ranking(bm25 if allowed is None else np.where(allowed, bm25, 0.0), k)
        dense = self.bundle.dense.search(h_query, k) if allowed is None else self._nearest(h_query, k, allowed)
        return fuse([lexical, dense], len(self.item_ids), k), h_query, bm25

    def _nearest(self, vector: np.ndarray, k: int, allowed: np.ndarray) -> np.ndarray:
        """The k allowed rows nearest the vector: exact over a filtered catalog up to EXACT_UP_TO rows
        (cheaper than a graph search that must skip most nodes), else the ANN restricted to them."""
        rows = np.flatnonzero(allowed)
        if len(rows) <= EXACT_UP_TO:
            return rows[top_k(self.bundle.item_embeddings[rows] @ vector, k)] if len(rows) else rows
        return self.bundle.dense.search(vector, k, allowed)

    def search_rows(self, query: str, k: int, offset: int = 0, filters: Filters | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ranked rows ``offset .. offset + k`` of the query's CANDIDATES best matches (within the
        filters), and their scores. Pages come from one ranking, so they never repeat or skip an item."""
        corrected = self.bundle.lexical.correct(query)  # once: retrieval and the ranker's word coverage share it
        allowed = self.filter.mask(filters) if filters else None
        rows, h_query, bm25 = self._retrieve(corrected, CANDIDATES, allowed)
        if not len(rows):
            return rows, np.empty(0, dtype=np.float32)
        scores = self.rank(h_query, rows, bm25, budget=price_bound(query), query=corrected)
        order = np.argsort(-scores, kind="stable")[offset:offset + k]
        return rows[order], scores[order]

    def search(self, query: str, k: int, offset: int = 0, filters: Filters | None = None) -> list[Hit]:
        return self.hits(*self.search_rows(query, k, offset, filters))

    def similar(self, item_id: str, k: int, filters: Filters | None = None) -> list[Hit] | None:
        """"More like this": the items whose text embeds nearest the given one's (cosine), best first,
        within the filters; None for an item the catalog does not hold."""
        row = self.rows.get(item_id)
        if row is None:
            return None
        allowed = self.filter.mask(filters) if filters else np.ones(len(self.item_ids), dtype=bool)
        allowed[row] = False
        embeddings = self.bundle.item_embeddings
        rows = self._nearest(embeddings[row], k, allowed)
        return self.hits(rows, embeddings[rows] @ embeddings[row])

    def recommend(self, user_key: str | None, k: int) -> list[Hit]:
        """The shopper's next items from every candidate source, re-ranked; popular items for a shopper
        we do not know."""
        history = self.bundle.user_sequences.get(user_key, []) if user_key else []
        if not history or self.bundle.sasrec is None:
            rows = self.bundle.popular[:k]
            return self.hits(rows, np.linspace(1.0, 0.5, len(rows)))
        return self.hits(*self.recommend_rows(history, self.user_features(user_key), k))

    def recommend_sources(self, history: list[int]) -> dict[str, np.ndarray]:
        """Each candidate source's scores of the whole catalog for one history (-inf: no evidence):
        SASRec, item-to-item co-occurrence, the taste vector's cosine, and popularity in histories."""
        bundle = self.bundle
        n = len(self.item_ids)
        cooc = bundle.cooccurrence
        counts = cooc.counts([history])[0] if cooc is not None else np.zeros(n)
        popularity = cooc.popularity if cooc is not None else np.zeros(n)
        return {"sasrec": bundle.sasrec.scores([history])[0],
                "cooccurrence": np.where(counts > 0, counts, -np.inf),
                "text": bundle.item_embeddings @ taste(bundle.item_embeddings, history),
                "popularity": np.where(popularity > 0, popularity, -np.inf)}

    def recommend_candidates(self, history: list[int], user_log_price: float) -> tuple[np.ndarray, np.ndarray]:
        """(candidate rows pooled from every source, their re-ranking features): each source's score
        and rank, the seed ranker's score with the shopper's taste vector as the query (when the
        version has one) and the gap to the shopper's price level."""
        from shoploop.models.recommender import pool, rerank_features

        bundle = self.bundle
        sources = self.recommend_sources(history)
        rows, ranks = pool(sources, history)
        feats = self.item_features([self.item_ids[r] for r in rows])
        if bundle.ranker is not None:
            fill = bundle.ranker.feature_mean.numpy()[: len(ITEM_FEATURES)]
            log_price = np.where(np.isnan(feats), fill, feats)[:, ITEM_FEATURES.index("log_price")]
            profile = taste(bundle.item_embeddings, history)
            ranker = self.rank(profile, rows, np.zeros(len(self.item_ids), dtype=np.float32), feats)
        else:  # a recommendation-only bundle (no search judgments to train a seed ranker on)
            log_price, ranker = feats[:, ITEM_FEATURES.index("log_price")], np.zeros(len(rows))
        last_cosine = bundle.item_embeddings[rows] @ bundle.item_embeddings[history[-1]]
        cooc = bundle.cooccurrence
        last_cooc = cooc.counts([history[-1:]])[0][rows] if cooc is not None else np.zeros(len(rows))
        return rows, rerank_features(rows, sources, ranks, last_cosine, last_cooc, ranker, log_price, user_log_price)

    def recommend_rows(self, history: list[int], user_log_price: float, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The top k of the shopper's candidate pool by the re-ranker (by SASRec where none was trained)."""
        from shoploop.models.recommender import RERANK_FEATURES

        rows, feats = self.recommend_candidates(history, user_log_price)
        reranker = self.bundle.reranker
        scores = reranker.score(feats) if reranker is not None else feats[:, RERANK_FEATURES.index("sasrec_logp")]
        order = np.argsort(-scores, kind="stable")[:k]
        return rows[order], scores[order]

    def hits(self, rows: np.ndarray, scores: np.ndarray) -> list[Hit]:
        """The answer's hits for these catalog rows and their scores, in the order given."""
        shown = self.shown
        # The served features hold each item's rating for the catalog (features.ServedItemFeatures.held);
        # an offline lookup does not, and its hits carry none.
        held = getattr(self.item_features, "held", None)
        ratings = held("rating") if held is not None else None
        hits = []
        for r, s in zip(rows.tolist(), scores.tolist()):
            rating = None if ratings is None or np.isnan(ratings[r]) else round(float(ratings[r]), 2)
            hits.append(Hit(item_id=shown["item_id"][r], score=s, title=shown["title"][r], brand=shown["brand"][r],
                            category_path=shown["category_path"][r], price=float(shown["price"][r]), rating=rating))
        return hits


def frame_lookup(frame) -> FeatureLookup:
    """A FeatureLookup over a frame indexed by item_id (offline: a point-in-time Feast result)."""
    table = frame[ITEM_FEATURES].astype(np.float64)

    def lookup(item_ids: list[str]) -> np.ndarray:
        return table.reindex(item_ids).to_numpy()

    return lookup


def served_engine(settings: Settings, latest=None, tag: str | None = None):
    """(tag, engine) of the model that serves (or of ``tag``), over the latest materialised item features."""
    from shoploop import features
    from shoploop.models import registry

    tag, bundle = registry.load_champion(settings) if tag is None else (tag, registry.load_version(settings, tag))
    latest = features.latest_item_features(settings) if latest is None else latest
    return tag, SearchEngine(bundle, bundle.text_encoder(), frame_lookup(latest))
