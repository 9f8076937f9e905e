# Everything a user types. `make demo` and `make test` set up first when needed.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
AFVENV := .venv-airflow
export BENTOML_DO_NOT_TRACK := True
export DBT_SEND_ANONYMOUS_USAGE_STATS := False
export DO_NOT_TRACK := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# Bytecode is written as each module is first imported, not compiled at install for every file of
# every wheel (most never run: transformers' hundreds of model families): `make setup` took 250 s
# with pip's compile step, 72 s for both venvs without. Python must then be allowed to write it,
# even where the machine's environment says PYTHONDONTWRITEBYTECODE (each process would recompile).
export PYTHONDONTWRITEBYTECODE :=

.PHONY: setup demo loop test stop lock bench clean

setup: ## build both venvs from the locks (no-op when current), the two at once
	@$(MAKE) --no-print-directory -j2 $(VENV)/.installed $(AFVENV)/.installed

# --no-deps: the lock is the whole, already-resolved set, so installing it is reproducible.
$(VENV)/.installed: requirements/ml.lock pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --no-compile --no-deps -r requirements/ml.lock
	$(VENV)/bin/pip install -q --no-compile --no-deps --no-build-isolation -e . 2>/dev/null || $(VENV)/bin/pip install -q --no-compile --no-deps -e .
	$(VENV)/bin/pip check
	touch $@

$(AFVENV)/.installed: requirements/airflow.lock
	test -x $(AFVENV)/bin/python || $(PY) -m venv $(AFVENV)
	$(AFVENV)/bin/pip install -q --no-compile --no-deps -r requirements/airflow.lock
	$(AFVENV)/bin/pip check
	touch $@

demo: setup ## the main job: simulate -> dbt -> Feast -> train -> evaluate -> register -> serve, UIs left running
	$(VENV)/bin/shoploop demo

loop: setup ## the closed loop, shown on a small shop of its own: drift, Airflow retrains, interleaving promotes, hot swap; report with plots
	$(VENV)/bin/shoploop loop

# The DAG tests (the Airflow venv), then the scale profile's (Airflow on Celery, dbt on Spark, Feast on
# Spark and Redis), run beside the rest, their report printed after it (measured: the DAG tests alone 248 s,
# 61% of 2 cores; the service tests 65%). The scale tests are not idle beside it: under them the torchrun
# test took 281-381 s (87 s before) and the compression test 174-256 s (55 s); .ci/run took 1,599 s in all.
# While both train, each takes one torch thread: two processes of 2 threads each on 2 cores ran a MiniLM
# training step in 2.7-2.85 s, of 1 thread each in 1.34-1.47 s (alone, 2 threads: 0.88 s). The main suite
# goes back to all threads once the side ends (SHOPLOOP_TEST_BESIDE_PID, tests/conftest.py).
test: setup ## every test: library, data, model, service over HTTP, scale profile, DAG integrity and an airflow dags test
	@side_log=$$(mktemp); ( rc=0; export OMP_NUM_THREADS=1; echo "== tests/dags (Airflow venv) =="; \
	  $(AFVENV)/bin/pytest tests/dags --durations=5 || rc=1; echo "== tests/scale (scale profile) =="; \
	  $(VENV)/bin/pytest tests/scale --durations=5 || rc=1; exit $$rc ) > $$side_log 2>&1 & side=$$!; \
	SHOPLOOP_TEST_BESIDE_PID=$$side $(VENV)/bin/pytest tests --ignore=tests/dags --ignore=tests/scale --durations=20; main=$$?; \
	wait $$side; side_rc=$$?; echo "== run beside the tests above: tests/dags, then tests/scale: exit $$side_rc =="; \
	cat $$side_log; rm -f $$side_log; test $$main -eq 0 && test $$side_rc -eq 0

stop: ## stop everything `make demo` started (by process group)
	@if [ -x $(VENV)/bin/shoploop ]; then $(VENV)/bin/shoploop stop; fi

bench: setup ## benchmarks: search quality + compression, logs-only vs judgments, real relevance (Home Depot), recommendation on real data, the data layer's figures, drift detection, the closed loop, serving speed and the highest steady search rate, the online store embedded vs scale profile (Redis), the warehouse on DuckDB vs Spark at 200,000 items, training in 1 vs 2 processes, serving 1 vs 2 replicas and interleaving power (after `make demo`)
	$(VENV)/bin/python bench/search_quality.py
	$(VENV)/bin/python bench/label_sources.py
	$(VENV)/bin/python bench/relevance_quality.py
	$(VENV)/bin/python bench/recommend_quality.py
	$(VENV)/bin/python bench/data_quality.py
	$(VENV)/bin/python bench/drift_detection.py
	$(VENV)/bin/python bench/loop.py
	$(VENV)/bin/python bench/serving.py
	$(VENV)/bin/python bench/soak.py --find-rate
	$(VENV)/bin/python bench/scale_profile.py
	$(VENV)/bin/python bench/scale_warehouse.py
	$(VENV)/bin/python bench/scale_training.py
	$(VENV)/bin/python bench/scale_serving.py
	$(VENV)/bin/python bench/interleaving.py
	$(VENV)/bin/python bench/readme_results.py

lock: ## re-resolve the inputs into the locks (needs the package index)
	rm -rf /tmp/shoploop-lock && $(PY) -m venv /tmp/shoploop-lock/ml && $(PY) -m venv /tmp/shoploop-lock/af
	/tmp/shoploop-lock/ml/bin/pip install -r requirements/ml.in
	/tmp/shoploop-lock/af/bin/pip install -r requirements/airflow.in
	(echo "# Compiled from requirements/ml.in by 'make lock' (pip freeze of a fresh resolve). Installed with --no-deps."; /tmp/shoploop-lock/ml/bin/pip freeze --all | grep -v '^pip==' | sort -f) > requirements/ml.lock
	(echo "# Compiled from requirements/airflow.in by 'make lock' (pip freeze of a fresh resolve). Installed with --no-deps."; /tmp/shoploop-lock/af/bin/pip freeze --all | grep -v '^pip==' | sort -f) > requirements/airflow.lock

clean: stop
	rm -rf .shoploop
