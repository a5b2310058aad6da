# ojs-actors — common tasks. `make install` once, then `make run` or `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080
BACKEND ?= memory
CONFORMANCE_DIR ?= $(or $(OJS_CONFORMANCE_DIR),../shared/conformance)

.PHONY: install run test test-fast lint format openapi conformance bench chaos docker-up docker-down clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[all]'

run: install
	$(BIN)/ojs-actors serve --backend $(BACKEND) --port $(PORT)

test: install
	tools/ensure_chromium.sh
	$(BIN)/python -m pytest -q

test-fast: install
	tools/ensure_chromium.sh
	$(BIN)/python -m pytest -q -m "not conformance"

lint: install
	$(BIN)/ruff check ojs_actors tests bench tools chaos
	$(BIN)/ruff format --check ojs_actors tests bench tools chaos
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix ojs_actors tests bench tools chaos
	$(BIN)/ruff format ojs_actors tests bench tools chaos

# Regenerate the OpenAPI document GET /ojs/openapi.json serves, from the spec's openapi.yaml
# (SPEC_DIR) and the app's routes; run it when either changes.
SPEC_DIR ?= $(or $(OJS_SPEC_DIR),../shared/ojs-spec)
openapi: install
	$(BIN)/python tools/generate_openapi.py $(SPEC_DIR)/openapi.yaml

# Run the official suites against a server started here (levels 0-4, core suites).
conformance: install
	@$(BIN)/ojs-actors serve --backend $(BACKEND) --port $(PORT) --allow-reset & pid=$$!; \
	trap "kill $$pid" EXIT; \
	for i in $$(seq 50); do curl -sf http://127.0.0.1:$(PORT)/ojs/v1/health >/dev/null && break; sleep 0.1; done; \
	$(BIN)/python $(CONFORMANCE_DIR)/ojs_conformance.py --url http://127.0.0.1:$(PORT) \
	  --reset-url http://127.0.0.1:$(PORT)/ojs/v1/admin/reset --max-level 4 --core-only

# The benchmark (bench/README.md); e.g. BENCH_ARGS="--quick" or "--only peers --runs 5".
bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

# The chaos suite (chaos/README.md): about ten minutes a backend, every backend in turn;
# e.g. CHAOS_ARGS="--backend redis nats" or "--seconds 120". Exits 1 if any job was lost.
chaos: install
	$(BIN)/python -m chaos --json chaos-report.json $(CHAOS_ARGS)

# The servers require a key: a random one is written to docker/.env the first time.
docker-up:
	@test -f docker/.env || echo "OJS_API_KEY=$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(32))')" > docker/.env
	docker compose -f docker/compose.yaml up --build -d
	@echo "API key: $$(sed -n 's/^OJS_API_KEY=//p' docker/.env)"

docker-down:
	docker compose -f docker/compose.yaml down

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
