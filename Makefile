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

.PHONY: install tools demo dev test lint format template-check build-check unit unit-beside-build unit-packages migrate rollback bench bench-build build deploy smoke rollback-deploy clean openapi

# Before anything: a .venv whose Python is gone, or of another version than an explicit PYTHON
# asks for, is removed (and rebuilt below) instead of failing every target the same way.
ifeq ($(filter clean build-%,$(MAKECMDGOALS)),)
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

# --- Lambda packages: `sam build` builds every function with `make build-<LogicalId>` below
# (template.yaml: `Metadata: {BuildMethod: makefile}` on each; docs/DEPLOY.md). A package holds
# the dependencies, the function's own folder, the shared/ packages it imports and, for the
# migrator, migrations/ (devstack/lambda_package.py says which), all compiled to unchecked-hash
# bytecode, which Lambda's read-only /var/task uses as it is. No mtimes, one hash seed: the same
# sources give the same bytes, so an unchanged function keeps sam's checksum and its version
# (tests/test_lambda_packages.py).
# The runtime's interpreter: a python3.12 on PATH, or one that pyenv keeps (this project's dev
# machines run 3.11). pip fetches Lambda's wheels itself, no Docker: manylinux aarch64 cp312
# (Amazon Linux 2023, glibc 2.34: manylinux_2_28 qualifies). arm64 and 3.12 are what the
# template deploys; the cold-start bench builds x86_64 to run the packages here (and 3.11 on a
# machine without 3.12).
LAMBDA_ARCH ?= arm64
LAMBDA_PYTHON ?= 3.12
LAMBDA_PY := $(firstword $(shell python$(LAMBDA_PYTHON) -c 'import sys; print(sys.executable)' \
	2>/dev/null) $(wildcard $(HOME)/.pyenv/versions/$(LAMBDA_PYTHON).*/bin/python$(LAMBDA_PYTHON)))
WHEEL_ARCH := $(if $(filter x86_64,$(LAMBDA_ARCH)),x86_64,aarch64)
BUILD_DIR := .aws-sam/$(if $(filter arm64-3.12,$(LAMBDA_ARCH)-$(LAMBDA_PYTHON)),build,build-$(LAMBDA_ARCH)-$(LAMBDA_PYTHON))
# The dependencies are installed and compiled once per requirements.txt and architecture.
DEPS := .aws-sam/wheels/$(LAMBDA_ARCH)-$(LAMBDA_PYTHON)-$(firstword $(shell cksum requirements.txt))
# One process, files in order, no site-packages: marshal flags a constant by its reference count,
# which depends on what the process compiled before (compileall -j gives each worker another
# history, and different bytes from run to run).
COMPILE := PYTHONHASHSEED=0 $(LAMBDA_PY) -S -s -m compileall -q --invalidation-mode unchecked-hash
SAM_BUILD := PATH="$(dir $(LAMBDA_PY)):$$PATH" LAMBDA_ARCH=$(LAMBDA_ARCH) LAMBDA_PYTHON=$(LAMBDA_PYTHON) \
	AWS_DEFAULT_REGION=us-east-1 \
	$(SAM) build --template template.yaml --build-in-source --build-dir $(BUILD_DIR) \
	--cache-dir .aws-sam/cache-$(LAMBDA_ARCH)-$(LAMBDA_PYTHON)

define NO_LAMBDA_PY
echo "no python$(LAMBDA_PYTHON): install one (e.g. pyenv install $(LAMBDA_PYTHON)) to build Lambda packages"; exit 2
endef

# sam builds functions in parallel: the first takes the lock and installs, the others wait and
# find it done. Installed beside, then renamed into place: an interrupted install is never used.
$(DEPS)/.complete:
	@test -n "$(LAMBDA_PY)" || { $(NO_LAMBDA_PY); }
	@mkdir -p "$(dir $(DEPS))" && exec 9>"$(dir $(DEPS)).lock" && \
	{ ! command -v flock >/dev/null || flock 9; } && test -f "$@" || { \
	tmp="$(DEPS).$$$$" && rm -rf "$$tmp" && \
	$(LAMBDA_PY) -m pip install -q --disable-pip-version-check --no-compile --only-binary=:all: \
		--platform manylinux2014_$(WHEEL_ARCH) --platform manylinux_2_28_$(WHEEL_ARCH) \
		--python-version $(LAMBDA_PYTHON) --implementation cp -r requirements.txt --target "$$tmp" && \
	rm -rf "$$tmp/bin" && \
	$(COMPILE) -s "$$tmp" -p /var/task "$$tmp" && \
	touch "$$tmp/.complete" && { mv -T "$$tmp" "$(DEPS)" 2>/dev/null || rm -rf "$$tmp"; }; }

