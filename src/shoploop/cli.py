"""The single door: `shoploop <step> --run-date YYYY-MM-DD`, each step idempotent for its date."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone

import typer

from shoploop.data.simulator import DRIFTS
from shoploop.pipeline import operate, steps
from shoploop.settings import get_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@app.callback()
def options(verbose: bool = typer.Option(False, "--verbose", "-v",
                                         help="show every library warning and progress bar (hidden by default "
                                              "where a user cannot act on them)")):
    if verbose:
        import os

        os.environ["SHOPLOOP_VERBOSE"] = "1"  # inherited by the tools the steps start


def _run_date(value: str | None) -> date:
    if value is None:
        return datetime.now(timezone.utc).date()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date: use YYYY-MM-DD, e.g. 2026-11-29")


RunDate = typer.Option(None, "--run-date", help="The logical date (YYYY-MM-DD); default today (UTC).")


def _show(result) -> None:
    if result is not None:
        typer.echo(json.dumps(result, indent=2, default=str))


@app.command()
def simulate(run_date: str = RunDate,
             scale: int = typer.Option(None, help="items in the shop; users and traffic grow with it "
                                                  "(200000 gives ~1.4M events)"),
             drift: str = typer.Option(None, help="drift scenarios, e.g. 'price_shock@2026-11-25,bots@2026-11-27'; "
                                                  "names: " + ", ".join(DRIFTS)),
             policy: str = typer.Option("auto", help="who ranks the simulated shoppers' slates: 'champion' (the "
                                                     "registered model), 'lexical' (the shop before any model), "
                                                     "'auto' (the champion when there is one)")):
    """Simulate the shop for the days before the run date and land every table."""
    settings = get_settings()
    overrides = {}
    if scale:
        overrides.update(n_items=scale, n_users=max(settings.n_users, scale // 4),
                         sessions_per_day=max(settings.sessions_per_day, int(scale * 0.036)))
    if drift is not None:
        overrides["drift"] = drift
    _show(steps.simulate(settings.model_copy(update=overrides), _run_date(run_date), policy))


@app.command()
def ingest(fmt: str = typer.Argument(..., metavar="FORMAT", help="amazon2018 | esci | unisrec | recbole | homedepot | generic"),
           path: str = typer.Argument(..., help="folder holding the dataset's files (read in place)"),
           run_date: str = RunDate):
    """Land a real dataset in the contract's shape; rows that cannot land go to quarantine with a reason."""
    from shoploop.data import ingest as run

    _show(run(get_settings(), fmt, path, _run_date(run_date)))


@app.command()
def land(run_date: str = RunDate):
    """Land the run date's data from the configured source (SHOPLOOP_SOURCE: 'simulator' or 'FORMAT:PATH')."""
    _show(steps.land(get_settings(), _run_date(run_date)))


@app.command()
def transform(run_date: str = RunDate,
              full_refresh: bool = typer.Option(False, help="rebuild incremental models from the whole landing zone")):
    """dbt build: staging (typed, deduplicated, pseudonymised) and marts, with their tests."""
    result = steps.transform(get_settings(), _run_date(run_date), full_refresh=full_refresh)
    print(steps.describe_transform(result))
    for reason, n in result["quarantined"].items():
        print(f"  quarantined {n:>7}  {reason}")


@app.command()
def features(run_date: str = RunDate):
    """feast apply, then materialise the latest features into the online store."""
    steps.feature_store(get_settings(), _run_date(run_date))


@app.command()
def reindex(run_date: str = RunDate):
    """The serving version over the current catalog: new items indexed, titles and prices refreshed, hot-swapped in."""
    _show(steps.reindex(get_settings(), _run_date(run_date)))


@app.command()
def train(run_date: str = RunDate):
    """Fine-tune the encoder, encode the catalog, build BM25 + ANN, fit the ranker on point-in-time features."""
    _show(steps.train(get_settings(), _run_date(run_date)))


@app.command()
def compress(run_date: str = RunDate):
    """Distil, prune, int8-quantise and ONNX-export the query encoder; a size/speed/quality gate picks what serves."""
    _show(steps.compress(get_settings(), _run_date(run_date)))


@app.command()
def evaluate(run_date: str = RunDate):
    """nDCG@10 on held-out queries: model vs BM25, zero-shot dense and random."""
    _show(steps.evaluate(get_settings(), _run_date(run_date)))


@app.command()
def register(run_date: str = RunDate):
    """Save the version in the BentoML model store; promote it if it passes the gate."""
    _show(steps.register(get_settings(), _run_date(run_date)))


@app.command()
def first(run_date: str = RunDate):
    """Where nothing serves yet: register an untrained first version (zero-shot MiniLM + BM25) as champion."""
    _show(steps.first_answer(get_settings(), _run_date(run_date)))


@app.command()
def deploy():
    """Serve the champion: hot swap into the running service (no request dropped), or start it."""
    served = operate.deploy(get_settings())
    typer.echo(f"{served['url']}: {served['model_version']} serves ({served['how']}"
               f"{', was ' + served['previous'] if served.get('previous') else ''})")


