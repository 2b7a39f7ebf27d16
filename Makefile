# Two commands: `make book` builds the website, `make test` runs every test.
# Each creates .venv/ and installs what is missing first (scripts/setup.sh); a second run is fast.
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The chapter notebooks named in _toc.yml (computed when a recipe runs, after set-up).
NOTEBOOKS = $$($(PY) scripts/toc_notebooks.py)

.PHONY: setup book test lint sync check-sync clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/lock.txt scripts/setup.sh
	bash scripts/setup.sh
	@touch $@

## book: build the website into _build/html (executes every chapter; cached between builds)
book: $(STAMP)
	$(VENV)/bin/jupyter-book build . --builder html -W -n --keep-going
	@echo "book: open _build/html/index.html"

## test: lint, pairing check, book build, package tests, every chapter under nbval, browser tests
test: $(STAMP) lint check-sync book
	$(PY) -m pytest -p no:cacheprovider --nbval-lax --nbval-current-env --durations=15 \
		tests $(NOTEBOOKS) $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

## sync: pair every chapter's MyST markdown (the reviewed source) with its .ipynb (what Colab opens)
sync: $(STAMP)
	$(VENV)/bin/jupytext --sync $$($(PY) scripts/toc_notebooks.py | sed 's/\.ipynb$$/.md/')

check-sync: $(STAMP)
	$(PY) scripts/check_sync.py

clean:
	rm -rf _build .pytest_cache
