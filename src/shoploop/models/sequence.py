"""Next-item recommendation: a self-attentive sequential recommender (SASRec, Kang & McAuley 2018)
whose item vectors start from the encoder's text embeddings, and the two baselines it must beat.

An item's input vector is a learned projection of its (frozen) MiniLM text embedding plus a
learned per-item correction that starts at zero: an item seen once, or never, in training still
has a meaningful vector from its text, so long-tail and new items can be recommended. Scores are
dot products with the same vectors (tied input/output embeddings), trained with full softmax
cross-entropy at every position of every history. Training has two phases, each stopped early on
a validation slice of the training file: item vectors from text alone (so every item, seen or not,
gets a vector that generalises), then the per-item corrections under strong weight decay (so
frequent items learn what their text does not say).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import sparse
from torch import nn

from shoploop.models import one_thread


@dataclass(frozen=True)
class SASRecConfig:
    max_len: int = 10
    hidden: int = 64
    layers: int = 2
    heads: int = 2
    dropout: float = 0.5
    text_epochs: int = 60     # phase 1: item vectors from text only (every item generalises)
    id_epochs: int = 10       # phase 2: per-item corrections learn what text misses
    id_weight_decay: float = 0.1
    check_every: int = 5      # phase-1 epochs between validation checks (phase 2 checks every epoch)
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 7


class SASRec(nn.Module):
    def __init__(self, text_embeddings: np.ndarray, config: SASRecConfig = SASRecConfig()):
        super().__init__()
        self.config = config
        n_items = len(text_embeddings)
        # Row 0 is padding; item i is row i + 1.
        text = np.vstack([np.zeros((1, text_embeddings.shape[1]), np.float32), text_embeddings]).astype(np.float32)
        self.register_buffer("text", torch.from_numpy(text))
        self.project = nn.Linear(text.shape[1], config.hidden)
        self.correction = nn.Embedding(n_items + 1, config.hidden, padding_idx=0)
        nn.init.zeros_(self.correction.weight)
        self.position = nn.Embedding(config.max_len, config.hidden)
        layer = nn.TransformerEncoderLayer(config.hidden, config.heads, 4 * config.hidden, config.dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.hidden)
        self.dropout = nn.Dropout(config.dropout)

    def item_vectors(self) -> torch.Tensor:
        return self.project(self.text) + self.correction.weight

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        """[batch, max_len] of item rows (0 = padding, left-padded) -> [batch, max_len, n_items + 1] logits."""
        items = self.item_vectors()
        x = items[sequences] * self.config.hidden ** 0.5 + self.position.weight[None, : sequences.shape[1]]
        # As in SASRec, padded positions are zeroed rather than masked (a fully masked row is NaN).
        x = self.dropout(x) * (sequences > 0).unsqueeze(-1)
        causal = torch.triu(torch.ones(sequences.shape[1], sequences.shape[1], dtype=torch.bool), 1)
        h = self.norm(self.encoder(x, mask=causal))
        logits = h @ items.T
        logits[..., 0] = float("-inf")  # never recommend padding
        return logits

    def _tensors(self, histories: list[list[int]], targets: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each history + its next item is one sequence; every position learns to predict the next."""
        max_len = self.config.max_len
        full = [(h + [t])[-(max_len + 1):] for h, t in zip(histories, targets)]
        inputs = torch.zeros(len(full), max_len, dtype=torch.long)
        labels = torch.zeros(len(full), max_len, dtype=torch.long)
        for r, seq in enumerate(full):
            seq = [i + 1 for i in seq]
            inputs[r, max_len - len(seq) + 1:] = torch.tensor(seq[:-1])
            labels[r, max_len - len(seq) + 1:] = torch.tensor(seq[1:])
        return inputs, labels

    def _epochs(self, inputs, labels, n: int, weight_decay: float, generator) -> list[float]:
        cfg = self.config
        optimiser = torch.optim.AdamW([p for p in self.parameters() if p.requires_grad], lr=cfg.lr,
                                      weight_decay=weight_decay)
        losses = []
        self.train()
        for _ in range(n):
            total, count = 0.0, 0
            for idx in torch.randperm(len(inputs), generator=generator).split(cfg.batch_size):
                logits = self(inputs[idx])
                mask = labels[idx] > 0
                loss = nn.functional.cross_entropy(logits[mask], labels[idx][mask])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total, count = total + loss.item() * int(mask.sum()), count + int(mask.sum())
            losses.append(round(total / count, 4))
        self.eval()
        return losses

    @one_thread()
    def fit(self, histories: list[list[int]], targets: list[int], validation: tuple[list[list[int]], list[int]]) -> dict:
        """Two phases, each stopped early on NDCG@10 of the validation rows (never the test set):
        text-only item vectors first, then per-item corrections under strong weight decay."""
        import copy

        cfg = self.config
        torch.manual_seed(cfg.seed)
        generator = torch.Generator().manual_seed(cfg.seed)
        inputs, labels = self._tensors(histories, targets)

        def score() -> float:
            return ranking_metrics(self.scores(validation[0]), validation[1])["ndcg@10"]

        history: dict[str, list] = {"text": [], "id": []}
        best, best_state = -1.0, None
        for phase, epochs, step, decay in (("text", cfg.text_epochs, cfg.check_every, cfg.weight_decay),
                                           ("id", cfg.id_epochs, 1, cfg.id_weight_decay)):
            self.correction.weight.requires_grad_(phase == "id")
            for _ in range(0, epochs, step):
                loss = self._epochs(inputs, labels, step, decay, generator)[-1]
                ndcg = score()
                history[phase].append({"loss": loss, "val_ndcg@10": ndcg})
                if ndcg > best:
                    best, best_state = ndcg, copy.deepcopy(self.state_dict())
            self.load_state_dict(best_state)  # phase 2 starts from phase 1's best
        return {"val_ndcg@10": best, "history": history}

    @torch.inference_mode()
    def scores(self, histories: list[list[int]]) -> np.ndarray:
        """[n, n_items] scores of every item as the next one after each history."""
        cfg = self.config
        inputs = torch.zeros(len(histories), cfg.max_len, dtype=torch.long)
        for r, h in enumerate(histories):
            h = [i + 1 for i in h[-cfg.max_len:]]
            if h:
                inputs[r, cfg.max_len - len(h):] = torch.tensor(h)
        out = []
        for batch in inputs.split(512):
            out.append(self(batch)[:, -1, 1:].numpy())
        return np.concatenate(out)


