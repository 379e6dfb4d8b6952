# Amana: every target installs what it needs on a fresh machine (uv through pip, the Python
# environment through uv, the Kafka jars through mvn, helm through go install).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_FOR_UV ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON_FOR_UV) -m uv")
RUN := $(UV) run --frozen
CATALOG := $(RUN) python -m amana_common.catalog
PYTEST_ARGS ?=
# Arguments of one benchmark run by hand, at a smaller size: make bench-payroll BENCH_ARGS="--households 10000"
BENCH_ARGS ?=
# The chart renders only with a way to verify tokens: an example identity provider and Secret.
HELM_EXAMPLE_VALUES := --set global.jwksUrl=https://idp.example.org/certs --set secrets.existingSecret=amana-secrets

.PHONY: help uv sync infra run stop status demo test test-unit test-integration test-faults test-contract lint format contracts catalog service helm-lint logs bench bench-gateway bench-disbursement bench-registry-search bench-registry-import bench-registry-dedupe bench-outbox load-test bench-analytics bench-payroll bench-e2e

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

uv: ## install uv with pip when it is missing
	@command -v uv >/dev/null 2>&1 || $(PYTHON_FOR_UV) -m uv --version >/dev/null 2>&1 \
		|| $(PYTHON_FOR_UV) -m pip install --quiet --disable-pip-version-check uv \
		|| $(PYTHON_FOR_UV) -m pip install --quiet --disable-pip-version-check --break-system-packages uv

sync: uv ## create or update .venv from uv.lock
	@$(UV) sync --frozen --all-packages --all-extras --quiet

infra: sync ## start (or reuse) PostgreSQL and Kafka; external ones via AMANA_DATABASE_URL / AMANA_KAFKA_BOOTSTRAP
	@deploy/local/pg.sh start
	@deploy/local/kafka.sh start

run: infra ## start PostgreSQL, Kafka and every service; print the gateway address
	@deploy/local/services.sh start
	@echo
	@echo "Amana is running."
	@echo "  gateway:      http://127.0.0.1:8000        API docs: http://127.0.0.1:8000/docs"
	@echo "  services:     $$($(CATALOG) summary) (call them through the gateway)"
	@echo "  PSP sandbox:  http://127.0.0.1:8190/docs (a simulated provider, not behind the gateway)"
	@echo "  PostgreSQL:   $$(deploy/local/pg.sh url)"
	@echo "  Kafka:        $$(deploy/local/kafka.sh bootstrap)"
	@echo
	@echo "  Development clients, one per role: <role>-dev / <role>-dev-secret for"
	@echo "  admin registrar programme-manager payroll-approver finance provider auditor analyst"
	@echo "  e.g. TOKEN=\$$(curl -s http://127.0.0.1:8000/auth/token -d grant_type=client_credentials \\"
	@echo "         -d client_id=registrar-dev -d client_secret=registrar-dev-secret | python3 -c \"import json,sys; print(json.load(sys.stdin)['access_token'])\")"
	@echo "       curl -H \"Authorization: Bearer \$$TOKEN\" http://127.0.0.1:8000/registry/households"
	@echo
	@echo "  watch events: deploy/local/kafka.sh console-consumer registry.events"
	@echo "  logs:         make logs      stop: make stop"

stop: ## stop the services, Kafka and PostgreSQL (data is kept in .local/)
	@deploy/local/services.sh stop
	@deploy/local/kafka.sh stop
	@deploy/local/pg.sh stop

demo: sync ## the whole cycle against the stack `make run` started (DEMO_ARGS="--households 2000 --seed 3")
	@$(RUN) python -m demo --summary "$${AMANA_LOCAL_DIR:-.local}/demo/summary.json" $(DEMO_ARGS)

status: ## what is running
	@deploy/local/services.sh status; deploy/local/kafka.sh status || true; deploy/local/pg.sh status || true

logs: ## follow the services' logs
	@tail -F .local/logs/*.log

test: sync ## unit, service, integration and deployment tests against real PostgreSQL and Kafka
	@$(RUN) pytest $(PYTEST_ARGS)

test-unit: sync ## everything but the cross-service integration tests
	@$(RUN) pytest -m "not integration" $(PYTEST_ARGS)

test-integration: sync ## only the cross-service integration tests
	@$(RUN) pytest tests/integration $(PYTEST_ARGS)

test-faults: sync ## the whole fault suite: kill -9, broker and PostgreSQL restarts, PSP faults, racing workers
	@$(RUN) pytest tests/faults -m faults $(PYTEST_ARGS)

test-contract: sync ## only the API contract tests (schemathesis over every service and the gateway)
	@$(RUN) pytest tests/contract $(PYTEST_ARGS)

lint: sync ## ruff (lint + format check) and strict mypy
	@$(RUN) ruff check .
	@$(RUN) ruff format --check .
	@$(RUN) mypy $$($(CATALOG) mypy-packages)
	@$(RUN) mypy tests libs/common/tests demo $(wildcard services/*/tests)

