# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
NODE_PEERS := tests/interop/node

.PHONY: run test lint typecheck pytest crds bench venv node-peers clean

$(BIN)/smsmesh: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/smsmesh

# Local mode: router + one connector process per SmppConnection + the SMSC simulator.
run: venv
	$(BIN)/smsmesh up examples/local

# Independent SMPP peers for the interop tests (npm `smpp`), cached by npm under ~/.npm.
$(NODE_PEERS)/node_modules/smpp/package.json: $(NODE_PEERS)/package.json
	cd $(NODE_PEERS) && npm install --no-audit --no-fund --silent
	touch $@

node-peers: $(NODE_PEERS)/node_modules/smpp/package.json

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy -p smsmesh -p smsmesh_router -p smsmesh_connector -p smsmesh_operator

pytest: venv node-peers
	$(BIN)/pytest -q $(PYTEST_ARGS)

test: lint typecheck pytest

# Helm installs CRDs from the chart's own crds/: keep it an exact copy (tests/helm checks).
crds: venv
	$(BIN)/smsmesh crds --output crds/
	rm -f helm/smsmesh/crds/*.yaml
	cp crds/*.yaml helm/smsmesh/crds/

bench: venv
	$(BIN)/python -m bench.e2e --output bench/results.json

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
