# The one entry point. Every target installs what it needs into .venv (and .cache/tools for the
# template checkers, whose pinned boto3 differs from ours) on a fresh machine with Python 3.11+.
# Another Python: make PYTHON=python3.12 demo (a .venv of another version is then rebuilt).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TOOLS := .cache/tools
STAMP := $(VENV)/.installed
TOOLS_STAMP := $(TOOLS)/.installed
CHECKOV := .cache/checkov
CHECKOV_STAMP := $(CHECKOV)/.installed
DOCS_UI := .cache/docs-ui
DOCS_UI_STAMP := $(DOCS_UI)/.installed
SAM := SAM_CLI_TELEMETRY=0 $(TOOLS)/bin/sam
ENV ?= default

.PHONY: install tools demo dev test lint format template-check build-check unit migrate rollback bench build deploy smoke rollback-deploy clean openapi

# Before anything: a .venv whose Python is gone, or of another version than an explicit PYTHON
# asks for, is removed (and rebuilt below) instead of failing every target the same way.
ifeq ($(filter clean,$(MAKECMDGOALS)),)
VENV_NOTE := $(shell command -v $(PYTHON) >/dev/null 2>&1 || { echo "PYTHON=$(PYTHON) is not \
	installed here; pick one, e.g. make PYTHON=python3.12 demo"; exit 3; }; \
	$(PYTHON) devstack/venv_check.py "$(VENV)" "$(PYTHON)" "$(origin PYTHON)" 2>&1)
ifneq ($(.SHELLSTATUS),0)
$(error $(VENV_NOTE))
endif
ifneq ($(VENV_NOTE),)
$(info $(VENV_NOTE))
endif
endif

# Not editable: the project's own code runs from the repository root and is never installed
# (pyproject.toml: packages = []); only its dependencies are.
$(STAMP): pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q ".[dev]"
	touch $(STAMP)

# The API reference's renderer for /docs (devstack/api_docs.py): Swagger UI's static files from
# a pinned, hash-checked PyPI package, unpacked without its dependencies (never imported).
$(DOCS_UI_STAMP): docs-ui-requirements.txt $(STAMP)
	rm -rf $(DOCS_UI)
	$(PY) -m pip install -q --no-deps --require-hashes --target $(DOCS_UI) \
		-r docs-ui-requirements.txt
	touch $(DOCS_UI_STAMP)

install: $(STAMP) $(DOCS_UI_STAMP)

$(TOOLS_STAMP): tools-requirements.txt
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q --upgrade pip
	$(TOOLS)/bin/pip install -q -r tools-requirements.txt
	touch $(TOOLS_STAMP)

tools: $(TOOLS_STAMP)

# checkov pins an older boto3 than aws-sam-cli: a third environment of its own.
$(CHECKOV_STAMP): checkov-requirements.txt
	$(PYTHON) -m venv $(CHECKOV)
	$(CHECKOV)/bin/pip install -q --upgrade pip
	$(CHECKOV)/bin/pip install -q -r checkov-requirements.txt
	touch $(CHECKOV_STAMP)

demo: $(STAMP)
	$(PY) -m devstack.demo

# CORS_ORIGIN=http://localhost:5173 make dev: your frontend's origin (docs/LOCAL_DEV.md).
dev: $(STAMP) $(DOCS_UI_STAMP)
	$(PY) -m devstack.dev

# docs/openapi.json from the code (devstack/openapi.py); commit it with the change.
openapi: $(STAMP)
	$(PY) -m devstack.openapi

# The browser end-to-end tests alone (also part of `make test`). They drive Debian's Chromium
# at /usr/bin/chromium (apt-get install chromium), never a downloaded browser, and are skipped
# when it is missing. Screenshots of failures land in test-results/.
.PHONY: e2e test-pooler pooler-check
e2e: $(STAMP) $(DOCS_UI_STAMP)
	$(VENV)/bin/pytest -q tests/e2e

lint: $(STAMP)
	$(VENV)/bin/ruff check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format shared functions devstack

