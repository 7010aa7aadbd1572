# The one entry point. Every target installs what it needs into .venv (and .tools for the
# template checkers, whose pinned boto3 differs from ours) on a fresh machine with Python 3.11+.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TOOLS := .tools
STAMP := $(VENV)/.installed
TOOLS_STAMP := $(TOOLS)/.installed
ENV ?= default

.PHONY: install tools demo dev test lint format template-check unit migrate rollback bench build deploy smoke rollback-deploy clean

$(STAMP): pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

$(TOOLS_STAMP): tools-requirements.txt
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q --upgrade pip
	$(TOOLS)/bin/pip install -q -r tools-requirements.txt
	touch $(TOOLS_STAMP)

tools: $(TOOLS_STAMP)

demo: $(STAMP)
	$(PY) -m devstack.demo

dev: $(STAMP)
	$(PY) -m devstack.dev

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check shared functions devstack

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format shared functions devstack

template-check: $(TOOLS_STAMP)
	AWS_DEFAULT_REGION=us-east-1 $(TOOLS)/bin/cfn-lint template.yaml
	AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x SAM_CLI_TELEMETRY=0 \
		$(TOOLS)/bin/sam validate --lint --template template.yaml

unit: $(STAMP)
	$(VENV)/bin/pytest -q

test: lint template-check unit

migrate: $(STAMP)
	$(PY) -m shared.migrator migrate

rollback: $(STAMP)
	$(PY) -m shared.migrator rollback

clean:
	rm -rf $(VENV) $(TOOLS) .aws-sam .pytest_cache .ruff_cache
