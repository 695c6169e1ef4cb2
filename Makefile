# The two commands a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin

export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER ?= $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER ?= $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES ?= False
export AIRFLOW__CORE__EXECUTOR ?= LocalExecutor
export GX_ANALYTICS_ENABLED ?= false
export NO_COLOR ?= 1

DEMO_DIR ?= $(CURDIR)/demo-data
DEMO_DATE ?= 2020-01-15
export AIRFLOW_VAR_ADMISSION_DATA_DIR ?= $(DEMO_DIR)
export AIRFLOW_VAR_ADMISSION_OUTPUT_DIR ?= $(CURDIR)/output
# The demo region's official websites are served on 127.0.0.1:$(DEMO_SITES_PORT) while `admission day` and
# `make airflow` run (admission/tools/demo_sites.py); the website check may fetch that one loopback address and no other.
DEMO_SITES_PORT ?= 8399
export ADMISSION_DEMO_SITES ?= $(DEMO_SITES_PORT)
export AIRFLOW_VAR_ADMISSION_SITE_CHECK ?= {"allow_hosts": ["127.0.0.1:$(DEMO_SITES_PORT)"]}
# The digests' links to the campaign page point at the Airflow that `make airflow` starts (README «Who sees what»).
AIRFLOW_PORT ?= 8080
export AIRFLOW_VAR_ADMISSION_PAGE_URL ?= http://127.0.0.1:$(AIRFLOW_PORT)

.PHONY: install test test-fast test-distributed lint day demo demo-data airflow migrate clean intake

install: $(BIN)/.installed

$(BIN)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@$(PYTHON) deploy/check_python.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $@

migrate: install
	@mkdir -p $(AIRFLOW_HOME)
	@$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/migrate.log 2>&1 || (cat $(AIRFLOW_HOME)/migrate.log; exit 1)

lint: install
	$(BIN)/ruff check dags plugins include tests

test: install
	$(BIN)/ruff check dags plugins include tests
	$(BIN)/python -m pytest -q

# The inner loop: the package and the DAG policy, without Airflow runs (dag.test), the Celery cluster or
# the whole-day and generator tests (marked slow); about a minute. `make test` runs everything.
test-fast: install
	$(BIN)/ruff check dags plugins include tests
	$(BIN)/python -m pytest -q -m "not airflow and not services and not slow and not browser"

# The production path without Docker: API server, scheduler, DAG processor and two Celery workers
# on the local PostgreSQL and Redis (fresh databases), an SMTP server on loopback. Part of `make test` too.
test-distributed: install
	$(BIN)/python -m pytest -q tests/deploy/test_distributed.py

demo-data: install
	$(BIN)/admission demo-data $(DEMO_DIR) --sites http://127.0.0.1:$(DEMO_SITES_PORT)

# make day DATE=YYYY-MM-DD: every stage DAG of every plan covering DATE, through Airflow (dag.test).
day: migrate
	@test -n "$(DATE)" || (echo "usage: make day DATE=YYYY-MM-DD"; exit 2)
	$(BIN)/admission day $(DATE)

# make intake [DATE=YYYY-MM-DD]: read the mailbox (connection admission_imap) once, as the intake DAG does every
# 15 minutes of working hours; answers judged on DATE (default today). README «Forms and the mailbox intake».
intake: migrate
	$(BIN)/admission intake $(DATE)

# Three campaign days of the demo region ending on DEMO_DATE, the data catching up between them (DEMO_DAYS=1 for one).
DEMO_DAYS ?= 3
demo: migrate
	$(BIN)/admission demo $(DEMO_DIR) --until $(DEMO_DATE) --days $(DEMO_DAYS) --sites http://127.0.0.1:$(DEMO_SITES_PORT)

# The Airflow UI with the project's DAGs and the campaign page, every component on 127.0.0.1; prints the URL and
# the admin password (admission/adapter/standalone.py: what `airflow standalone` does, without its log servers
# on every interface). AIRFLOW_PORT=8081 make airflow for another port.
airflow: migrate
	$(BIN)/python -m admission.adapter.standalone

clean:
	rm -rf $(AIRFLOW_HOME) output demo-data .pytest_cache
