# `make install` sets up .venv (torch, then ticketlab with its dev and docs extras); `make demo` and
# `make test` do the same first. Installing is the one step that needs the network (or a wheelhouse:
# PIP_FIND_LINKS=DIR PIP_NO_INDEX=1 make install).
PYTHON ?= python3
# Extra pip arguments for torch. torch is pinned to 2.13.0; on Linux PyPI's wheel of it is the CUDA
# build (with its nvidia-* packages). For the CPU-only build:
#   make install TORCH_PIP_ARGS='--index-url https://download.pytorch.org/whl/cpu'
TORCH_PIP_ARGS ?=
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint docs format clean

# Python 3.11 or later, checked before anything is made: a .venv left by a try with an older python3
# would otherwise be reused by the next `make install PYTHON=python3.11`.
$(STAMP): pyproject.toml
	@py=$(BIN)/python; test -x $$py || py=$(PYTHON); \
	command -v $$py >/dev/null || { echo "make: $$py: not found (name a Python: make install PYTHON=...)" >&2; exit 2; }; \
	$$py -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "make: $$py is not Python 3.11 or later, which ticketlab needs:$$(test -x $(BIN)/python && \
	  echo ' remove .venv (make clean), then') make install PYTHON=python3.11" >&2; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0 $(TORCH_PIP_ARGS)
	$(BIN)/pip install --quiet -e '.[dev,docs]'
	touch $(STAMP)

install: $(STAMP)

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
