"""Write the README's results table from the latest saved benchmark results (bench/results/*.json).

The table sits between ``<!-- results:begin -->`` and ``<!-- results:end -->`` in README.md; this
script rewrites only that part, so the README never quotes a number no benchmark saved. A result
file that is missing leaves its row out and says which benchmark makes it. ``make bench`` runs it last.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def rows() -> tuple[list[tuple[str, str, str]], list[str]]:
    """(area, what was measured, result) rows, and the benchmarks whose results are missing."""
    out, missing = [], []
    search = _load("search_quality")
    if search:
        m = search["metrics"]
        out.append(("Search quality", f"simulated shop, {m['n_queries']} held-out queries, nDCG@10 (full catalog)",
                    f"model **{m['model']:.3f}**, BM25 {m['bm25']:.3f}, zero-shot MiniLM {m['dense_zero_shot']:.3f}, "
                    f"random {m['random']:.3f}"))
    else:
        missing.append("bench/search_quality.py")
    relevance = _load("relevance_quality")
    if relevance:
        runs = relevance["runs"].values()
        rmse = " / ".join(f"{r['metrics']['model']['rmse']:.3f}" for r in runs)
        spearman = " / ".join(f"{r['metrics']['model']['spearman']:.3f}" for r in runs)
        first = next(iter(relevance["runs"].values()))
        bm25 = first["metrics"].get("bm25", {})
        out.append(("Search on real queries", f"Home Depot, {first['heldout_queries']} held-out queries, human grades "
                    f"({len(relevance['runs'])} seeds)",
                    f"RMSE **{rmse}** (BM25 {bm25.get('rmse', float('nan')):.3f}); per-query Spearman {spearman} "
                    f"(BM25 {bm25.get('spearman', float('nan')):.3f})"))
    else:
        missing.append("bench/relevance_quality.py")
    labels = _load("label_sources")
    if labels and {"logs", "both"} <= set(labels["results"]):
        logs, both = labels["results"]["logs"]["metrics"], labels["results"]["both"]["metrics"]
        share = (logs["model"] - logs["bm25"]) / max(both["model"] - both["bm25"], 1e-9)
        out.append(("Learning from logs alone", "simulated shop, judgments withheld from training, nDCG@10",
                    f"logs only **{logs['model']:.3f}**, judgments + logs {both['model']:.3f}, BM25 {logs['bm25']:.3f} "
                    f"({share:.0%} of the judged model's gain)"
                    + (f"; after one turn of the loop (half the logs from a logs-only model's slates) "
                       f"{labels['results']['logs-loop']['metrics']['model']:.3f}" if "logs-loop" in labels["results"] else "")))
    else:
        missing.append("bench/label_sources.py")
    value = _load("shopper_value")
    if value:
        ref = value["models"][0]
        cells = ", ".join(f"{m['model']} {m['clicks']:.3f} ({m['clicks_vs_ref']['mean'] / ref['clicks']:+.1%})"
                          for m in value["models"][1:])
        out.append(("What shoppers would click", f"the simulator's click model on {value['sessions']:,} "
                    f"{'drifted ' if value['drifted'] else ''}sessions, expected clicks per search, the same sessions for each model"
                    + (f" ({value['note']})" if value.get("note") else ""),
                    f"{ref['model']} {ref['clicks']:.3f}; {cells}"))
    compression = _load("compression")
    if compression:
        by = {r["variant"]: r for r in compression["rows"]}
        served, teacher = by.get(compression["promoted"]), by.get("teacher-fp32-torch")
        if served and teacher:
            out.append(("Compression", "query encoder, one query, 2 threads",
                        f"{served['variant']}: {served['size_mb']:.0f} MB (from {teacher['size_mb']:.0f}), "
                        f"**{served['latency_ms']:.2f} ms** (from {teacher['latency_ms']:.2f}), nDCG@10 loss "
                        f"{served['quality_loss']:.2%}"))
    else:
        missing.append("the compression step (bench/search_quality.py)")
    serving = _load("serving")
    if serving:
        held = serving["in_process"]["search"].get("held + counters")
        old = serving["in_process"]["search"].get("feast get_online_features")
        lookup = serving["in_process"]["lookup"]
        if held and old:
            encoder = serving["in_process"].get("query_encoder", "query encoder not recorded")
            speed = (f"; a fixed pure-Python loop took {serving['calibration_s']} s: compare runs by it"
                     if "calibration_s" in serving else "")
            out.append(("Serving latency", f"/search in process, 100 candidates re-ranked, {serving['in_process']['items']:,} "
                        f"items ({encoder}{speed})",
                        f"p50 **{held['p50_ms']} ms**, p99 {held['p99_ms']} ms (features read per request through "
                        f"Feast: p50 {old['p50_ms']} ms); feature read p50 {lookup['held + counters']['p50_ms']} ms "
                        f"(from {lookup['feast get_online_features']['p50_ms']})"))
        for setup, measured in sorted(serving.get("http_by_setup", {}).items()):
            http, feedback, lag = measured["http"], measured.get("feedback", {}), measured.get("counter_lag")
            if "1 client" in http:
                four, many = http.get("4 clients", {}), http.get("16 clients", {})
                wrk = measured.get("wrk", {}).get("1 connection")
                speed = f"; calibration {measured['calibration_s']} s" if "calibration_s" in measured else ""
                out.append((f"Serving over HTTP, {setup}", f"/search on loopback, Python client{' and wrk' if wrk else ''}{speed}",
                            f"1 client p50 {http['1 client']['p50_ms']} ms"
                            + (f" (wrk, 1 connection: p50 **{wrk['p50_ms']} ms**, p99 {wrk['p99_ms']} ms)" if wrk else "")
                            + f"; 4 clients {four.get('requests_per_s')} req/s "
                            f"(p99 {four.get('p99_ms')} ms); 16 clients {many.get('requests_per_s')} req/s"))
            if feedback:
                durable = ("each event fsynced before its acknowledgement" if "embedded" in setup
                           else "each batch in Redis before its acknowledgement")
                out.append((f"Feedback intake, {setup}", f"/feedback, 8 clients, {durable}",
                            "; ".join(f"{name}: **{row['events_per_s']:,} events/s**" for name, row in feedback.items())
                            + (f"; acknowledgement to counter visible p99 {lag['p99_ms']} ms" if lag else "")))
    else:
        missing.append("bench/serving.py (after `make demo`)")
    interleaved = _load("interleaving")
    if interleaved:
        out.append(("Online evaluation", "team-draft interleaving, every search interleaved, simulated shoppers",
                    "; ".join(f"{row['case']}: verdict **{row['winner']}** (expected {row['expected']}) after "
                              f"{row['decided_after_sessions']} sessions, confidence {row['confidence']:.1%}"
                              for row in interleaved["directions"])))
    else:
        missing.append("bench/interleaving.py (after `make demo`)")
    drift = _load("drift_detection")
    if drift:
        shop = drift["shop"]
        seen = ", ".join(f"{r['scenario']} {r['detected_in_runs'] or 'never'}" for r in drift["scenarios"])
        out.append(("Drift detection", f"`shoploop monitor` once a day on simulated shops ({shop['items']:,} items, "
                    f"{shop['sessions_per_day']} search sessions a day), each scenario on a shop of its own",
                    f"**{drift['detected_within_2']} of {drift['scenario_count']}** scenarios decided `retrain` within 2 runs "
                    f"(runs to detection: {seen}); **{drift['no_drift']['false_alarms']}** false alarms in "
                    f"{len(drift['no_drift']['runs'])} runs without drift"))
    else:
        missing.append("bench/drift_detection.py")
    def change(a: float, b: float) -> str:
        return f"{(a - b) / b:+.1%}"

    for name, command in (("loop", "`make loop`"), ("loop_default", "`shoploop loop --scale default`")):
        closed = _load(name)
        if not closed:
            if name == "loop":
                missing.append("bench/loop.py")
            continue
        ctr, served, challenged = closed["ctr"], closed["drift_to_serving_s"], closed.get("drift_to_challenger_s")
        stages = ", ".join(f"{s['stage']} {s['seconds']:.0f} s" for s in closed["stages"])
        reached = f"drift start to new model serving **{served / 60:.1f} min**" if served else "the new model never served"
        if challenged:
            reached += f" (before shoppers as the challenger after {challenged / 60:.1f} min)"
        if served:
            after = (f"CTR on the same {closed.get('side_by_side_sessions', 2000):,} drifted sessions: new model "
                     f"**{ctr['drifted_fresh']}**, stale {ctr['drifted_stale']} ({change(ctr['drifted_fresh'], ctr['drifted_stale'])}); "
                     f"before the drift {ctr['before_drift']} (new model {change(ctr['drifted_fresh'], ctr['before_drift'])})")
        else:
            verdict = next((m["online_evaluation"] for m in reversed(closed["monitors"]) if m.get("online_evaluation")), None) or {}
            after = (f"shoppers' verdict on the retrained model: {verdict.get('outcome', 'none')} (lists won: challenger "
                     f"{verdict.get('challenger_wins')}, champion {verdict.get('champion_wins')}; confidence "
                     f"{verdict.get('confidence')}); the stale model's CTR {ctr['drifted_stale']} after the drift, "
                     f"{ctr['before_drift']} before")
        out.append(("The closed loop", f"{command}: {closed['scale']['n_items']:,} items, drift "
                    + " + ".join(f"`{d.partition('@')[0]}`" for d in closed["drift"].split(",")) + ", "
                    "Airflow retrains on the monitor's asset, interleaving promotes, hot swap",
                    f"{reached} (stages: {stages}); {after}"))
    for name, workers in (("search_100rps", "one worker"), ("search_100rps_2workers", "two workers")):
        steady = _load(name)
        if steady:
            row = steady["per_minute"][0]
            speed = f", calibration {steady['calibration_s']} s" if "calibration_s" in steady else ""
            out.append(("Search at a steady rate", f"{steady['search_rate']:g} searches/s for {steady['minutes']:g} min, {workers}{speed}",
                        f"p50 {row['search_p50_ms']} ms, p99 {row['search_p99_ms']} ms, errors {sum(steady['errors'].values())}"))
    rates = _load("search_rates")
    if rates:
        sweep = ", ".join(f"{r['rate']:g}/s p99 {r['p99_ms']} ms" for r in rates["rates"])
        out.append(("Highest steady search rate", f"/search at rising rates, 20 s each, one worker, calibration "
                    f"{rates['calibration_s']} s (Python client on the same 2 cores)",
                    f"**{rates['highest_rate_within_bound']} searches/s** with p99 <= {rates['p99_bound_ms']:g} ms and no errors ({sweep})"))
    soak = _load("soak")
    if soak:
        rows = soak["per_minute"]
        out.append(("Soak", f"{soak['search_rate']:g} searches/s + {soak['feedback_rate']:g} feedback batches/s for "
                    f"{soak['minutes']:g} min",
                    f"{'**stable**' if soak['stable'] else '**not stable**'}: memory {rows[0]['memory_mb']} -> {rows[-1]['memory_mb']} MB "
                    f"(growth after minute 1: {soak['memory_growth_after_warmup']:.1%}), search p99 by minute "
                    f"{min(r['search_p99_ms'] for r in rows)}-{max(r['search_p99_ms'] for r in rows)} ms, "
                    f"errors {sum(soak['errors'].values())}"))
    else:
        missing.append("bench/soak.py (after `make demo`)")
    scale = _load("scale_profile")
    if scale:
        cells = [f"{name}: materialise {row['materialise_s']:g} s, per-request counters read p50 "
                 f"{row['request_read']['p50_ms']:g} ms (p99 {row['request_read']['p99_ms']:g}), push of 100 items "
                 f"{row['push_100']['p50_ms']:g} ms" for name, row in scale["profiles"].items()]
        items = next(iter(scale["profiles"].values()))["items"]
        out.append(("Online store, embedded vs scale profile", f"{items:,} items, the 100 candidates of a request", "; ".join(cells)))
    else:
        missing.append("bench/scale_profile.py (after `make demo`)")
    warehouse = _load("scale_warehouse")
    if warehouse:
        duck, on_spark, ratio = (warehouse["engines"]["duckdb"], warehouse["engines"]["spark"], warehouse["spark_over_duckdb"])
        out.append(("Warehouse, embedded vs scale profile", f"{warehouse['items']:,} items, {warehouse['events']:,} events, "
                    "the same landing zone",
                    f"dbt build DuckDB {duck['dbt_build_s']:g} s, Spark {on_spark['dbt_build_s']:g} s (x{ratio['dbt_build_s']:g}); "
                    f"materialise {duck['materialise_s']:g} / {on_spark['materialise_s']:g} s (x{ratio['materialise_s']:g}); "
                    f"point-in-time join of {duck['pit_rows']:,} rows {duck['pit_join_s']:g} / {on_spark['pit_join_s']:g} s "
                    f"(x{ratio['pit_join_s']:g}); marts identical: **{'yes' if warehouse['marts_identical'] else 'no'}**"))
    else:
        missing.append("bench/scale_warehouse.py")
    training = _load("scale_training")
    if training:
        one, two = training["runs"]["1"], training["runs"]["2"]
        out.append(("Training with several processes", f"the encoder's fine-tuning, {training['steps']} steps of "
                    f"{training['batch']} triplets per process, torchrun DDP over gloo",
                    f"1 process {one['samples_per_s']:g} samples/s, 2 processes {two['samples_per_s']:g} samples/s "
                    f"(**x{training['two_over_one']:g}**)"))
    else:
        missing.append("bench/scale_training.py (after `make demo`)")
    serving = _load("scale_serving")
    if serving:
        one, two = serving["embedded, 1 replica"]["http"], serving["scale, 2 replicas"]["http"]
        out.append(("Serving, 1 vs 2 replicas", f"/search over HTTP, a shop of {serving['items']:,} items: the embedded "
                    "profile's one service against the scale profile's 2 replicas (Redis stream and online store)",
                    f"16 clients: 1 replica {one['16 clients']['requests_per_s']:g} req/s, 2 replicas "
                    f"{two['16 clients']['requests_per_s']:g} req/s (**x{serving['scale_over_embedded']['16 clients']:g}**, "
                    f"one machine's 2 cores shared); 1 client p50 {one['1 client']['p50_ms']:g} / "
                    f"{two['1 client']['p50_ms']:g} ms; ready after {serving['embedded, 1 replica']['ready_s']:g} / "
                    f"{serving['scale, 2 replicas']['ready_s']:g} s"))
    else:
        missing.append("bench/scale_serving.py")
    recommend = _load("recommend_quality")
    if recommend:
        r = recommend["results"]
        served = r["served (all sources, re-ranked)"]["all"]
        sasrec = r["SASRec, text-initialised"]["all"]
        cooc = r["co-occurrence (item-to-item)"]["all"]
        out.append(("Recommendation", f"Amazon Office Products, {served['rows']:,} held-out next items, full ranking",
                    f"served Recall@10 **{served['recall@10']:.3f}** / NDCG@10 {served['ndcg@10']:.3f}; SASRec "
                    f"{sasrec['recall@10']:.3f} / {sasrec['ndcg@10']:.3f}; co-occurrence {cooc['recall@10']:.3f} / "
                    f"{cooc['ndcg@10']:.3f}"))
    else:
        missing.append("bench/recommend_quality.py")
    return out, missing


def table() -> str:
    found, missing = rows()
    lines = ["| area | measured on (2 CPU cores) | latest result |", "|---|---|---|"]
    lines += [f"| {area} | {what} | {result} |" for area, what, result in found]
    if missing:
        lines += ["", "Not yet measured on this copy: " + ", ".join(missing) + "."]
    lines += ["", "_Written by `bench/readme_results.py` from `bench/results/*.json`; `make bench` refreshes it._"]
    return "\n".join(lines)


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"README.md has no {BEGIN} ... {END} section to write")
    updated = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: f"{BEGIN}\n{table()}\n{END}", text, flags=re.S)
    readme.write_text(updated)
    print(table())


if __name__ == "__main__":
    main()