# cfn-lint with its informational rules too (I3011: a stateful resource without Retain fails).
# checkov reads the template as written and as the SAM transform leaves it (Globals applied to
# each function; the roles, versions and deployment groups SAM writes).
template-check: $(TOOLS_STAMP) $(CHECKOV_STAMP) $(STAMP)
	AWS_DEFAULT_REGION=us-east-1 $(TOOLS)/bin/cfn-lint --include-checks I \
		--non-zero-exit-code informational template.yaml
	AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x \
		$(SAM) validate --lint --template template.yaml
	$(CHECKOV)/bin/checkov -f template.yaml --framework cloudformation --compact --quiet \
		--skip-download --config-file .checkov.yaml
	AWS_DEFAULT_REGION=us-east-1 PYTHONPATH=. $(TOOLS)/bin/python -m devstack.sam_transform \
		template.yaml .aws-sam/transformed.json
	$(CHECKOV)/bin/checkov -f .aws-sam/transformed.json --framework cloudformation --compact \
		--quiet --skip-download --config-file .checkov.yaml
	$(MAKE) --no-print-directory build-check

# `sam build` for arm64 needs the runtime's interpreter (python3.12) on PATH; without Docker it
# fetches Lambda-compatible (manylinux aarch64) wheels itself. A python3.12 on PATH, or one that
# pyenv keeps (this project's dev machines run 3.11), is used. Where there is none at all, the
# packaging question is still answered: every runtime dependency must resolve to wheels for
# Lambda's arm64 Python 3.12 (Amazon Linux 2023, glibc 2.34: manylinux_2_28 qualifies).
PY312 := $(firstword $(shell python3.12 -c 'import sys; print(sys.executable)' 2>/dev/null) \
	$(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12))
build-check: $(TOOLS_STAMP) $(STAMP)
	@if [ -n "$(PY312)" ]; then \
		echo "sam build with $(PY312)"; \
		PATH="$(dir $(PY312)):$$PATH" AWS_DEFAULT_REGION=us-east-1 $(SAM) build --template template.yaml; \
	else \
		echo "no python3.12: checking arm64/cp312 wheels for requirements.txt instead of sam build"; \
		rm -rf .aws-sam/wheel-check && $(PY) -m pip download -q --disable-pip-version-check \
			--only-binary=:all: --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 --python-version 3.12 \
			--implementation cp -r requirements.txt -d .aws-sam/wheel-check && \
		echo "arm64 python3.12 wheels resolved for every runtime dependency"; \
	fi

unit: $(STAMP) $(DOCS_UI_STAMP)
	$(VENV)/bin/pytest -q

# The whole suite through PgBouncer in transaction mode, the local stand-in for RDS Proxy's
# multiplexing (devstack/pgbouncer.py; apt-get install pgbouncer). About as long as `unit`.
test-pooler: $(STAMP) $(DOCS_UI_STAMP)
	DB_POOLER=pgbouncer $(VENV)/bin/pytest -q

# What `make test` runs through PgBouncer: the database layer's contract with a transaction
# pooler (seconds; the whole suite twice would not fit CI's 10 minutes). Skipped, and said so,
# where PgBouncer is not installed (.ci/run installs it).
pooler-check: $(STAMP)
	@if command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]; then \
		DB_POOLER=pgbouncer $(VENV)/bin/pytest -q -p no:cacheprovider tests/test_db_connections.py; \
	else echo "pooler-check skipped: no pgbouncer (apt-get install pgbouncer)"; fi

test: lint template-check unit pooler-check

migrate: $(STAMP)
	$(PY) -m shared.platform.migrator migrate

rollback: $(STAMP)
	$(PY) -m shared.platform.migrator rollback

# Performance figures -> BENCHMARKS.md (about 10 minutes; not part of `make test`).
# ONLY=<scenario>[,<scenario>] reruns some: cold_start wizard token_refresh hsm_dispatch scale
# api_load kms
bench: $(STAMP)
	$(PY) -m bench $(if $(ONLY),--only $(ONLY))

build: $(TOOLS_STAMP)
	AWS_DEFAULT_REGION=us-east-1 $(SAM) build --template template.yaml

# The connection budget first (devstack/connection_budget.py): an environment whose concurrency
# parameters could open more connections than the RDS Proxy may is not deployed.
deploy: build $(STAMP)
	$(PY) -m devstack.connection_budget $(ENV)
	$(SAM) deploy --config-env $(ENV)

smoke: $(STAMP)
	@test -n "$(URL)" || (echo "usage: make smoke URL=https://... TOKEN=<a CRM JWT>" && exit 2)
	$(PY) -m devstack.smoke --url "$(URL)" --token "$(TOKEN)"

rollback-deploy: $(STAMP)
	$(PY) -m devstack.rollback_deploy --config-env $(ENV) $(if $(DRY_RUN),--dry-run)

clean:
	rm -rf $(VENV) .cache .aws-sam .pytest_cache .ruff_cache
