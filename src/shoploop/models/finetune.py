"""Fine-tune the MiniLM encoder on the shop's query -> item signal.

Pairs come from what the shop's data holds (shoploop.models.labels): graded judgments (a query's best
items) and the search logs (purchased, carted, clicked items); each pair carries a hard negative:
an item shoppers examined and skipped, one judged irrelevant or only a complement, or one the
zero-shot hybrid retriever ranks high that the labels call irrelevant. The loss is sentence-transformers'
MultipleNegativesRankingLoss (InfoNCE over in-batch and hard negatives, the standard recipe for
dense retrievers). The library's Trainer needs `datasets` and `accelerate`; a plain loop over
the library's loss needs neither, and is what DistributedDataParallel wraps under torchrun.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from shoploop.models.encoder import default_model_path
from shoploop.models.retrieval import hybrid_candidates
from shoploop.serving.predict import scaled_bm25

POSITIVES_PER_QUERY = 4   # exact items sampled per training query
CLICKS_PER_QUERY = 2      # clicked items added per training query
MINED_FROM = 50           # hard negatives come from the zero-shot retriever's top 50


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 1
    batch_size: int = 32
    lr: float = 3e-5
    warmup_share: float = 0.1
    max_tokens: int = 96     # the informative head of item text; shorter than serving's to train faster
    # Steps per epoch at most (a random sample of the triplets past it): bounds fine-tuning time on 2
    # cores whatever the catalog. Home Depot's ~9,400 training queries give ~25,000 triplets (~780
    # steps); 20 steps took 194 s there with the other core busy.
    max_steps: int = 120
    seed: int = 7


def training_triplets(queries: pd.DataFrame, grades_of: dict[str, dict[int, int]], skips_of: dict[str, list[int]],
                      item_text: list[str], lexical, embeddings: np.ndarray, query_embeddings: np.ndarray,
                      seed: int, min_grade: int = 2, unlabelled_negatives: bool = True,
                      clicked_of: dict[str, list[int]] | None = None, top_only: bool = True) -> list[tuple[str, str, str]]:
    """(query, positive item text, hard negative item text) for every training query.

    queries: query_id, query_text (row i <-> query_embeddings[i]); grades_of: query_id -> {item row:
    grade} (human judgments, or implicit grades from the logs); skips_of: query_id -> rows shoppers
    examined and passed over. Positives are a query's best-graded items (at least ``min_grade``), or
    with ``top_only`` False every item graded ``min_grade`` or more (implicit grades: a cart is as sure
    a positive as a purchase); negatives are its skips first, then the zero-shot retriever's top
    mistakes (any low-graded item when labels are complete; only labelled ones otherwise,
    ``unlabelled_negatives`` False, since an unjudged item the retriever ranks high is often relevant),
    then its other low-graded items. A query with no known negative takes random catalog items (a
    random item is hardly ever relevant: about one in 40 on average in the simulated shop).
    ``clicked_of``: clicked rows that add positives where the judgments grade them 2 or more
    (judgments and logs together).
    """
    rng = np.random.default_rng(seed)
    clicked_of = clicked_of or {}
    triplets = []
    for (query_id, text), qv in zip(queries[["query_id", "query_text"]].itertuples(index=False), query_embeddings):
        grades = grades_of.get(query_id, {})
        top = max(grades.values(), default=0)
        best = [r for r, g in grades.items() if (g == top or not top_only) and g >= min_grade]
        positives = list(rng.permutation(best)[:POSITIVES_PER_QUERY])
        # A click on an item judged irrelevant is noise, not a label.
        positives += [r for r in rng.permutation(clicked_of.get(query_id, []))[:CLICKS_PER_QUERY]
                      if grades.get(r, 0) >= 2 and r not in positives]
        mined = hybrid_candidates(scaled_bm25(lexical.scores(text)), embeddings @ qv, MINED_FROM)
        skipped = [r for r in skips_of.get(query_id, []) if r not in positives and grades.get(r, 0) < min_grade]
        low = [r for r in mined if (r in grades or unlabelled_negatives) and grades.get(r, 0) < min_grade]
        # Judged-low items the retriever did not rank high come last: a simulator's are random easy ones.
        judged_low = [r for r, g in grades.items() if g < min_grade]
        negatives = [r for r in dict.fromkeys(skipped + low + judged_low) if r not in positives]
        if not negatives:
            negatives = [r for r in rng.choice(len(item_text), min(5, len(item_text)), replace=False) if r not in grades]
        if not positives or not negatives:
            continue
        for k, pos in enumerate(positives):
            # The hardest negatives first: what shoppers skipped, then the retriever's own top mistakes.
            triplets.append((text, item_text[int(pos)], item_text[int(negatives[k % min(len(negatives), 5)])]))
    return triplets


def finetune(triplets: list[tuple[str, str, str]], out_dir: Path, config: FinetuneConfig = FinetuneConfig(),
             base: Path | None = None, distributed: bool = False) -> dict:
    """Fine-tune the encoder on the triplets and save it (sentence-transformers layout) in out_dir.

    Under torchrun (``distributed``), each process trains on its shard and DDP averages gradients;
    only rank 0 saves. Returns the loss per epoch and the seconds taken.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import (
        MultipleNegativesRankingLoss,
    )

    started = time.perf_counter()
    torch.manual_seed(config.seed)
    from shoploop.pipeline.progress import quiet

    with quiet(transformers_bars=True):
        model = SentenceTransformer(str(base or default_model_path()), device="cpu")
    model.max_seq_length = config.max_tokens
    for name, parameter in model.named_parameters():
        if ".pooler." in name:  # BERT's [CLS] pooler: mean pooling never uses it (and DDP would wait for its gradient)
            parameter.requires_grad_(False)
    loss_fn = MultipleNegativesRankingLoss(model)
    rank, world = 0, 1
    trainable: torch.nn.Module = loss_fn
    if distributed:
        import torch.distributed as dist

        rank, world = dist.get_rank(), dist.get_world_size()
        trainable = torch.nn.parallel.DistributedDataParallel(loss_fn)
    order = np.random.default_rng(config.seed).permutation(len(triplets))
    shard = [triplets[i] for i in order[rank::world]]
    # Every rank takes the same number of steps, or DDP's gradient all-reduce would wait forever.
    steps_per_epoch = min(len(order) // world // config.batch_size or 1, config.max_steps)
    total = steps_per_epoch * config.epochs
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    warmup = max(1, int(total * config.warmup_share))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min(1.0, (step + 1) / warmup) * max(0.0, (total - step) / max(1, total - warmup)))
    from shoploop.pipeline.progress import bar

    model.train()
    losses = []
    shown = bar(total=total, desc="fine-tuning the encoder", unit="step")
    for epoch in range(config.epochs):
        rng = np.random.default_rng(config.seed + epoch)
        batch_order = rng.permutation(len(shard))
        running = 0.0
        for step in range(steps_per_epoch):
            batch = [shard[i] for i in batch_order[step * config.batch_size:(step + 1) * config.batch_size]]
            features = [model.preprocess(list(column)) for column in zip(*batch)]
            loss = trainable(features, None)
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            schedule.step()
            running += loss.item()
            shown.update(1)
            shown.set_postfix(epoch=f"{epoch + 1}/{config.epochs}", loss=f"{loss.item():.3f}", refresh=False)
        losses.append(running / steps_per_epoch)
    shown.close()
    model.eval()
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        with quiet(transformers_bars=True):  # transformers' "Writing model shards" bar, even off a terminal
            model.save(str(out_dir))
    return {"triplets": len(triplets), "steps": total, "world_size": world,
            "loss_per_epoch": [round(x, 4) for x in losses], "seconds": round(time.perf_counter() - started, 1),
            "max_tokens": config.max_tokens}
