"""Candidate retrieval: BM25 (bm25s) and dense ANN (faiss HNSW over the unit-length item
embeddings, inner product = cosine), fused by reciprocal rank.
"""

from __future__ import annotations

import logging
from pathlib import Path

import bm25s
import numpy as np

# Reciprocal-rank-fusion constant from Cormack et al. (2009): damps the head so neither list dominates.
RRF_K = 60


class LexicalIndex:
    def __init__(self, retriever: bm25s.BM25, n_items: int):
        self.retriever, self.n_items = retriever, n_items

    @classmethod
    def build(cls, texts: list[str]) -> "LexicalIndex":
        # Feast configures the root logger at DEBUG; bm25s would narrate every index build.
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        retriever = bm25s.BM25()
        retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
        return cls(retriever, len(texts))

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every item for the query (zeros when no query term is in the vocabulary)."""
        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False, return_ids=False)[0]
        if not tokens:
            return np.zeros(self.n_items, dtype=np.float32)
        return self.retriever.get_scores(tokens).astype(np.float32)

    def save(self, path: Path) -> None:
        self.retriever.save(str(path))

    @classmethod
    def load(cls, path: Path) -> "LexicalIndex":
        retriever = bm25s.BM25.load(str(path))
        return cls(retriever, int(retriever.scores["num_docs"]))


class DenseIndex:
    """Approximate nearest neighbours by inner product: faiss HNSW (M=32, efSearch=256)."""

    def __init__(self, index):
        self.index = index

    @classmethod
    def build(cls, embeddings: np.ndarray, seed: int = 7) -> "DenseIndex":
        import faiss

        faiss.omp_set_num_threads(1)  # per-query search is latency-bound; threads only contend
        index = faiss.IndexHNSWFlat(embeddings.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 200
        index.hnsw.efSearch = 256
        index.add(np.ascontiguousarray(embeddings, dtype=np.float32))
        return cls(index)

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        """Item rows of the (approximately) k nearest items, nearest first."""
        k = min(k, self.index.ntotal)
        _, rows = self.index.search(np.ascontiguousarray(query[None, :], dtype=np.float32), k)
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
