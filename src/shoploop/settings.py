"""One frozen settings object for the whole loop (env prefix ``SHOPLOOP_``).

Paths, ports, backends and model tags live here and nowhere else. Reading the
settings never creates a directory; the steps that write create what they need.
"""

from __future__ import annotations

import re
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_DIR = Path(__file__).resolve().parents[2]
# The tools' telemetry off and the model hub offline: the same for every home, so safe to set process-wide.
QUIET_TOOLS = {"BENTOML_DO_NOT_TRACK": "True", "DBT_SEND_ANONYMOUS_USAGE_STATS": "False", "DO_NOT_TRACK": "1",
               "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "FEAST_USAGE": "False"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOPLOOP_", frozen=True, extra="ignore")

    home: Path = Field(default=PROJECT_DIR / ".shoploop", description="All state: landing zone, warehouse, stores.")
    project_dir: Path = PROJECT_DIR
    seed: int = 7
    # Simulator scale: items, users, days of traffic and search sessions a day (~13 events each).
    n_items: int = 5000
    n_users: int = 2000
    n_days: int = 14
    sessions_per_day: int = 600
    # Drift scenarios, "name@YYYY-MM-DD" comma-separated (see shoploop.data.simulator.DRIFTS).
    drift: str = ""
    # Keyed hash for user ids. Unset, a random key is made once per home and kept in it (never in git).
    pseudonym_key: SecretStr | None = None
    admin_token: SecretStr | None = None

    host: str = "127.0.0.1"
    service_port: int = 3000
    service_workers: int = 1  # service processes, each holding the model (bench/serving.py measures 1 and 2)
    # Replicas: separate `bentoml serve` servers on consecutive ports from service_port (what a second
    # machine would run), sharing the online store and the event stream.
    service_replicas: int = 1
    # Online evaluation: the share of searches a challenger is interleaved into with the champion
    # (shoploop.serving.interleaving); 0 promotes on the offline gate alone.
    interleave_share: float = Field(default=0.25, ge=0, le=1)
    # The event stream /feedback writes to: "embedded" (the landing zone's durable log, group commit) or a
    # Redis URL ("redis://127.0.0.1:6379/0": Redis Streams, for replicas on several machines), with its
    # keys under stream_prefix (see shoploop.features.stream and shoploop.features.redis_stream).
    event_stream: str = "embedded"
    # Feast's online store: "embedded" (SQLite in the home) or a Redis URL, where the features and the
    # real-time counters of this home live under the Feast project named stream_prefix.
    online_store: str = "embedded"
    # Keys of this home on Redis: the stream's key prefix and the Feast project (one Redis, many shops).
    stream_prefix: str = "shoploop"
    # "embedded": every engine in the home (DuckDB, SQLite, the local event log, `airflow standalone`).
    # "scale": the warehouse on Spark, the event stream and the online store on the Redis at redis_url, two
    # service replicas, Airflow on Celery (2 workers) with PostgreSQL metadata, wherever those settings are
    # not given one by one.
    profile: Literal["embedded", "scale"] = "embedded"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # The engine dbt builds the marts on: "duckdb" (in-process, the home's warehouse.duckdb) or "spark" (a
    # Spark standalone cluster: spark_master, or unset, one master and one worker this project starts on
    # spark_port; see shoploop.warehouse.spark). The same dbt project and the same parquet marts either way.
    warehouse_engine: Literal["duckdb", "spark"] = "duckdb"
    spark_master: str = ""
    # Where the cluster's executors reach this process's driver: unset, host (one machine); on a cluster
    # the pod's or machine's address (the driver then listens on every interface).
    spark_driver_host: str = ""
    spark_port: int = 7077
    spark_ui_port: int = 8091
    spark_worker_cores: int = Field(default=2, ge=1)
    spark_worker_memory: str = "2g"
    # Shuffle partitions of the Spark SQL dbt runs (Spark's 200 is for clusters; a few per core here).
    spark_shuffle_partitions: int = Field(default=4, ge=1)
    airflow_port: int = 8080
    # Airflow: 0 Celery workers runs `airflow standalone` (SQLite metadata in the home); N > 0 runs every
    # component as a process of its own with the CeleryExecutor and N workers, the broker on redis_url's
    # Redis (keys under stream_prefix) and the metadata on airflow_database (unset: the PostgreSQL on
    # this machine, a database named after stream_prefix; see shoploop.pipeline.orchestration).
    airflow_workers: int = Field(default=0, ge=0)
    airflow_database: str = ""
    evidently_port: int = 8000
    model_name: str = "shoploop-ranker"
    # Pin the served version (e.g. "shoploop-ranker:abc123"); unset, the champion serves.
    model_tag: str | None = None
    feature_service: str = "ranker_v1"
    # What trains the ranker and the encoder: 'auto' (whatever the data holds: judgments, search logs
    # or both), or 'judgments', 'logs', 'both' to insist (see shoploop.models.labels).
    train_labels: str = "auto"
    # Bounds on training time whatever the catalog: fine-tuning steps per epoch (a random sample of the
    # triplets past it) and the texts the compressed query encoder distils on (a random sample past it).
    finetune_max_steps: int = Field(default=120, ge=1)
    # A retraining continues from the champion's fine-tuned encoder for at most this many steps (it has
    # learnt the shop already; the new data moves it on); 0: every training starts from the base MiniLM.
    finetune_warm_steps: int = Field(default=40, ge=0)
    distil_max_texts: int = Field(default=6000, ge=64)
    # A retraining's student starts from the champion's distilled student for this many epochs (from the
    # teacher's own layers: 8); 0: always from the teacher's layers.
    distil_warm_epochs: int = Field(default=3, ge=0)
    # Where the loop's data comes from: 'simulator', or 'FORMAT:PATH' for a real dataset read in place
    # (`shoploop ingest` formats, e.g. 'generic:/data/shop' or 'homedepot:../shared/datasets/homedepot_search').
    source: str = "simulator"
    max_k: int = 100

    @model_validator(mode="before")
    @classmethod
    def profile_defaults(cls, data):
        """The scale profile's engines, for the settings not given one by one."""
        if isinstance(data, dict) and data.get("profile") == "scale":
            redis_url = data.get("redis_url") or cls.model_fields["redis_url"].default
            data = {"warehouse_engine": "spark", "event_stream": redis_url, "online_store": redis_url,
                    "service_replicas": 2, "airflow_workers": 2, **data}
        return data

    @field_validator("event_stream")
    @classmethod
    def known_stream(cls, value: str) -> str:
        if value != "embedded" and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"{value!r} is no event stream: 'embedded', or a Redis URL such as redis://127.0.0.1:6379/0")
        return value

    @field_validator("online_store")
    @classmethod
    def known_online_store(cls, value: str) -> str:
        if value != "embedded" and not value.startswith(("redis://", "rediss://")):
            raise ValueError(f"{value!r} is no online store: 'embedded', or a Redis URL such as redis://127.0.0.1:6379/0")
        return value

    @field_validator("stream_prefix")
    @classmethod
    def usable_prefix(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][\w-]*", value):
            raise ValueError(f"{value!r}: the Redis prefix names a Feast project too: letters, digits, '_' and '-', "
                             "starting with a letter or digit")
        return value

    @property
    def landing(self) -> Path:
        return self.home / "landing"

    @property
    def marts(self) -> Path:
        return self.home / "marts"

    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def feast_dir(self) -> Path:
        return self.home / "feast"

    @property
    def artifacts(self) -> Path:
        return self.home / "artifacts"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def base_vectors(self) -> Path:
        """The base MiniLM's vectors of the latest catalog text (models.encoder.base_vectors)."""
        return self.home / "cache" / "base-vectors.npz"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def bentoml_home(self) -> Path:
        return self.home / "bentoml"

    @property
    def evidently_workspace(self) -> Path:
        return self.home / "evidently"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def dbt_dir(self) -> Path:
        return self.project_dir / "dbt_project"

    @property
    def feature_repo(self) -> Path:
        return self.project_dir / "feature_repo"

    def _secret(self, configured: SecretStr | None, name: str, make) -> str:
        """A configured secret, else one generated once into the home (0600, never in git)."""
        if configured is not None:
            return configured.get_secret_value()
        path = self.home / "secrets" / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(make())
            path.chmod(0o600)
        return path.read_text().strip()

    @cached_property
    def user_key(self) -> str:
        """The key of the keyed hash that pseudonymises user ids."""
        return self._secret(self.pseudonym_key, "pseudonym_key", lambda: secrets.token_hex(32))

    @property
    def airflow_database_url(self) -> str:
        """Airflow's metadata database when it runs on Celery (SQLAlchemy URL)."""
        name = self.stream_prefix.replace("-", "_") + "_airflow"
        return self.airflow_database or f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"

    @cached_property
    def airflow_jwt_secret(self) -> str:
        """The one JWT secret every Airflow process of this home signs and checks tokens with."""
        return self._secret(None, "airflow_jwt_secret", lambda: secrets.token_urlsafe(32))

    @cached_property
    def admin_secret(self) -> str:
        """The bearer token the service's admin endpoints require."""
        return self._secret(self.admin_token, "admin_token", lambda: secrets.token_urlsafe(24))

    def tool_env(self) -> dict[str, str]:
        """Environment for the tools we shell out to (dbt, feast, bentoml, airflow): every setting this
        process was given that differs from its default (the shop's scale, its drift, the ports...), so a
        service or an Airflow task works on the same shop; secrets travel through the home's files."""
        given = {f"SHOPLOOP_{name.upper()}": str(value) for name, value in self.model_dump().items()
                 if value != type(self).model_fields[name].default and value is not None
                 and isinstance(value, (str, int, float))}
        return {
            **given,
            "SHOPLOOP_HOME": str(self.home),
            # The DAG's steps land and train from what the demo was given.
            "SHOPLOOP_SOURCE": self.source,
            "SHOPLOOP_TRAIN_LABELS": self.train_labels,
            "SHOPLOOP_PSEUDONYM_KEY": self.user_key,
            "BENTOML_HOME": str(self.bentoml_home),
            **QUIET_TOOLS,
        }


def get_settings() -> Settings:
    return Settings()
