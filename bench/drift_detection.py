"""Does the monitor see drift, and only drift? Every drift scenario of the simulator, and a shop with none.

For each scenario a shop of its own is built as a new shop is (simulate with the scenario starting
``--lead`` days before the run date, dbt build, Feast, the first answer as champion), then
`shoploop monitor` runs once a day over it, each run seeing only what was known by the end of its
date: a day before the scenario starts (a false alarm if it decides anything), the day it starts and
the days after. "Detected" is the first run from the start whose decision is ``retrain`` (or
``rollback``), counted in monitor runs (1 = the day it started). The shop without a scenario is
monitored on ``--runs`` consecutive days: every decision other than ``none`` there is a false alarm.

Everything goes through the CLI, as a user runs it, on homes under a temporary folder (removed
after). Run: ``.venv/bin/python bench/drift_detection.py [--items 1000 --days 14 --sessions 250]``;
prints a table and saves bench/results/drift_detection.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("shoploop"))
RUN_DATE = date(2026, 11, 29)


def step(env: dict, *args: str) -> None:
    result = subprocess.run([CLI, *args], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"drift bench: `shoploop {' '.join(args)}` failed:\n{result.stderr[-3000:]}")


def monitored(env: dict, day: date) -> dict:
    step(env, "monitor", "--run-date", str(day))
    summary = json.loads((Path(env["SHOPLOOP_HOME"]) / "reports" / str(day) / "monitor.json").read_text())
    drift = summary.get("drift", {})
    return {"run_date": str(day), "decision": summary["decision"], "reasons": summary["reasons"],
            "drift_share": drift.get("drift_share"),
            "drifted_columns": sorted(c for c, v in drift.get("columns", {}).items() if v["drifted"]),
            "query_drift": drift.get("query_embeddings", {}).get("value")}


def shop(scenario: str | None, start: date, days: list[date], args, folder: Path, clock) -> dict:
    env = {**os.environ, "SHOPLOOP_HOME": str(folder / (scenario or "none")), "SHOPLOOP_N_ITEMS": str(args.items),
           "SHOPLOOP_N_USERS": str(max(300, args.items // 2)), "SHOPLOOP_N_DAYS": str(args.days),
           "SHOPLOOP_SESSIONS_PER_DAY": str(args.sessions), "SHOPLOOP_DRIFT": f"{scenario}@{start}" if scenario else "",
           "SHOPLOOP_PSEUDONYM_KEY": "bench-drift-0123456789abcdef", "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1",
           "BENTOML_DO_NOT_TRACK": "True", "DBT_SEND_ANONYMOUS_USAGE_STATS": "False"}
    for name in ("simulate", "transform", "features", "first"):
        step(env, name, "--run-date", str(RUN_DATE))
    clock(f"{scenario or 'no drift'}: shop built")
    runs = []
    for day in days:
        runs.append(monitored(env, day))
        clock(f"{scenario or 'no drift'}: monitor {day} -> {runs[-1]['decision']}")
    return {"scenario": scenario, "start": str(start) if scenario else None, "runs": runs}


def main() -> None:
    from shoploop.data.simulator import DRIFTS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--days", type=int, default=14, help="days of traffic before the run date")
    parser.add_argument("--sessions", type=int, default=250, help="search sessions a day")
    parser.add_argument("--runs", type=int, default=10, help="monitor runs on the shop without drift")
    parser.add_argument("--lead", type=int, default=3, help="days of the scenario before the run date")
    parser.add_argument("--scenarios", default=",".join(DRIFTS))
    args = parser.parse_args()
    scenarios = [s for s in args.scenarios.split(",") if s]
    last = RUN_DATE - timedelta(days=1)  # the newest simulated day
    start = RUN_DATE - timedelta(days=args.lead)
    started = time.monotonic()
    # A shop's build costs about three monitor runs: the steps to come, in monitor runs, give the time left.
    planned = args.runs + len(scenarios) * (args.lead + 1) + 3 * (1 + len(scenarios))
    done = 0

    def clock(what: str) -> None:
        nonlocal done
        done += 1 if "monitor" in what else 3
        spent = time.monotonic() - started
        print(f"[{spent:6.0f} s] {what}  (~{spent / done * (planned - done):.0f} s left)", flush=True)

    results = []
    with tempfile.TemporaryDirectory(prefix="shoploop-drift-") as tmp:
        results.append(shop(None, start, [last - timedelta(days=i) for i in reversed(range(args.runs))], args, Path(tmp), clock))
        for scenario in scenarios:
            days = [start + timedelta(days=i) for i in range(-1, args.lead)]
            results.append(shop(scenario, start, days, args, Path(tmp), clock))

    quiet = results[0]["runs"]
    false_alarms = [r for r in quiet if r["decision"] != "none"]
    rows = []
    for result in results[1:]:
        before, after = result["runs"][0], result["runs"][1:]
        hit = next((i + 1 for i, r in enumerate(after) if r["decision"] != "none"), None)
        result.update(detected_in_runs=hit, false_alarm_before=before["decision"] != "none")
        rows.append(result)
    print(f"\n{'scenario':<12} {'run before':<11} {'detected in':<12} reasons (first detecting run)")
    for r in rows:
        hit = r["detected_in_runs"]
        reasons = "; ".join(r["runs"][hit]["reasons"]) if hit else "-"
        print(f"{r['scenario']:<12} {r['runs'][0]['decision']:<11} {(f'{hit} run(s)' if hit else 'not seen'):<12} {reasons[:150]}")
    print(f"no drift: {len(false_alarms)} false alarm(s) in {len(quiet)} monitor runs"
          + "".join(f"\n  {r['run_date']}: {'; '.join(r['reasons'])[:200]}" for r in false_alarms))
    out = {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.node(),
           "cpus": os.cpu_count(), "shop": {"items": args.items, "days": args.days, "sessions_per_day": args.sessions},
           "seconds": round(time.monotonic() - started, 1), "target_runs": 2,
           "scenarios": rows, "no_drift": {"runs": quiet, "false_alarms": len(false_alarms)},
           "detected_within_2": sum(1 for r in rows if r["detected_in_runs"] and r["detected_in_runs"] <= 2),
           "scenario_count": len(rows)}
    path = ROOT / "bench" / "results" / "drift_detection.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"saved {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
