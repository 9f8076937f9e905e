"""Candidate retrieval: BM25 (bm25s) and dense (MiniLM embeddings), fused by reciprocal rank.

Dense search is an exact dot product over the unit-length item matrix: at a few thousand items
it is faster than building an ANN index; the ANN index arrives with the catalog sizes that need it.
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


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, len(scores))
    idx = np.argpartition(-scores, k - 1)[:k]
    return idx[np.argsort(-scores[idx], kind="stable")]


def hybrid_candidates(bm25_scores: np.ndarray, dense_scores: np.ndarray, k: int) -> np.ndarray:
    """Top-k items by reciprocal-rank fusion of the BM25 and dense rankings."""
    fused = np.zeros(len(dense_scores), dtype=np.float64)
    for scores in (bm25_scores, dense_scores):
        ranked = top_k(scores, k)
        if scores is bm25_scores:
            ranked = ranked[scores[ranked] > 0]  # items matching no query term are not lexical candidates
        fused[ranked] += 1.0 / (RRF_K + np.arange(1, len(ranked) + 1))
    best = top_k(fused, k)
    return best[fused[best] > 0]