@app.command()
def monitor(run_date: str = RunDate):
    """Drift (Evidently: features and model scores) and online quality per model version, then the
    decision (none / retrain / rollback) with its reasons; a rollback is carried out at once."""
    _show(operate.monitor(get_settings(), _run_date(run_date)))


@app.command()
def history():
    """Every promotion and rollback of the champion, with its reason."""
    from shoploop.models import registry

    for entry in registry.history(get_settings()):
        typer.echo(f"{entry['at']}  {entry['event']:<9}  {entry['tag']}  ({'against' if entry['event'] == 'challenge' else 'replaced'} {entry['replaced'] or 'nothing'}): "
                   f"{entry['reason']}")


@app.command()
def shop(url: str = typer.Option(None, help="the running service; default http://HOST:SERVICE_PORT"),
         sessions: int = typer.Option(100, min=1, help="shopper sessions to run"),
         rate: float = typer.Option(2.0, min=0.0, help="sessions a second (0: as fast as it answers)")):
    """Live mode: simulated shoppers search the running service and post their clicks to /feedback."""
    from shoploop.data import landing
    from shoploop.data.live import run_shoppers

    settings = get_settings()
    judgments = landing.read_table(settings.landing, "judgments")
    users = landing.read_table(settings.landing, "users")["user_id"].tolist()
    url = url or f"http://{settings.host}:{settings.service_port}"
    _show(run_shoppers(url, judgments, users, sessions, settings.seed, rate=rate))


@app.command()
def report(what: str = typer.Argument("data", help="the report to write (data)"), run_date: str = RunDate):
    """Write a report with plots: `data` covers catalog mix, prices, popularity, position bias and drift."""
    if what != "data":
        raise typer.BadParameter(f"unknown report {what!r}: the one report so far is 'data'")
    from shoploop.warehouse.report import data_report

    typer.echo(data_report(get_settings(), _run_date(run_date)))


@app.command()
def demo(run_date: str = RunDate,
         source: str = typer.Option(None, help="'simulator' (default) or a real dataset, 'FORMAT:PATH' (an ingest "
                                                "format, e.g. 'homedepot:../shared/datasets/homedepot_search')")):
    """The main job: the whole loop, then the service, Airflow and Evidently UIs left running."""
    from shoploop.pipeline import demo as run

    settings = get_settings()
    if source:
        settings = settings.model_copy(update={"source": source})
    run.run(settings, _run_date(run_date), say=typer.echo)


@app.command()
def loop(keep_running: bool = typer.Option(False, help="leave the loop's service and Airflow up at the end"),
         scale: str = typer.Option("small", help="'small' (1,000 items, about 30 min) or 'default' (the settings' "
                                                 "scale, 5,000 items unless set: about an hour)")):
    """The closed loop, shown: drift starts under live shoppers, Airflow retrains, interleaving promotes,
    the service hot-swaps, click-through measured side by side; a report with plots (about 30 minutes).
    Runs on today's date (UTC): Airflow's runs are today's."""
    from shoploop.pipeline import loop as run

    if scale not in ("small", "default"):
        raise typer.BadParameter(f"scale {scale!r}: 'small' or 'default'")
    result = run.run(get_settings(), _run_date(None), say=typer.echo, keep_running=keep_running, scale=scale)
    typer.echo(f"drift to new model serving: {result['drift_to_serving_s']} s; CTR {result['ctr']}")


@app.command()
def airflow():
    """Start this home's Airflow (standalone, or the scale profile's Celery cluster) and leave it running."""
    from shoploop.pipeline import orchestration

    settings = get_settings()
    url = orchestration.start_airflow(settings, say=typer.echo)
    typer.echo(f"Airflow {url} (login admin / {orchestration.airflow_password(settings)}): "
               f"{', '.join(orchestration.server_names(settings))}")


@app.command()
def stop():
    """Stop every server `shoploop demo` started (by process group)."""
    from shoploop.pipeline import demo as run

    stopped = run.stop_all(get_settings())
    typer.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}")


# The loop's steps: each ends with one line saying it passed and how long it took (stderr).
STEPS = {"simulate", "ingest", "land", "transform", "features", "train", "compress", "evaluate", "register", "first",
         "deploy", "monitor", "report"}


def main() -> None:
    """Entry point: a failing step prints one clear line (what failed, where to look) and exits 1."""
    import sys
    import time

    from shoploop.warehouse import DbtFailed

    started = time.monotonic()
    try:
        app()
    except (DbtFailed, FileNotFoundError, ValueError, LookupError, TimeoutError, RuntimeError) as error:
        typer.secho(f"shoploop: {error}", err=True, fg=typer.colors.RED)
        raise SystemExit(1)
    except SystemExit as done:  # typer ends every command so; a step that passed says how long it took
        command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None)
        if done.code in (0, None) and command in STEPS:
            typer.echo(f"shoploop {command}: done in {time.monotonic() - started:.1f} s", err=True)
        raise


if __name__ == "__main__":
    main()
