"""The model card: what a version is, what it was trained on, and how well it does, in markdown."""

from __future__ import annotations

from pathlib import Path


def _table(rows: list[list], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write(path: Path, tag: str, promoted: bool, reason: str, metrics: dict, train: dict, lineage: dict,
          compression: dict | None) -> Path:
    k = metrics["metric"].split("@")[1] if "@" in metrics["metric"] else "10"
    systems = [["model (fine-tuned hybrid + ranker)", metrics.get("model")], ["fine-tuned MiniLM, dense ANN", metrics.get("dense_finetuned")],
               ["zero-shot MiniLM, dense", metrics.get("dense_zero_shot")], ["BM25", metrics.get("bm25")],
               ["BM25 after spelling correction", metrics.get("bm25_spelling_corrected")], ["random", metrics.get("random")]]
    used = train.get("labels", {})
    # the label weights and ranker inputs chosen on validation queries, with what each candidate measured there
    chosen = ("_weight", "validation_ndcg@10", "validation_click_ndcg@10", "validation_spearman", "validation_queries", "ranker_text",
              "ranker_fixed", "_standard_error")
    weights = {key: value for key, value in used.items() if key.endswith(chosen)}
    sections = [
        f"# Model card: {tag}",
        f"**Promotion:** {'champion' if promoted else 'not promoted'} ({reason}).",
        "## What it is\nSearch ranking for the shop: hybrid retrieval (BM25 via bm25s + dense ANN via faiss HNSW over "
        "MiniLM-L6 embeddings fine-tuned on the shop's queries, fused by reciprocal rank), then the seed ranker "
        "σ(θᵀ[H_q ⊕ H_item ⊕ H_q⊙H_item ⊕ H_features]) over Feast features (price, rating, reviews, popularity, "
        "smoothed CTR and conversion, age, trailing-24-hour impressions, clicks and purchases pushed from the "
        "live event stream) and match signals (BM25, cosine); misspelled words are corrected against the "
        "catalog's words first. Recommendations: SASRec (item vectors from the same text embeddings) proposes "
        "100 next items from the shopper's history; a logistic re-ranker orders them by SASRec's score, the seed "
        "ranker's score with the shopper's taste vector as the query, and the shopper's price level.",
        "## Data\n" + _table([[key, value] for key, value in lineage.items()], ["field", "value"]),
        f"## Labels: {used.get('mode', 'judgments')}\n" + (
            f"Judgments: {used.get('judgments')} ({used.get('judged_items_per_query')} judged items per query; "
            f"{used.get('reason')}). Label weights chosen on validation queries: {weights or 'none needed'}."
            if used else "Graded judgments with click logs."),
        "## Training\n" + _table([
            ["training queries", train["train_queries"]], ["ranker rows (judgments + click logs)", train["train_rows"]],
            ["click-log rows (beside judgments one per logged query-item pair, target its clicks per examination; alone one per impression)", train.get("click_log_rows")],
            ["position propensities p1..p10 (from the logs)", train.get("propensities")],
            ["encoder fine-tuning", {key: train["encoder"]["finetune"][key] for key in ("started_from", "triplets", "steps", "seconds", "positives")
                                     if key in train["encoder"]["finetune"]}],
            ["training seconds (2 CPU cores)", train["seconds"]]], ["", ""]),
        (f"## Quality on {metrics['n_queries']} held-out queries ({metrics.get('labels', 'judgments')})\n"
         + _table(systems, ["system", metrics["metric"]]) if metrics["n_queries"] else
         f"## Search quality\nNot measured: {metrics.get('note', 'no held-out labels')}."),
        _table([[key, value] for key, value in metrics.items()
                if key.startswith(("mrr", "recall", "coverage", "long_tail", "novelty"))], ["metric", "value"]),
    ]
    pool = metrics.get("pool", metrics) if metrics["n_queries"] else {}
    if "spearman" in pool:
        sections.append(f"### Each held-out query's judged pool ({pool['n_queries']} queries)\n" + _table(
            [[name, pool[name], pool["spearman"][name]] for name in ("model", "dense_finetuned", "dense_zero_shot", "bm25", "random")],
            ["system", "pool nDCG@10", "mean per-query Spearman"]))
    if metrics.get("by_query_type"):
        sections.append(f"### nDCG@{k} by query type\n" + _table(
            [[t, v["n_queries"], v.get("model"), v.get("bm25"), v.get("bm25_spelling_corrected"), v.get("dense_zero_shot")]
             for t, v in metrics["by_query_type"].items()],
            ["query type", "queries", "model", "BM25", "BM25, spelling corrected", "zero-shot MiniLM"]))
    ips = metrics.get("counterfactual", {})
    if "model" in ips:
        rows = [[name, ips[name]["clicks_per_search"], ips[name]["ci95"], ips[name]["logged_slot_share"]]
                for name in ("model", "champion") if name in ips]
        sections.append(f"### Counterfactual clicks per search on {ips['model']['queries']} held-out logged queries\n"
                        + _table(rows + [["the logging ranker's own slates", ips["logged"]["clicks_per_search"],
                                          ips["logged"]["ci95"], ips["logged"]["logged_slot_share"]]],
                                 ["ranking", "clicks per search (IPS)", "95% interval", "slots with logged evidence"])
                        + "\n\nFrom the logged impressions under the position-based click model "
                          "(shoploop.monitoring.counterfactual): a slot with no logged evidence counts no click.")
    rec = metrics.get("recommend", {})
    if "served" in rec:
        systems = [name for name in ("served", "sasrec", "cooccurrence", "taste_vector", "popularity") if name in rec]
        sections.append(f"## Recommendation on {rec['rows']} shoppers' held-out last items\n" + _table(
            [[name, rec[name]["recall@10"], rec[name]["ndcg@10"], rec.get("recall@10_tail_targets", {}).get(name, "")]
             for name in systems], ["system", "recall@10", "ndcg@10", "recall@10, long-tail targets"])
            + f"\n\nLong-tail share of what is shown: {rec['long_tail_share@10']}; catalog coverage: {rec['coverage@10']}.")
    if compression:
        sections.append("## Query encoder compression\n" + _table(
            [[r["variant"], r["size_mb"], r["latency_ms"], r["ndcg@10"], r["shrink"], r["speedup"], f"{r['quality_loss']:.2%}"]
             for r in compression["rows"]], ["variant", "MB", "ms/query", "nDCG@10", "smaller", "faster", "quality loss"])
            + f"\n\nServing: **{compression['promoted'] or 'teacher-fp32-torch'}** — {compression['reason']}."
            + (f" The student was distilled from {compression['distil_started_from']} for "
               f"{len(compression.get('distil_loss_per_epoch', []))} epochs." if compression.get("distil_started_from") else ""))
    sections.append("## Limits\nTrained and judged on the shop's own simulated or landed judgments; held-out queries "
                    "are split by a hash of the query id. Items newer than the version's catalog are not retrieved "
                    "until the next training run.")
    path.write_text("\n\n".join(sections) + "\n")
    return path