format: sync ## apply ruff's fixes and formatting
	@$(RUN) ruff check --fix .
	@$(RUN) ruff format .

contracts: sync ## regenerate contracts/schemas and contracts/asyncapi.yaml from the models
	@$(RUN) python -m amana_contracts.generate

catalog: sync ## regenerate compose, its database and env files and the Helm components from services/catalog.toml
	@$(CATALOG) generate

service: sync ## a new service: make service NAME=payroll PORT=8103 [DESCRIPTION="programmes, payrolls"]
	@test -n "$(NAME)" -a -n "$(PORT)" || { echo "usage: make service NAME=<name> PORT=<port>" >&2; exit 2; }
	@$(CATALOG) new "$(NAME)" --port "$(PORT)" $(if $(DESCRIPTION),--description "$(DESCRIPTION)")
	@$(UV) lock --quiet && $(UV) sync --frozen --all-packages --all-extras --quiet

helm-lint: sync ## helm lint, template and validate the chart against the Kubernetes schemas
	@HELM=$$(deploy/tools/ensure-helm.sh) && \
	$$HELM lint --strict deploy/helm/amana $(HELM_EXAMPLE_VALUES) && \
	$$HELM lint --strict deploy/helm/amana -f deploy/helm/amana/values-production.yaml && \
	for values in "$(HELM_EXAMPLE_VALUES)" "-f deploy/helm/amana/values-production.yaml"; do \
		$$HELM template amana deploy/helm/amana --namespace amana $$values \
			| $(RUN) kubernetes-validate --strict --quiet -k 1.34 - || exit 1; \
	done && \
	echo "helm: chart lints, renders and validates against the Kubernetes 1.34 schemas"

BENCH ?=
bench: infra ## every bench-* target in turn, then one table of figures and bars (BENCH="outbox gateway" for some); a full run writes it into bench/README.md
	@$(RUN) python bench/run.py $(BENCH)

bench-gateway: infra ## gateway p95 overhead over a direct call at 500 requests/s (bar: 5 ms)
	@$(RUN) python bench/gateway_overhead.py --seconds 20

bench-disbursement: infra ## 1M-line payroll to batches (<= 120 s), batch webhooks (>= 5,000 results/s), single webhooks (p95 <= 100 ms at 200/s)
	@$(RUN) python bench/disbursement_throughput.py

bench-registry-search: infra ## registry search by name on 1,000,000 members (bar: p95 100 ms)
	@$(RUN) python bench/registry_search.py --members 1000000

bench-registry-import: infra ## FHIR NDJSON import of 100,000 households with duplicate checks on (bar: >= 2,000 resources/s)
	@$(RUN) python bench/registry_import.py --households 100000

bench-registry-dedupe: infra ## duplicate detection on 1,000,000 members: batch (<= 5 min), one check (p95 100 ms), precision >= 0.95 and recall >= 0.90
	@$(RUN) python bench/registry_dedupe.py --members 1000000

bench-outbox: infra ## outbox -> Kafka: 100,000 events (>= 5,000/s, a key each and 8 keys), relay lag at 1,000 events/s for 30 s (p99 <= 1 s)
	@$(RUN) python bench/outbox_relay.py

load-test: sync ## mixed load through the gateway of `make run`'s stack: 100 users, 30 s warm-up + 2 min (fails on any 5xx or RSS growth)
	@$(RUN) python bench/load_test.py

bench-analytics: infra ## analytics: ingest 1M payment events from Kafka (<= 120 s), every report over them (<= 1 s)
	@$(RUN) python bench/analytics_at_scale.py

bench-payroll: infra ## 1M households: generation (<= 60 s, <= 3x a bare INSERT ... SELECT), simulation (<= 5 s), PayrollApproved to Kafka (<= 60 s), projection catch-up (<= 3 min)
	@$(RUN) python bench/payroll_at_scale.py $(BENCH_ARGS)

bench-e2e: sync ## against `make run`'s stack: 100,000 households, CSV import to reconciled payroll and analytics, per-stage times (<= 5 min; BENCH_ARGS="--households 10000")
	@$(RUN) python bench/e2e.py $(BENCH_ARGS)
