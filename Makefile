# `make demo` and `make test` set up everything they need on a machine with Python 3.11+.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR := out/demo
# checkov pins its own boto3 and packaging, so it lives in an environment of its own
CHECKOV := .venv-checkov/bin/checkov

.PHONY: demo test lint unit functional e2e bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

examples/tabular/model/model.pkl: $(STAMP) examples/tabular/train.py
	$(PY) examples/tabular/train.py examples/tabular/model

examples/tabular/data: $(STAMP) examples/tabular/generate_data.py
	$(PY) examples/tabular/generate_data.py examples/tabular/data --files 12 --rows 60000

demo: $(STAMP) examples/tabular/model/model.pkl examples/tabular/data
	$(VENV)/bin/batchscore local run examples/tabular/data --deployment examples/tabular/deployment-dataframe.yaml \
		--output $(DEMO_DIR)
	$(VENV)/bin/batchscore report $(DEMO_DIR)
	@echo "--- $(DEMO_DIR)/_summary.json"
	@cat $(DEMO_DIR)/_summary.json

$(CHECKOV):
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/pip install --quiet "checkov>=3.2,<4"

lint: $(STAMP) $(CHECKOV)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/cfn-lint infra/template.yaml
	$(CHECKOV) --quiet --compact --skip-download --framework cloudformation -f infra/template.yaml
	$(VENV)/bin/hadolint container/Dockerfile

test: lint
	$(VENV)/bin/pytest -q

unit: $(STAMP)
	$(VENV)/bin/pytest -q tests/unit

e2e: $(STAMP)
	$(VENV)/bin/pytest -q tests/e2e

clean:
	rm -rf out .venv-checkov examples/tabular/data examples/tabular/model .pytest_cache .mypy_cache .ruff_cache