def popularity_scores(histories: list[list[int]], targets: list[int], n_items: int) -> np.ndarray:
    counts = np.zeros(n_items)
    for h, t in zip(histories, targets):
        for i in h + [t]:
            counts[i] += 1
    return counts


class CoOccurrence:
    """Item-to-item: how often an item followed each history item within a window of training
    sequences; a history's score for a candidate sums over its items, recent ones weighing more.

    Held as a sparse [n_items, n_items] matrix (row: an item, columns: the weighted counts of the
    items seen near it) so it saves with the bundle and scores a request with one sparse product.
    Its constants are the original baseline's, kept so the bench compares against the same one."""

    WINDOW = 3      # an item this many steps later still counts, at 1 / distance
    BACKWARD = 0.5  # an item that came before counts half as much as one that came after
    RECENCY = 0.8   # each step further back in the history weighs 0.8 as much

    def __init__(self, pairs: sparse.csr_matrix, popularity: np.ndarray):
        self.pairs, self.popularity = pairs.tocsr(), np.asarray(popularity, dtype=np.float64)
        self.n_items = self.pairs.shape[0]

    @classmethod
    def fit(cls, histories: list[list[int]], targets: list[int], n_items: int) -> "CoOccurrence":
        rows, cols, weights = [], [], []
        for h, t in zip(histories, targets):
            seq = h + [t]
            for a in range(len(seq)):
                for b in range(a + 1, min(len(seq), a + 1 + cls.WINDOW)):
                    if seq[a] != seq[b]:
                        rows += [seq[a], seq[b]]
                        cols += [seq[b], seq[a]]
                        weights += [1.0 / (b - a), cls.BACKWARD / (b - a)]
        # Duplicate (row, col) entries are summed into one count.
        pairs = sparse.coo_matrix((weights, (rows, cols)), shape=(n_items, n_items), dtype=np.float64)
        return cls(pairs.tocsr(), popularity_scores(histories, targets, n_items))

    def extended(self, n_items: int) -> "CoOccurrence":
        """The same counts over a catalog grown to ``n_items`` (the new items: never seen with any)."""
        grow = n_items - self.n_items
        pairs = sparse.csr_matrix((self.pairs.data, self.pairs.indices,
                                   np.concatenate([self.pairs.indptr, np.full(grow, self.pairs.indptr[-1])])),
                                  shape=(n_items, n_items))
        return CoOccurrence(pairs, np.concatenate([self.popularity, np.zeros(grow)]))

    def counts(self, histories: list[list[int]]) -> np.ndarray:
        """[n, n_items] recency-weighted co-occurrence with each history (0: never seen together)."""
        rows = [r for r, h in enumerate(histories) for _ in h]
        items = [i for h in histories for i in reversed(h)]
        ages = [age for h in histories for age in range(len(h))]
        recency = sparse.csr_matrix((self.RECENCY ** np.array(ages, dtype=np.float64), (rows, items)),
                                    shape=(len(histories), self.n_items))
        return np.asarray((recency @ self.pairs).todense())

    def scores(self, histories: list[list[int]]) -> np.ndarray:
        """counts, with ties (items never seen with the history) broken by popularity."""
        return self.counts(histories) + 1e-6 * self.popularity / max(self.popularity.max(), 1)

    def save(self, path: Path) -> None:
        p = self.pairs
        np.savez(path, data=p.data, indices=p.indices, indptr=p.indptr, shape=p.shape, popularity=self.popularity)

    @classmethod
    def load(cls, path: Path) -> "CoOccurrence":
        z = np.load(path)
        return cls(sparse.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"])), z["popularity"])


def ranking_metrics(scores: np.ndarray, targets: list[int], k: int = 10) -> dict:
    """Recall@k and NDCG@k with one relevant item per row (ties broken against the target)."""
    target_scores = scores[np.arange(len(targets)), targets]
    rank = (scores > target_scores[:, None]).sum(1) + (scores == target_scores[:, None]).sum(1) - 1
    hit = rank < k
    return {"rows": len(targets), f"recall@{k}": round(float(hit.mean()), 4),
            f"ndcg@{k}": round(float(np.where(hit, 1 / np.log2(rank + 2), 0).mean()), 4),
            "mrr": round(float((1 / (rank + 1)).mean()), 4)}


def top_k_coverage(scores: np.ndarray, k: int = 10) -> float:
    """Share of the catalog that appears in at least one top-k list."""
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    return round(len(np.unique(top)) / scores.shape[1], 4)