build-%Function: $(DEPS)/.complete
	@test -n "$(ARTIFACTS_DIR)" || { echo "$@ is run by sam build (make build)"; exit 2; }
	@paths="$$($(LAMBDA_PY) devstack/lambda_package.py $*Function)" && \
	find "$(ARTIFACTS_DIR)" -mindepth 1 -delete && \
	{ cp -al "$(DEPS)/." "$(ARTIFACTS_DIR)/" 2>/dev/null || cp -a "$(DEPS)/." "$(ARTIFACTS_DIR)/"; } && \
	rm "$(ARTIFACTS_DIR)/.complete" && \
	tar -cf - --exclude=__pycache__ --exclude='*.pyc' $$paths | tar -xf - -C "$(ARTIFACTS_DIR)" && \
	$(COMPILE) -s "$(ARTIFACTS_DIR)" -p /var/task "$(ARTIFACTS_DIR)/functions" "$(ARTIFACTS_DIR)/shared"

# Every function's package, with sam: what deploy uploads.
build: $(TOOLS_STAMP)
	@test -n "$(LAMBDA_PY)" || { $(NO_LAMBDA_PY); }
	@echo "sam build ($(LAMBDA_ARCH)) with $(LAMBDA_PY)"
	$(SAM_BUILD)

# `make test`'s check: the same build. A machine with no Python 3.12 at all still answers the
# packaging question: every runtime dependency must resolve to wheels for Lambda's arm64 Python
# 3.12 (tests/test_lambda_packages.py then skips what needs the packages, and says so).
build-check: $(TOOLS_STAMP) $(STAMP)
	@if [ -n "$(LAMBDA_PY)" ]; then $(MAKE) --no-print-directory build; else \
		echo "no python3.12: checking arm64/cp312 wheels for requirements.txt instead of sam build"; \
		rm -rf .aws-sam/wheel-check && $(PY) -m pip download -q --disable-pip-version-check \
			--only-binary=:all: --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 \
			--python-version 3.12 --implementation cp -r requirements.txt -d .aws-sam/wheel-check && \
		echo "arm64 python3.12 wheels resolved for every runtime dependency"; \
	fi

unit: $(STAMP) $(DOCS_UI_STAMP)
	$(VENV)/bin/pytest -q

# `make test`'s halves: the suite without the package tests runs beside template-check (which
# builds the packages), then the package tests read that build.
PACKAGE_TESTS := tests/test_lambda_packages.py
unit-beside-build: $(STAMP) $(DOCS_UI_STAMP)
	$(VENV)/bin/pytest -q --ignore=$(PACKAGE_TESTS)

unit-packages: $(STAMP)
	$(VENV)/bin/pytest -q -p no:cacheprovider $(PACKAGE_TESTS)

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

# The suite mostly waits on the local stack (about 0.6 of one core over a whole run), so the
# template checks and the package build, about three minutes of one core, run beside it: `make
# test` takes about as long as the suite. Each half's output is printed when it ends.
test: lint
	$(MAKE) --no-print-directory -j2 --output-sync=target template-check unit-beside-build
	$(MAKE) --no-print-directory unit-packages pooler-check

migrate: $(STAMP)
	$(PY) -m shared.platform.migrator migrate

rollback: $(STAMP)
	$(PY) -m shared.platform.migrator rollback

# Performance figures -> BENCHMARKS.md (about 10 minutes; not part of `make test`).
# ONLY=<scenario>[,<scenario>] reruns some: cold_start wizard token_refresh hsm_dispatch scale
# api_load kms
bench: $(STAMP) $(TOOLS_STAMP)
	$(PY) -m bench $(if $(ONLY),--only $(ONLY))

# The cold-start bench's packages (bench/cold_start.py runs it): this project's, by the same
# targets as deploy's but for x86_64 (arm64 wheels cannot run here), and the Powertools
# hello-world starter (bench/powertools_hello) built the default sam way, without bytecode.
bench-build: $(TOOLS_STAMP)
	@$(MAKE) --no-print-directory build LAMBDA_ARCH=x86_64 LAMBDA_PYTHON=$(LAMBDA_PYTHON)
	PATH="$(dir $(LAMBDA_PY)):$$PATH" AWS_DEFAULT_REGION=us-east-1 $(SAM) build \
		--template bench/powertools_hello/template.yaml --build-dir .aws-sam/build-hello-$(LAMBDA_PYTHON) \
		--cache-dir .aws-sam/cache-hello-$(LAMBDA_PYTHON) --parameter-overrides Runtime=python$(LAMBDA_PYTHON)

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
