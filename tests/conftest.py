"""Shared fixtures: a small simulated shop built once per session through the real tools."""

from __future__ import annotations

import os
from datetime import date

import pytest

RUN_DATE = date(2026, 11, 29)
# Small enough to build in about two minutes on 2 cores, big enough for every phenomenon to show. The
# encoder's fine-tuning is the build's cost (5.7 s a step on one thread): 10 steps, not the 27 of a whole
# epoch, are enough for the tests of the trained version, and the student distils on 400 texts of the 702
# (its nDCG@10 loss -0.06%, promoted; distillation 19 s alone); their quality at full length is the benchmarks'.
SMALL_SHOP = {"SHOPLOOP_N_ITEMS": "400", "SHOPLOOP_N_USERS": "300", "SHOPLOOP_N_DAYS": "4",
              "SHOPLOOP_SESSIONS_PER_DAY": "200", "SHOPLOOP_SERVICE_PORT": "3091", "SHOPLOOP_FINETUNE_MAX_STEPS": "10",
              "SHOPLOOP_DISTIL_MAX_TEXTS": "400"}


def need(condition, reason: str) -> None:
    """Skip a test whose server or tool is missing on a user's machine; in CI (CI=true, set by .ci/run),
    where .ci/run installs and starts everything, the same absence fails it."""
    if not condition:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


def redis_for(purpose: str) -> str:
    """The test Redis (SHOPLOOP_TEST_REDIS, default 127.0.0.1:6379/0), or skip (fail in CI) saying what needs it."""
    import redis

    url = os.environ.get("SHOPLOOP_TEST_REDIS", "redis://127.0.0.1:6379/0")
    try:
        up = redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError:
        up = False
    need(up, f"no Redis server at {url} (set SHOPLOOP_TEST_REDIS): {purpose}")
    return url


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie nobody has reaped yet does not)."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


_ALL_THREADS: list[int] = []


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """`make test` runs the DAG tests beside this suite (SHOPLOOP_TEST_BESIDE_PID): while they run, torch
    here takes one thread, as they do (2 + 2 threads on 2 cores doubled a training step's time); all of
    them again once they end."""
    beside = os.environ.get("SHOPLOOP_TEST_BESIDE_PID")
    if not beside:
        return
    import torch

    if not _ALL_THREADS:
        _ALL_THREADS.append(torch.get_num_threads())
    torch.set_num_threads(1 if _running(int(beside)) else _ALL_THREADS[0])


@pytest.fixture(scope="session")
def shop_env(tmp_path_factory):
    """Environment of a throwaway home with a small shop; restored afterwards."""
    saved = dict(os.environ)
    env = {**SMALL_SHOP, "SHOPLOOP_HOME": str(tmp_path_factory.mktemp("home")),
           "SHOPLOOP_PSEUDONYM_KEY": "test-key-0123456789abcdef", "HF_HUB_OFFLINE": "1",
           "BENTOML_DO_NOT_TRACK": "True", "DO_NOT_TRACK": "1", "DBT_SEND_ANONYMOUS_USAGE_STATS": "False"}
    os.environ.update(env)
    yield env
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def settings(shop_env):
    from shoploop.settings import Settings

    return Settings()


@pytest.fixture(scope="session")
def built(settings):
    """The loop up to a registered champion, as the demo runs it: simulate, dbt build, Feast, the
    untrained first answer as champion, then train, evaluate (against it) and register."""
    from shoploop.pipeline import steps

    steps.simulate(settings, RUN_DATE)
    steps.transform(settings, RUN_DATE)
    steps.feature_store(settings, RUN_DATE)
    first = steps.first_answer(settings, RUN_DATE)
    train_report = steps.train(settings, RUN_DATE)
    metrics = steps.evaluate(settings, RUN_DATE)
    registered = steps.register(settings, RUN_DATE)
    return {"settings": settings, "first": first, "train": train_report, "metrics": metrics, "register": registered}


@pytest.fixture(scope="session")
def engine(built):
    from shoploop.models.evaluate import offline_engine
    from shoploop.pipeline import steps

    engine, _ = offline_engine(built["settings"], steps.artifacts(built["settings"], RUN_DATE) / "bundle")
    return engine
