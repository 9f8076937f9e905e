"""The warehouse step: run the dbt project (DuckDB by default) over the landing zone.

dbt runs in-process through its programmatic ``dbtRunner``; the marts come out as parquet
(dbt-duckdb's ``external`` materialisation) under ``$SHOPLOOP_HOME/marts``, where Feast reads them.

A build never writes where readers read. dbt-duckdb writes each mart in place, so a build killed
midway would leave a half-written file (or a set of marts from two builds). Each build writes into
a folder of its own, ``marts.d/<build>``, and only once the whole build passed does ``marts`` (a
symlink) switch to it, in one atomic rename: a reader sees the last complete build or the new one,
never a part. A killed build leaves an unpublished folder that the next build removes; the staging
tables it may have half-updated are rebuilt idempotently (``delete+insert`` on their keys).
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from dbt.adapters.duckdb.plugins import BasePlugin

from shoploop.data.landing import fsync_dir
from shoploop.data.text import clean_text
from shoploop.pipeline.progress import bar
from shoploop.settings import Settings
from shoploop.warehouse.privacy import KEY_ENV, pseudonymise, scrub


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


MARTS_ENV = "SHOPLOOP_MARTS_BUILD"


def _builds(settings: Settings) -> Path:
    return settings.home / "marts.d"


def _new_build(settings: Settings) -> Path:
    """An empty folder for this build's marts, named so that builds sort by start time."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    out = _builds(settings) / f"{stamp}-{os.getpid()}"
    out.mkdir(parents=True)
    return out


def _publish(settings: Settings, built: Path) -> None:
    """Point ``marts`` at a complete build in one rename, then remove the builds older than the one it
    replaced (that one stays: a reader may still hold its files, and DuckDB's views name them)."""
    marts, builds = settings.marts, _builds(settings)
    for path in built.iterdir():  # the files' bytes reach the disk before the switch makes them the marts
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    previous = marts.resolve() if marts.is_symlink() else None
    if marts.exists() and not marts.is_symlink():  # a home from before builds were published
        os.replace(marts, builds / "legacy")
    swap = marts.with_name(".marts.swap")
    swap.unlink(missing_ok=True)
    os.symlink(built.relative_to(settings.home), swap)
    os.replace(swap, marts)
    fsync_dir(settings.home)
    for old in builds.iterdir():
        # older than this build and not the one just replaced: killed builds and superseded ones
        if old.name < built.name and old != previous:
            shutil.rmtree(old, ignore_errors=True)


@contextmanager
def connected(settings: Settings, purpose: str = "read the warehouse"):
    """One process at a time in this home's DuckDB file (DuckDB allows one process to hold it open for
    writing): a dbt build and a reader (the monitor, a report) take turns, the later one waiting and
    saying so. Yields a connection for a reader; ``purpose`` names the wait."""
    import fcntl
    import sys

    import duckdb

    settings.run_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.run_dir / "warehouse.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for the warehouse (another process of this home uses it) to {purpose}", file=sys.stderr, flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        if purpose == "build":
            yield None
            return
        con = duckdb.connect(str(settings.warehouse_path))
        try:
            yield con
        finally:
            con.close()


