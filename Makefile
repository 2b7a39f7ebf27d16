# Two commands: `make book` builds the website, `make test` runs every test.
# Each creates .venv/ and installs what is missing first (scripts/setup.sh).
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NOTEBOOKS := $(shell $(if $(wildcard $(PY)),$(PY),python3) scripts/toc_notebooks.py 2>/dev/null)

.PHONY: setup book test lint sync check-sync test-package test-notebooks test-browser clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/lock.txt scripts/setup.sh
	bash scripts/setup.sh
	@touch $@

# Pair every chapter's MyST markdown (the reviewed source) with its .ipynb (what Colab opens).
sync: $(STAMP)
	$(VENV)/bin/jupytext --sync $(NOTEBOOKS:.ipynb=.md)

check-sync: $(STAMP)
	$(PY) scripts/check_sync.py

book: $(STAMP)
	$(VENV)/bin/jupyter-book build . --builder html -W -n --keep-going
	@echo "book: open _build/html/index.html"

lint: $(STAMP)
	$(VENV)/bin/ruff check gdl tests benchmarks scripts book exercises

test: $(STAMP) lint check-sync
	$(PY) -m pytest -p no:cacheprovider --durations=0 tests book $(PYTEST_ARGS)

clean:
	rm -rf _build .pytest_cache
