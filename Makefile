# Two commands do all set-up: `make demo` and `make test`. Both create or reuse .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint docs format bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch is pinned: a CPU wheel of 2.13.0 is available offline; an unpinned torch pulls CUDA wheels.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,docs]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ticketlab demo

test: $(STAMP) lint docs
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks recipes docs/hooks
	$(BIN)/ruff format --check src tests benchmarks recipes docs/hooks

# The documentation site, offline, into site/; strict: a broken link or a missing page fails the build.
# The command-line reference is generated from the parsers while it builds (docs/hooks/cli_reference.py).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks recipes docs/hooks
	$(BIN)/ruff format src tests benchmarks recipes docs/hooks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache site