def _release_dbt_connection() -> None:
    """dbt-duckdb keeps its DuckDB instance open in the process after a command ends (a class-level
    cache), which would hold the file's lock for as long as the process lives (a demo, a loop) and
    fail every other process's build or read. Close it once dbt is done."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        if DuckDBConnectionManager._ENV is not None:
            DuckDBConnectionManager._ENV.close()
            DuckDBConnectionManager._ENV = None


def _one_file_per_mart(built: Path) -> None:
    """Spark writes each mart as a folder of part files; readers (Feast, the trainer, the monitor) read
    one parquet file per mart whichever engine built it."""
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    for folder in [path for path in built.iterdir() if path.is_dir()]:
        table = ds.dataset(folder, format="parquet").to_table()
        pq.write_table(table, built / f"{folder.name}.parquet")
        shutil.rmtree(folder)


def run_dbt(settings: Settings, *args: str) -> dict[str, int]:
    """Run one dbt command (``build``, ``test``...) against this home's warehouse; raise on failure.
    Returns the data tests that warned (the project's data tests are warnings: a rule broken by
    landed or derived data never stops the loop) with the number of rows each found."""
    from dbt.cli.main import dbtRunner

    writes = args[0] in ("build", "run")
    out = _new_build(settings) if writes else settings.marts.resolve()
    target_dir = settings.home / "dbt" / "target"
    spark = settings.warehouse_engine == "spark"
    # Progress lines go to the log file; the console gets warnings and failures only.
    cli = [*args, "--log-level", "warn", "--log-level-file", "info", "--project-dir", str(settings.dbt_dir), "--profiles-dir", str(settings.dbt_dir),
           "--target", settings.warehouse_engine, "--target-path", str(target_dir), "--log-path", str(settings.home / "dbt" / "logs")]
    # No ANSI colour codes: dbt writes them into the message text itself, so they reached its log file even
    # from a terminal, and log files, Airflow task logs and CI off one (the console shows warnings only).
    cli.append("--no-use-colors")
    if spark and args[0] in ("build", "test"):
        # The models' logic is unit-tested on DuckDB (the same SQL, where the engines differ a dispatched macro).
        cli += ["--exclude", "test_type:unit"]
    progress = _NodeProgress(f"dbt {args[0]} ({settings.warehouse_engine})")
    from shoploop.features.stream import no_compaction

    # dbt lists the event log's files and opens them later: no compaction in between.
    with _tool_env(settings), connected(settings, "build"), no_compaction(settings):
        os.environ[MARTS_ENV] = str(out)  # the profile's external_root (DuckDB) or location_root (Spark)
        if spark:
            from shoploop.warehouse.spark import dbt_session

            dbt_session(settings)  # the session dbt-spark takes: on the cluster, the rules' UDFs registered
        try:
            result = dbtRunner(callbacks=[progress]).invoke(cli)
        finally:
            progress.close()
            if not spark:
                _release_dbt_connection()
    if writes and result.success and spark:
        _one_file_per_mart(out)
    if writes and result.success:
        _publish(settings, out)
    elif writes:
        shutil.rmtree(out, ignore_errors=True)  # the marts that serve stay the last complete build's
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


def mart_fingerprints(marts: Path) -> dict[str, tuple[int, str]]:
    """Rows and a checksum per mart, engine-neutral: integers exact whatever their width (a sum is HUGEINT
    on DuckDB, BIGINT on Spark), other numbers to 6 significant digits (the JVM's ln and a parallel average
    can differ from DuckDB's in the last bit, which at 9 digits flips a few of millions of values), timestamps in UTC without zone,
    columns by name, and rows in any order (the sum of the rows' hashes). Two warehouses built from the
    same landing zone have the same fingerprints. An all-null row does not count (dbt-duckdb keeps an empty
    mart's schema as one)."""
    import hashlib

    import duckdb

    integer = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    prints = {}
    for path in sorted(marts.glob("*.parquet")):
        source = f"read_parquet('{path}')"
        columns = sorted(con.execute(f"describe select * from {source}").fetchall())
        cells = []
        for name, kind, *_ in columns:
            column = '"' + name.replace('"', '""') + '"'
            if kind in integer:  # exact, whatever the width
                cells.append(f"coalesce(cast({column} as hugeint)::varchar, '')")
            elif kind.startswith(("FLOAT", "DOUBLE", "DECIMAL")):
                cells.append(f"coalesce(printf('%.6g', {column}::double), '')")
            elif kind.startswith("TIMESTAMP WITH TIME ZONE"):
                cells.append(f"coalesce(cast({column}::timestamp as varchar), '')")
            else:
                cells.append(f"coalesce(cast({column} as varchar), '')")
        any_value = " or ".join(f'"{name}" is not null' for name, *_ in columns)
        rows, total = con.execute(f"select count(*), coalesce(sum(hash(concat_ws(chr(31), {', '.join(cells)}))::hugeint), 0) "
                                  f"from {source} where {any_value}").fetchone()
        header = ",".join(name for name, *_ in columns)
        prints[path.stem] = (int(rows), hashlib.sha256(f"{header}|{total}".encode()).hexdigest()[:16])
    con.close()
    return prints


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
