"""Everything a trained version serves from, saved and loaded as one folder.

The folder goes into the BentoML model store as-is (see shoploop.registry): the fine-tuned
encoder, the ranker weights, the item embeddings with their ANN index and the BM25 index built
from the same item text, the catalog fields a response shows, the shoppers' profile embeddings
and the popular-items fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from shoploop.models.ranker import SeedRanker
from shoploop.models.encoder import TextEncoder
from shoploop.models.retrieval import DenseIndex, LexicalIndex

CATALOG_COLUMNS = ["item_id", "title", "brand", "category_path", "price"]


@dataclass
class ModelBundle:
    ranker: SeedRanker
    catalog: pd.DataFrame            # CATALOG_COLUMNS, row i <-> item_embeddings[i]
    item_embeddings: np.ndarray      # [n_items, dim], unit length
    lexical: LexicalIndex
    user_profiles: dict[str, np.ndarray]  # user_key -> unit-length taste vector
    popular: np.ndarray              # item rows, most popular first (cold-start fallback)
    dense: DenseIndex                # ANN over item_embeddings
    encoder_dir: Path | None = None  # the fine-tuned encoder (None: the base MiniLM)

    query_encoder_dir: Path | None = None  # a compressed ONNX query encoder the gate promoted

    def text_encoder(self):
        """The query encoder that serves: the promoted compressed variant, else the fine-tuned encoder."""
        if self.query_encoder_dir is not None:
            from shoploop.models.compress import OnnxTextEncoder

            return OnnxTextEncoder(self.query_encoder_dir)
        return TextEncoder(self.encoder_dir)

    def save(self, path: Path) -> None:
        import shutil

        path.mkdir(parents=True, exist_ok=True)
        if self.encoder_dir is not None and self.encoder_dir.resolve() != (path / "encoder").resolve():
            shutil.copytree(self.encoder_dir, path / "encoder", dirs_exist_ok=True)
        if self.query_encoder_dir is not None and self.query_encoder_dir.resolve() != (path / "query_encoder").resolve():
            shutil.copytree(self.query_encoder_dir, path / "query_encoder", dirs_exist_ok=True)
        self.dense.save(path / "items.faiss")
        torch.save(self.ranker.state(), path / "ranker.pt")
        self.catalog.to_parquet(path / "catalog.parquet", index=False)
        np.save(path / "item_embeddings.npy", self.item_embeddings)
        self.lexical.save(path / "bm25")
        keys = list(self.user_profiles)
        pd.DataFrame({"user_key": keys}).to_parquet(path / "user_keys.parquet", index=False)
        np.save(path / "user_profiles.npy", np.stack([self.user_profiles[k] for k in keys])
                if keys else np.zeros((0, self.item_embeddings.shape[1]), np.float32))
        np.save(path / "popular.npy", self.popular)

    @classmethod
    def load(cls, path: Path) -> "ModelBundle":
        keys = pd.read_parquet(path / "user_keys.parquet")["user_key"].tolist()
        profiles = np.load(path / "user_profiles.npy")
        return cls(
            ranker=SeedRanker.from_state(torch.load(path / "ranker.pt", weights_only=False)),
            catalog=pd.read_parquet(path / "catalog.parquet"),
            item_embeddings=np.load(path / "item_embeddings.npy"),
            lexical=LexicalIndex.load(path / "bm25"),
            user_profiles=dict(zip(keys, profiles)),
            popular=np.load(path / "popular.npy"),
            dense=DenseIndex.load(path / "items.faiss"),
            encoder_dir=path / "encoder" if (path / "encoder").exists() else None,
            query_encoder_dir=path / "query_encoder" if (path / "query_encoder").exists() else None,
        )
