"""The closed loop, measured: `shoploop loop` end to end (drift under live shoppers, Airflow's refresh,
monitor and asset-triggered retraining, interleaving, hot swap), then its timings and the click-through
of the new model beside the stale one on the same sessions. Prints a table, saves bench/results/loop.json.

    python bench/loop.py                    # runs the loop (about 30 minutes on 2 cores) -> loop.json
    python bench/loop.py --scale default    # on the demo's scale, 5,000 items (about an hour) -> loop_default.json
    python bench/loop.py --saved [--scale default]   # the last loop run's result (<home>-loop/reports/loop/loop.json)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

from shoploop.pipeline import loop
from shoploop.settings import get_settings

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saved", action="store_true", help="use the last loop run's loop.json instead of running it")
    parser.add_argument("--scale", default="small", choices=("small", "default"), help="as `shoploop loop --scale`")
    args = parser.parse_args()
    settings = get_settings()
    if args.saved:
        path = loop.loop_settings(settings, datetime.now(timezone.utc).date(), args.scale).reports / "loop" / "loop.json"
        result = json.loads(path.read_text())
        if (result["scale"]["n_items"] == loop.SCALE["n_items"]) != (args.scale == "small"):
            parser.error(f"{path} holds a loop at {result['scale']['n_items']:,} items, not scale {args.scale!r}")
    else:
        result = loop.run(settings, datetime.now(timezone.utc).date(), scale=args.scale)
    print(f"\n{'stage':<12}{'seconds':>8}")
    for stage in result["stages"]:
        print(f"{stage['stage']:<12}{stage['seconds']:>8.0f}")
    served, challenged = result["drift_to_serving_s"], result.get("drift_to_challenger_s")
    print(f"drift start -> new model before shoppers (challenger): {f'{challenged / 60:.1f} min' if challenged else 'never'}")
    print(f"drift start -> new model serving: {f'{served / 60:.1f} min' if served else 'never'} (target 20 min)")
    print(f"\n{'shoppers':<44}{'CTR':>8}{'purchases':>10}{'nDCG':>8}")
    for key, name in (("before_drift", "before the drift, old model"), ("drift_started", "drift starts, old model"),
                      ("drifted_stale", "after the loop, old model (pinned)"), ("drifted_fresh", "after the loop, new model")):
        print(f"{name:<44}{result['ctr'][key]:>8}{result['purchase_rate'][key]:>10}{result['online_ndcg'][key]:>8}")
    out = {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.node(),
           "cpus": os.cpu_count(), **result}
    path = ROOT / "bench" / "results" / ("loop.json" if args.scale == "small" else "loop_default.json")
    path.write_text(json.dumps(out, indent=2, default=str))
    print(f"saved {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
