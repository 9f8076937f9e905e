"""Logging policies: who ranks the slates the simulated shoppers see.

Before any model a shop has a lexical ranker; once a champion is registered, it serves, and the
simulated logs are closed-loop (see shoploop.pipeline.steps.simulate).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from scipy import sparse

from shoploop.data.relevance import Catalog

LOGGING_MODEL = "sim-lexical-v0"
POOL = 200  # logging-ranker candidates kept per query; a slate is drawn from them


class LoggingPolicy(Protocol):
    """Whichever ranker is serving: its candidates for each query text, as catalog rows and scores.
    A slate is its top SLATE among the items online that day after Gumbel noise of scale ``noise``
    (the exploration that lets position bias be estimated from the logs)."""

    name: str    # the model_version events carry
    noise: float

    def candidates(self, texts: list[str], catalog: Catalog) -> dict[str, tuple[np.ndarray, np.ndarray]]: ...


class LexicalPolicy:
    """The shop before any model: word overlap of titles and brands plus a popularity prior."""

    name, noise = LOGGING_MODEL, 0.15

    def candidates(self, texts: list[str], catalog: Catalog) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        vocab: dict[str, int] = {}
        rows, cols = [], []
        for i, text in enumerate(catalog.frame["title"] + " " + catalog.frame["brand"]):
            for word in set(_words(text)):
                rows.append(i)
                cols.append(vocab.setdefault(word, len(vocab)))
        matrix = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                                   shape=(len(catalog.frame), len(vocab))).tocsc()
        inv_len = 1.0 / np.sqrt(np.maximum(np.asarray(matrix.sum(1)).ravel(), 1))
        prior = 0.15 * np.log1p(catalog.frame["review_count"].to_numpy())
        out = {}
        for text in texts:
            words = [vocab[w] for w in set(_words(text)) if w in vocab]
            overlap = np.asarray(matrix[:, words].sum(1)).ravel() if words else np.zeros(matrix.shape[0])
            score = overlap * inv_len + prior
            top = np.argpartition(-score, min(POOL, len(score) - 1))[:POOL]
            out[text] = (top, score[top])
        return out


class ServedModelPolicy:
    """The model that is serving (a shoploop.serving.predict.SearchEngine): what it would show is what
    shoppers see, so the logs are closed-loop. Items it does not know (newer than its bundle)
    cannot be shown until it is retrained: cold start is real."""

    noise = 0.02

    def __init__(self, engine, name: str):
        self.engine, self.name = engine, name

    def candidates(self, texts: list[str], catalog: Catalog) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        row_of = {item_id: r for r, item_id in enumerate(catalog.frame["item_id"])}
        out = {}
        for text in texts:
            rows, scores = self.engine.search_rows(text, POOL)
            known = [(row_of[self.engine.item_ids[r]], s) for r, s in zip(rows, scores) if self.engine.item_ids[r] in row_of]
            out[text] = (np.array([r for r, _ in known], dtype=np.int64), np.array([s for _, s in known], dtype=float))
        return out


def _words(text: str) -> list[str]:
    return text.lower().replace(",", " ").replace("(", " ").replace(")", " ").replace(" - ", " ").split()
