"""infra/: the Kubernetes manifests validate against the API's own schemas (offline, kubernetes-validate's
bundled ones), and they run the scale profile the code knows (the settings they set mean what they say)."""

from pathlib import Path

import pytest
import yaml

from shoploop.settings import Settings

INFRA = Path(__file__).resolve().parents[2] / "infra"
KUBERNETES = "1.33.0"  # the oldest minor still supported upstream when written


def _documents() -> list[tuple[str, dict]]:
    return [(path.name, doc) for path in sorted((INFRA / "k8s").glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def _find(kind: str, name: str) -> dict:
    return next(doc for _, doc in _documents() if doc["kind"] == kind and doc["metadata"]["name"] == name)


@pytest.mark.parametrize("source,document", _documents(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_every_manifest_is_valid_kubernetes(source, document):
    import kubernetes_validate

    # strict: a misspelt or misplaced field fails, as `kubectl apply --validate=strict` would
    kubernetes_validate.validate(document, KUBERNETES, strict=True)


def test_the_service_runs_the_scale_profile_on_the_manifests_redis_with_its_replicas():
    settings_map = _find("ConfigMap", "shoploop-settings")["data"]
    given = {key.removeprefix("SHOPLOOP_").lower(): value for key, value in settings_map.items() if key.startswith("SHOPLOOP_")}
    settings = Settings(**given)
    redis_service = _find("Service", "shoploop-redis")
    assert settings.profile == "scale"
    assert settings.event_stream == settings.online_store == f"redis://{redis_service['metadata']['name']}:6379/0"
    deployment = _find("Deployment", "shoploop-service")
    assert deployment["spec"]["replicas"] == settings.service_replicas == 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    # bentoml serve of the project's service, on the home every replica and Airflow worker shares
    assert container["command"][:3] == ["bentoml", "serve", "service:Shoploop"]
    assert (INFRA.parent / "services" / "service.py").exists()
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert settings_map["SHOPLOOP_HOME"] in mounts
    claim = _find("PersistentVolumeClaim", "shoploop-home")
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
    # secrets come from a Secret, never inline
    secret_env = {e["name"] for e in container["env"] if "valueFrom" in e}
    assert {"SHOPLOOP_ADMIN_TOKEN", "SHOPLOOP_PSEUDONYM_KEY"} <= secret_env
    assert not any(key in settings_map for key in ("SHOPLOOP_ADMIN_TOKEN", "SHOPLOOP_PSEUDONYM_KEY"))


def test_airflow_values_use_celery_with_the_external_postgres_and_redis_and_the_same_profile():
    values = yaml.safe_load((INFRA / "airflow-values.yaml").read_text())
    assert values["executor"] == "CeleryExecutor" and values["workers"]["replicas"] == 2
    assert values["postgresql"]["enabled"] is False and values["redis"]["enabled"] is False
    assert {"metadataSecretName", "brokerUrlSecretName"} <= set(values["data"]) and values["jwtSecretName"]
    env = {e["name"]: e["value"] for e in values["env"]}
    service = _find("ConfigMap", "shoploop-settings")["data"]
    for key in ("SHOPLOOP_PROFILE", "SHOPLOOP_REDIS_URL", "SHOPLOOP_HOME"):
        assert env[key] == service[key]  # the workers train into the home the service replicas follow
    mounts = {m["mountPath"]: m["name"] for m in values["workers"]["extraVolumeMounts"]}
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in values["workers"]["extraVolumes"]}
    assert claims[mounts[env["SHOPLOOP_HOME"]]] == "shoploop-home"


def test_the_warehouse_runs_on_the_manifests_spark_cluster_over_the_shared_home():
    settings_map = _find("ConfigMap", "shoploop-settings")["data"]
    given = {key.removeprefix("SHOPLOOP_").lower(): value for key, value in settings_map.items() if key.startswith("SHOPLOOP_")}
    settings = Settings(**given)
    master = _find("Service", "shoploop-spark-master")
    port = next(p["port"] for p in master["spec"]["ports"] if p["name"] == "spark")
    assert settings.warehouse_engine == "spark" and settings.spark_master == f"spark://{master['metadata']['name']}:{port}"
    worker = _find("Deployment", "shoploop-spark-worker")["spec"]["template"]["spec"]
    container = worker["containers"][0]
    assert container["command"][:3] == ["spark-class", "org.apache.spark.deploy.worker.Worker", settings.spark_master]
    # the executors write the marts where the service, Feast and the trainer read them
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in worker["volumes"]}
    assert claims[mounts[settings_map["SHOPLOOP_HOME"]]] == "shoploop-home"
    # the driver (a dbt build in an Airflow worker's task) reaches the same master and says where it is
    values = yaml.safe_load((INFRA / "airflow-values.yaml").read_text())
    assert {e["name"]: e["value"] for e in values["env"]}["SHOPLOOP_SPARK_MASTER"] == settings.spark_master
    extra = yaml.safe_load(values["extraEnv"])
    assert extra == [{"name": "SHOPLOOP_SPARK_DRIVER_HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    assert "openjdk-17" in (INFRA / "Dockerfile").read_text()


def test_the_scale_profile_fills_in_only_what_is_not_given_and_bad_values_are_refused():
    from pydantic import ValidationError

    scale = Settings(profile="scale", redis_url="redis://cache:6380/2")
    assert (scale.event_stream, scale.online_store) == ("redis://cache:6380/2",) * 2
    assert (scale.service_replicas, scale.airflow_workers, scale.warehouse_engine) == (2, 2, "spark")
    mixed = Settings(profile="scale", online_store="embedded", airflow_workers=0)
    assert mixed.online_store == "embedded" and mixed.airflow_workers == 0 and mixed.event_stream.startswith("redis://")
    embedded = Settings()
    assert (embedded.event_stream, embedded.online_store, embedded.airflow_workers) == ("embedded", "embedded", 0)
    assert embedded.warehouse_engine == "duckdb"
    assert Settings(stream_prefix="shop-7").airflow_database_url.endswith("/shop_7_airflow")
    for bad in ({"online_store": "memcached://x"}, {"stream_prefix": "shop:7"}, {"profile": "cluster"}):
        with pytest.raises(ValidationError):
            Settings(**bad)
