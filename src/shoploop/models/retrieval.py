"""Candidate retrieval: BM25 (bm25s) and dense ANN (faiss HNSW over the unit-length item
embeddings, inner product = cosine), fused by reciprocal rank.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import bm25s
import numpy as np

# A word in at least this many distinct training queries is the shoppers' vocabulary, not a typo.
SHOPPER_WORD_QUERIES = 3
# Reciprocal-rank-fusion constant from Cormack et al. (2009): damps the head so neither list dominates.
RRF_K = 60


class LexicalIndex:
    def __init__(self, retriever: bm25s.BM25, n_items: int, shopper_words: set[str] | None = None):
        self.retriever, self.n_items = retriever, n_items
        # Words the shop's past queries use often (synonyms the catalog lacks: "cover" for a case).
        self.shopper_words = shopper_words or set()
        self._words: list[str] | None = None  # the vocabulary, most used first (for spelling correction)

    @classmethod
    def build(cls, texts: list[str], queries: list[str] | None = None) -> "LexicalIndex":
        """BM25 over the item texts; ``queries`` (the training queries) teach the spelling corrector
        which words shoppers use that the catalog does not."""
        from collections import Counter

        # Feast configures the root logger at DEBUG; bm25s would narrate every index build.
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        retriever = bm25s.BM25()
        retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
        used = Counter(w for q in set(queries or []) for w in set(q.lower().split()))
        return cls(retriever, len(texts), {w for w, n in used.items() if n >= SHOPPER_WORD_QUERIES})

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every item for the query (zeros when no query term is in the vocabulary)."""
        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False, return_ids=False)[0]
        if not tokens:
            return np.zeros(self.n_items, dtype=np.float32)
        return self.retriever.get_scores(tokens).astype(np.float32)

    def coverage(self, query: str, rows: np.ndarray | None = None) -> np.ndarray:
        """Share of the query's distinct words (as BM25 tokenises them) that each item's text holds: a
        product named by every word the shopper typed is more likely the one meant than one matching a
        single rare word, which BM25 alone cannot tell apart. ``rows``: only these items (the request
        path's candidates), in that order; None: the whole catalog.

        Read from the index's postings (the items whose text holds each word), not by scoring the
        catalog once per word."""
        tokens = set(bm25s.tokenize([query], stopwords="en", show_progress=False, return_ids=False)[0])
        held = np.zeros(self.n_items, dtype=np.float32)
        indptr, indices = self.retriever.scores["indptr"], self.retriever.scores["indices"]
        for token in tokens:
            t = self.retriever.vocab_dict.get(token)
            if t is not None and t < len(indptr) - 1:  # a word no item holds covers nothing
                held[indices[indptr[t]:indptr[t + 1]]] += 1
        held /= max(len(tokens), 1)
        return held if rows is None else held[rows]

    def correct(self, query: str) -> str:
        """The query with each word neither the catalog nor the shoppers use (4+ letters) replaced by the catalog word
        one edit away (a letter added, dropped or changed, or two neighbours swapped: optimal string
        alignment, rapidfuzz) that the most items use; other words, and words with no such
        neighbour, are kept as typed."""
        from rapidfuzz import process
        from rapidfuzz.distance import OSA

        vocab = self.retriever.vocab_dict
        if self._words is None:
            items_using = np.diff(self.retriever.scores["indptr"])
            used = [w for w, i in vocab.items() if w and i < len(items_using)]  # bm25s adds an empty token
            self._words = sorted(used, key=lambda w: -items_using[vocab[w]])  # most used first
        out = []
        for word in query.split():
            token = word.lower()
            if len(token) >= 4 and token.isalpha() and token not in vocab and token not in self.shopper_words:
                match = process.extractOne(token, self._words, scorer=OSA.distance, score_cutoff=1)
                if match is not None:  # ties go to the first listed: the most used word
                    word = match[0]
            out.append(word)
        return " ".join(out)

    def save(self, path: Path) -> None:
        self.retriever.save(str(path))
        (path / "shopper_words.json").write_text(json.dumps(sorted(self.shopper_words)))

    @classmethod
    def load(cls, path: Path) -> "LexicalIndex":
        retriever = bm25s.BM25.load(str(path))
        words = path / "shopper_words.json"
        return cls(retriever, int(retriever.scores["num_docs"]),
                   set(json.loads(words.read_text())) if words.exists() else None)


