"""Everything a trained version serves from, saved and loaded as one folder.

The folder goes into the BentoML model store as-is (see shoploop.models.registry): the fine-tuned
encoder, the ranker weights, the item embeddings with their ANN index and the BM25 index built
from the same item text, the catalog fields a response shows, the recommender (SASRec, the
item-to-item co-occurrence model, their re-ranker and the shoppers' histories) and the
popular-items fallback.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from shoploop.models.encoder import TextEncoder
from shoploop.models.ranker import SeedRanker
from shoploop.models.recommender import RERANK_FEATURES, Reranker
from shoploop.models.retrieval import DenseIndex, LexicalIndex
from shoploop.models.sequence import CoOccurrence, SASRec, SASRecConfig

CATALOG_COLUMNS = ["item_id", "title", "brand", "category_path", "price"]


@dataclass
class ModelBundle:
    ranker: SeedRanker | None        # None: a recommendation-only bundle (no search judgments to learn from)
    catalog: pd.DataFrame            # CATALOG_COLUMNS, row i <-> item_embeddings[i]
    item_embeddings: np.ndarray      # [n_items, dim], unit length
    lexical: LexicalIndex
    user_sequences: dict[str, list[int]]  # user_key -> item rows, in the order first engaged with
    popular: np.ndarray              # item rows, most popular first (cold-start fallback)
    dense: DenseIndex                # ANN over item_embeddings
    encoder_dir: Path | None = None  # the fine-tuned encoder (None: the base MiniLM)
    sasrec: SASRec | None = None     # None: too few histories to train one (recommend falls back to popular)
    reranker: Reranker | None = None  # None: SASRec's order stands
    cooccurrence: CoOccurrence | None = None  # item-to-item, fitted on the same training histories as SASRec

    query_encoder_dir: Path | None = None  # a compressed ONNX query encoder the gate promoted

    def text_encoder(self):
        """The query encoder that serves: the promoted compressed variant, else the fine-tuned encoder."""
        if self.query_encoder_dir is not None:
            from shoploop.models.compress import OnnxTextEncoder

            return OnnxTextEncoder(self.query_encoder_dir)
        return TextEncoder(self.encoder_dir)

    def with_catalog(self, catalog: pd.DataFrame, item_text: list[str], encoder) -> tuple["ModelBundle", dict]:
        """This version over the shop's current catalog (``catalog``: CATALOG_COLUMNS, ``item_text`` row
        for row), the learnt parts unchanged: items the version has not seen are added after its rows
        (their vectors from ``encoder``, the version's own fine-tuned item encoder; in the ANN graph, the
        BM25 index; in the recommender with no history of their own, as SASRec's text-only item vectors
        and the co-occurrence model's unseen items), and every known item's shown fields (title, brand,
        category, price) and BM25 text are the current ones. Rows keep their numbers, so the shoppers'
        histories and the popular list stay valid. An item gone from the catalog keeps its row with no
        text for BM25 (the marts keep delisted items, so this is rare). Returns the new bundle and what
        changed: new items, known items whose shown fields changed."""
        import copy

        current = catalog.drop_duplicates("item_id").set_index("item_id")
        text_of = dict(zip(catalog["item_id"], item_text))
        known = set(self.catalog["item_id"])
        new_ids = [i for i in current.index if i not in known]
        fields = [c for c in CATALOG_COLUMNS if c != "item_id"]
        kept = self.catalog.set_index("item_id")
        present = kept.index.intersection(current.index)
        before, now = kept.loc[present, fields], current.loc[present, fields]
        changed = int((~((before == now) | (before.isna() & now.isna()))).any(axis=1).sum())
        if not new_ids and not changed:
            return self, {"new_items": 0, "changed_items": 0, "items": len(known)}
        kept.loc[present, fields] = now
        merged = pd.concat([kept.reset_index(), current.loc[new_ids, fields].reset_index()], ignore_index=True)
        vectors = encoder.encode([text_of[i] for i in new_ids]) if new_ids else np.zeros((0, self.item_embeddings.shape[1]), np.float32)
        embeddings = np.vstack([self.item_embeddings, vectors.astype(np.float32)])
        lexical = LexicalIndex.build([text_of.get(i, "") for i in merged["item_id"]])
        lexical.shopper_words = set(self.lexical.shopper_words)
        sasrec = None
        if self.sasrec is not None:
            sasrec = SASRec(embeddings, self.sasrec.config)
            weights = {k: v for k, v in self.sasrec.state_dict().items() if k != "text"}
            grown = torch.zeros((len(embeddings) + 1, weights["correction.weight"].shape[1]))
            grown[:len(weights["correction.weight"])] = weights["correction.weight"]
            weights["correction.weight"] = grown  # a new item: its text alone, as SASRec's first phase learns it
            sasrec.load_state_dict(weights, strict=False)
            sasrec.eval()
        bundle = copy.copy(self)
        bundle.catalog, bundle.item_embeddings, bundle.lexical = merged[CATALOG_COLUMNS], embeddings, lexical
        bundle.dense = self.dense.extended(vectors) if new_ids else self.dense
        bundle.sasrec = sasrec
        bundle.cooccurrence = self.cooccurrence.extended(len(merged)) if self.cooccurrence is not None else None
        return bundle, {"new_items": len(new_ids), "changed_items": changed, "items": len(merged)}

    def save(self, path: Path) -> None:
        import shutil

        path.mkdir(parents=True, exist_ok=True)
        if self.encoder_dir is not None and self.encoder_dir.resolve() != (path / "encoder").resolve():
            shutil.copytree(self.encoder_dir, path / "encoder", dirs_exist_ok=True)
        if self.query_encoder_dir is not None and self.query_encoder_dir.resolve() != (path / "query_encoder").resolve():
            shutil.copytree(self.query_encoder_dir, path / "query_encoder", dirs_exist_ok=True)
        self.dense.save(path / "items.faiss")
        if self.ranker is not None:
            torch.save(self.ranker.state(), path / "ranker.pt")
        self.catalog.to_parquet(path / "catalog.parquet", index=False)
        np.save(path / "item_embeddings.npy", self.item_embeddings)
        self.lexical.save(path / "bm25")
        pd.DataFrame({"user_key": list(self.user_sequences), "rows": list(self.user_sequences.values())},
                     ).astype({"user_key": str}).to_parquet(path / "user_sequences.parquet", index=False)
        np.save(path / "popular.npy", self.popular)
        if self.sasrec is not None:
            # The text buffer is item_embeddings, saved above: not twice.
            weights = {k: v for k, v in self.sasrec.state_dict().items() if k != "text"}
            torch.save({"config": asdict(self.sasrec.config), "weights": weights}, path / "sasrec.pt")
        if self.reranker is not None:
            (path / "reranker.json").write_text(json.dumps(self.reranker.state()))
        if self.cooccurrence is not None:
            self.cooccurrence.save(path / "cooccurrence.npz")

    @classmethod
    def load(cls, path: Path) -> "ModelBundle":
        sequences = pd.read_parquet(path / "user_sequences.parquet")
        embeddings = np.load(path / "item_embeddings.npy")
        sasrec = None
        if (path / "sasrec.pt").exists():
            saved = torch.load(path / "sasrec.pt", weights_only=True)
            sasrec = SASRec(embeddings, SASRecConfig(**saved["config"]))
            sasrec.load_state_dict(saved["weights"], strict=False)  # "text" is item_embeddings
            sasrec.eval()
        reranker = json.loads((path / "reranker.json").read_text()) if (path / "reranker.json").exists() else None
        return cls(
            ranker=SeedRanker.from_state(torch.load(path / "ranker.pt", weights_only=True))
            if (path / "ranker.pt").exists() else None,
            catalog=pd.read_parquet(path / "catalog.parquet"),
            item_embeddings=embeddings,
            lexical=LexicalIndex.load(path / "bm25"),
            user_sequences={u: [int(r) for r in rows] for u, rows in zip(sequences["user_key"], sequences["rows"])},
            popular=np.load(path / "popular.npy"),
            dense=DenseIndex.load(path / "items.faiss"),
            encoder_dir=path / "encoder" if (path / "encoder").exists() else None,
            query_encoder_dir=path / "query_encoder" if (path / "query_encoder").exists() else None,
            sasrec=sasrec,
            # A version re-ranking other features (trained before them) serves SASRec's order instead.
            reranker=Reranker.from_state(reranker) if reranker and reranker["features"] == RERANK_FEATURES else None,
            cooccurrence=CoOccurrence.load(path / "cooccurrence.npz") if (path / "cooccurrence.npz").exists() else None,
        )
