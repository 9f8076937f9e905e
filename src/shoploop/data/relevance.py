"""Relevance truth of the simulated shop: what a shopper's intent is, and how relevant each item is to it.

Grades follow Amazon's ESCI labels: 3 exact (type and every named attribute match), 2 substitute
(same type, something differs), 1 complement (a type bought alongside), 0 irrelevant.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from shoploop.data.catalog import BRANDS, TYPES, top_category

CATEGORIES = list(BRANDS)
TYPE_INDEX = {t.name: i for i, t in enumerate(TYPES)}
TYPE_CATEGORY = np.array([CATEGORIES.index(top_category(t.category_path)) for t in TYPES])
COMPLEMENTS = [np.array([TYPE_INDEX[c] for c in t.complements], dtype=int) for t in TYPES]


@dataclass(frozen=True)
class Intent:
    """What a shopper wants: a product type, optionally a colour, material, brand or price bound."""

    type_name: str
    colour: str | None = None
    material: str | None = None
    brand: str | None = None
    max_price: float | None = None


def query_id_for(text: str) -> str:
    return "q" + hashlib.md5(" ".join(text.lower().split()).encode()).hexdigest()[:12]


def grade(intent: Intent, item: dict) -> int:
    """ESCI grade of one item: 3 exact, 2 substitute, 1 complement, 0 irrelevant."""
    if item["type"] == intent.type_name:
        wanted = [(intent.colour, item["colour"]), (intent.material, item["material"]), (intent.brand, item["brand"])]
        exact = all(w is None or w == have for w, have in wanted)
        if intent.max_price is not None and item["price"] > intent.max_price:
            exact = False
        return 3 if exact else 2
    complements = TYPES[TYPE_INDEX[intent.type_name]].complements
    return 1 if item["type"] in complements else 0


class Catalog:
    """Items as arrays (one row per item), the truth the simulator grades and clicks against."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame
        self.type = frame["type_idx"].to_numpy()
        self.colour = frame["colour"].to_numpy()
        self.material = frame["material"].to_numpy()
        self.brand = frame["brand"].to_numpy()
        self.price = frame["price"].to_numpy()
        self.quality = frame["quality"].to_numpy()
        self.category = TYPE_CATEGORY[self.type]

    def grades(self, intent: Intent) -> np.ndarray:
        """Every item's grade for an intent (the vectorised form of ``grade``)."""
        same_type = self.type == TYPE_INDEX[intent.type_name]
        exact = same_type.copy()
        for wanted, have in ((intent.colour, self.colour), (intent.material, self.material), (intent.brand, self.brand)):
            if wanted is not None:
                exact &= have == wanted
        if intent.max_price is not None:
            exact &= self.price <= intent.max_price
        out = np.where(exact, 3, np.where(same_type, 2, 0))
        out[np.isin(self.type, COMPLEMENTS[TYPE_INDEX[intent.type_name]]) & ~same_type] = 1
        return out.astype(np.int8)