class DenseIndex:
    """Approximate nearest neighbours by inner product: faiss HNSW (M=32, efSearch=256)."""

    def __init__(self, index):
        self.index = index

    @classmethod
    def build(cls, embeddings: np.ndarray, seed: int = 7) -> "DenseIndex":
        import faiss

        # Built on one thread (HNSW insertion on several depends on their timing: the graph would differ
        # run to run), then the count is put back: faiss and torch share one OpenMP runtime, and a
        # process that goes on to train (the demo builds its first answer before fine-tuning) would
        # otherwise train on a single core.
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            index = faiss.IndexHNSWFlat(embeddings.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 200
            index.hnsw.efSearch = 256
            index.add(np.ascontiguousarray(embeddings, dtype=np.float32))
        finally:
            faiss.omp_set_num_threads(threads)
        return cls(index)

    def extended(self, embeddings: np.ndarray) -> "DenseIndex":
        """A copy with these items added after the existing rows (their rows continue the numbering);
        the graph of the existing items is kept, not rebuilt (one thread, as ``build``)."""
        import faiss

        index = faiss.clone_index(self.index)
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            index.add(np.ascontiguousarray(embeddings, dtype=np.float32))
        finally:
            faiss.omp_set_num_threads(threads)
        index.hnsw.efSearch = self.index.hnsw.efSearch
        return DenseIndex(index)

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
        """Item rows of the (approximately) k nearest items, nearest first; ``allowed``: a mask of the
        rows that may be returned (faiss skips the others during the graph search)."""
        import faiss

        k = min(k, self.index.ntotal)
        params = None
        if allowed is not None:
            bitmap = np.packbits(allowed.astype(np.uint8), bitorder="little")
            params = faiss.SearchParametersHNSW(sel=faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bitmap)),
                                                efSearch=self.index.hnsw.efSearch)
        _, rows = self.index.search(np.ascontiguousarray(query[None, :], dtype=np.float32), k, params=params)
        return rows[0][rows[0] >= 0]

    def save(self, path: Path) -> None:
        import faiss

        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path) -> "DenseIndex":
        import faiss

        index = faiss.read_index(str(path))
        index.hnsw.efSearch = 256
        return cls(index)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, len(scores))
    idx = np.argpartition(-scores, k - 1)[:k]
    return idx[np.argsort(-scores[idx], kind="stable")]


def lexical_ranking(bm25_scores: np.ndarray, k: int) -> np.ndarray:
    """BM25's top-k rows; items matching no query term are not lexical candidates."""
    ranked = top_k(bm25_scores, k)
    return ranked[bm25_scores[ranked] > 0]


def fuse(rankings: list[np.ndarray], n_items: int, k: int) -> np.ndarray:
    """Top-k rows by reciprocal-rank fusion of several rankings (rows, best first)."""
    fused = np.zeros(n_items, dtype=np.float64)
    for ranked in rankings:
        fused[ranked] += 1.0 / (RRF_K + np.arange(1, len(ranked) + 1))
    best = top_k(fused, k)
    return best[fused[best] > 0]


def hybrid_candidates(bm25_scores: np.ndarray, dense_scores: np.ndarray, k: int) -> np.ndarray:
    """Top-k items by reciprocal-rank fusion of the BM25 and exact dense rankings (training-time mining)."""
    return fuse([lexical_ranking(bm25_scores, k), top_k(dense_scores, k)], len(dense_scores), k)
