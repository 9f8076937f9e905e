"""The warehouse step: run the dbt project (DuckDB by default) over the landing zone.

dbt runs in-process through its programmatic ``dbtRunner``; the marts come out as parquet
(dbt-duckdb's ``external`` materialisation) under ``$SHOPLOOP_HOME/marts``, where Feast reads them.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

from dbt.adapters.duckdb.plugins import BasePlugin

from shoploop.privacy import KEY_ENV, pseudonymise, scrub
from shoploop.progress import bar
from shoploop.settings import Settings
from shoploop.text import clean_text


class DbtFailed(RuntimeError):
    pass


@contextmanager
def _tool_env(settings: Settings):
    saved = dict(os.environ)
    os.environ.update(settings.tool_env())
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class _NodeProgress:
    """A dbt callback: one bar over the nodes (models, snapshots, tests) a command runs, with the time
    left and the node that last finished; dbt announces the total with its first "N of M START"."""

    def __init__(self, desc: str) -> None:
        self.desc, self.bar = desc, None

    def __call__(self, event) -> None:
        name = event.info.name
        if name == "LogStartLine" and self.bar is None:
            self.bar = bar(total=int(event.data.total), desc=self.desc, unit="node")
        elif name == "NodeFinished" and self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(event.data.node_info.node_name[:40], refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_dbt(settings: Settings, *args: str) -> dict[str, int]:
    """Run one dbt command (``build``, ``test``...) against this home's warehouse; raise on failure.
    Returns the data tests that warned (the project's data tests are warnings: a rule broken by
    landed or derived data never stops the loop) with the number of rows each found."""
    from dbt.cli.main import dbtRunner

    settings.marts.mkdir(parents=True, exist_ok=True)
    target_dir = settings.home / "dbt" / "target"
    # Progress lines go to the log file; the console gets warnings and failures only.
    cli = [*args, "--log-level", "warn", "--log-level-file", "info", "--project-dir", str(settings.dbt_dir), "--profiles-dir", str(settings.dbt_dir),
           "--target-path", str(target_dir), "--log-path", str(settings.home / "dbt" / "logs")]
    progress = _NodeProgress(f"dbt {args[0]}")
    with _tool_env(settings):
        try:
            result = dbtRunner(callbacks=[progress]).invoke(cli)
        finally:
            progress.close()
    if not result.success:
        failed = [f"{r.node.name} ({r.status})" for r in getattr(result.result, "results", [])
                  if str(r.status) in ("error", "fail")]
        detail = result.exception or ", ".join(failed) or "see the log"
        raise DbtFailed(f"dbt {' '.join(args)} failed: {detail}; log in {settings.home / 'dbt' / 'logs'}")
    return {r.node.name: int(r.failures or 0) for r in getattr(result.result, "results", []) if str(r.status) == "warn"}


def transform(settings: Settings, full_refresh: bool = False) -> dict:
    """dbt build; ``full_refresh`` rebuilds the incremental models from the whole landing zone.
    Returns the data tests that warned and the quarantined rows by reason, for the step's one line."""
    import duckdb

    warnings = run_dbt(settings, "build", *(["--full-refresh"] if full_refresh else []))
    quarantine = settings.marts / "quarantine.parquet"
    counts = {}
    if quarantine.exists():
        rows = duckdb.sql(f"select table_name || ': ' || reason, count(*) from read_parquet('{quarantine}') "
                          "where reason is not null group by all order by 2 desc").fetchall()
        counts = {reason: int(n) for reason, n in rows}
    return {"warnings": warnings, "quarantined": counts}


class Plugin(BasePlugin):
    """dbt-duckdb plugin: registers the Python rules staging applies, on every connection.

    ``pseudonymise(user_id)`` (keyed HMAC), ``scrub(text)`` (emails, phones, cards out of query
    text) and ``clean_text(text)`` (HTML, CSS, Unicode): one implementation for SQL and Python.
    """

    def initialize(self, plugin_config: dict) -> None:
        key = os.environ.get(KEY_ENV, "")
        if len(key) < 16:
            raise RuntimeError(
                f"{KEY_ENV} is unset or shorter than 16 characters; run dbt through `shoploop transform`, "
                "which passes the key from settings"
            )
        self._key = key

    def configure_connection(self, conn) -> None:
        key = self._key
        udfs = {"pseudonymise": lambda user_id: pseudonymise(user_id, key), "scrub": scrub, "clean_text": clean_text}
        for name, function in udfs.items():
            conn.create_function(name, function, ["VARCHAR"], "VARCHAR", null_handling="special", side_effects=False)
