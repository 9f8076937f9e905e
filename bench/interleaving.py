"""Online evaluation: how many shopper sessions team-draft interleaving needs to tell the better of two
models with 95% confidence, against the running service with simulated shoppers.

The two models are the demo home's trained champion and its first answer (zero-shot MiniLM + BM25 and
the seed ranker, known worse offline). Each direction is run: the worse one as the challenger (the
verdict must keep the champion), then the better one as the challenger of the worse (the verdict must
promote it). The service is restarted with every search interleaved (SHOPLOOP_INTERLEAVE_SHARE=1) and
simulated shoppers (shoploop.data.live: the simulator's graded relevance and position-based click
model) search and click over HTTP; after every ``--step`` sessions the verdict is computed from the
event log, as the monitor does (looking after every step, as the monitor looks at every run, makes
the chance of a wrong verdict somewhat higher than the 5% of one look). Nothing is promoted or rejected: the registry's champion is put back
as it was (its history records the bench's swaps), and the service restarted with the home's settings.

Run after `make demo`: ``.venv/bin/python bench/interleaving.py [--sessions 2000]``; prints a table and
saves bench/results/interleaving.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def first_answer_tag(settings) -> str:
    """The home's first answer: the registered version whose lineage says so."""
    from shoploop.models import registry

    for model in registry._bentoml(settings).models.list(settings.model_name):
        if "first answer" in model.info.metadata.get("lineage", {}).get("labels", ""):
            return str(model.tag)
    raise SystemExit("interleaving bench: no first answer in the registry (run `make demo` first)")


def run(settings, champion: str, challenger: str, sessions: int, step: int, seed: int) -> dict:
    from shoploop.data import landing
    from shoploop.data.live import run_shoppers
    from shoploop.models import registry
    from shoploop.monitoring.monitor import feedback_events
    from shoploop.serving import interleaving

    registry.challenge(settings, challenger, {}, "bench: interleaving power")
    since = registry.challenger(settings)["since"]
    judgments = landing.read_table(settings.landing, "judgments")
    users = landing.read_table(settings.landing, "users")["user_id"].tolist()
    url = f"http://{settings.host}:{settings.service_port}"
    time.sleep(12)  # the workers follow the registry within seconds
    trail, decided_at = [], None
    for done in range(step, sessions + step, step):
        stats = run_shoppers(url, judgments, users, n_sessions=step, seed=seed + done)
        verdict = interleaving.verdict(feedback_events(settings, since=since), champion, challenger)
        trail.append({"sessions": done, **verdict.as_dict(), "errors": stats["errors"]})
        print(f"  {done:>5} sessions: {verdict.reason()}", flush=True)
        if verdict.winner and decided_at is None:
            decided_at = done
            break
    return {"champion": champion, "challenger": challenger, "decided_after_sessions": decided_at,
            "winner": trail[-1]["winner"], "confidence": trail[-1]["confidence"], "trail": trail}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=2000, help="the most sessions a direction may use")
    parser.add_argument("--step", type=int, default=100, help="sessions between verdicts")
    args = parser.parse_args()

    from shoploop.models import registry
    from shoploop.pipeline import operate, processes
    from shoploop.settings import Settings, get_settings

    home = get_settings()
    trained = registry.champion(home)
    if trained is None:
        raise SystemExit(f"interleaving bench: no model serves in {home.home}: run `make demo` first")
    trained, first = trained["tag"], first_answer_tag(home)
    os.environ["SHOPLOOP_INTERLEAVE_SHARE"] = "1"
    settings = Settings()
    processes.stop(settings, "service")
    operate.deploy(settings)
    result = {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores", "confidence_needed": 0.95, "directions": []}
    try:
        print(f"worse challenger: {first} against the champion {trained}", flush=True)
        result["directions"].append({"case": "worse challenger (first answer) vs trained champion",
                                     "expected": "champion", **run(settings, trained, first, args.sessions, args.step, 11)})
        registry.rollback(settings, first, "bench/interleaving.py: the first answer serves for the reverse direction")
        print(f"better challenger: {trained} against the champion {first}", flush=True)
        result["directions"].append({"case": "better challenger (trained) vs first-answer champion",
                                     "expected": "challenger", **run(settings, first, trained, args.sessions, args.step, 23)})
    finally:
        registry.challenger_file(settings).unlink(missing_ok=True)
        if registry.champion(settings)["tag"] != trained:
            registry.rollback(settings, trained, "bench/interleaving.py: the trained champion serves again")
        os.environ.pop("SHOPLOOP_INTERLEAVE_SHARE")
        processes.stop(settings, "service")
        operate.deploy(Settings())

    print(f"\n{'case':<56}{'verdict':>12}{'expected':>10}{'sessions':>10}{'confidence':>12}")
    for row in result["directions"]:
        print(f"{row['case']:<56}{str(row['winner']):>12} {row['expected']:>10}{str(row['decided_after_sessions']):>10}"
              f"{row['confidence']:>12.4f}")
    out = ROOT / "bench" / "results" / "interleaving.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"\nsaved {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
