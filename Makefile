# The README's commands. `make demo` and `make test` each do all the set-up they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-repeat setup system-deps lint format clean fuzz container-test

demo: setup  ## sample data → train → extract → sample searches → web server on :5000
	$(BIN)/imgsim demo

# The suite runs on $(TEST_WORKERS) pytest-xdist workers: much of it waits (Milvus loading a
# collection, servers starting, subprocesses), so 3 workers about halve it even on 2 cores. They
# share one Milvus server (tests/milvus_server.py). TEST_WORKERS=0: one process, as plain pytest.
TEST_WORKERS ?= 3
test: setup  ## the whole test suite (the command CI runs)
	$(BIN)/pytest -n $(TEST_WORKERS)

# Flakiness hunting: the whole suite N times, stopping at the first run that fails.
N ?= 3
test-repeat: setup  ## make test-repeat N=3
	@for run in $$(seq $(N)); do \
	  echo "== test run $$run of $(N)"; \
	  $(BIN)/pytest -n $(TEST_WORKERS) || { echo "test run $$run of $(N) failed"; exit 1; }; \
	done; \
	echo "all $(N) test runs passed"

setup: $(STAMP) system-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch is pinned to the 2.13.0 CPU wheel; see pyproject.toml.
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Fashion-MNIST (real sample data) and Chromium (browser tests) come from Debian.
# Installed only when missing and when we may; without them the demo uses generated
# images and the browser test is skipped with its reason.
system-deps:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] || [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      dataset-fashion-mnist chromium >/dev/null) || echo "note: apt-get install failed"; \
	  else \
	    echo "note: for real sample data and browser tests: sudo apt-get install dataset-fashion-mnist chromium"; \
	  fi; \
	fi

# Bounded fuzzing (issue #6): each atheris target for FUZZ_SECONDS (60), then schemathesis
# against a live server on 127.0.0.1 for SCHEMATHESIS_SECONDS (180); see fuzz/.
fuzz: setup
	$(BIN)/pip install --quiet -e ".[dev,fuzz]"
	fuzz/run_fuzz.sh
	fuzz/schemathesis_run.sh

# The container image (issue #15): builds the Dockerfile with Podman, trains, indexes and
# serves in containers and searches from the host; as root it installs Podman itself. See
# tests/container/run.sh.
container-test:
	bash tests/container/run.sh

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) demo .pytest_cache .ruff_cache
