# Two commands: `make book` builds the website, `make test` runs every test.
# Each creates .venv/ and installs what is missing first (scripts/setup.sh); a second run is fast.
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The chapter notebooks named in _toc.yml (computed when a recipe runs, after set-up).
NOTEBOOKS = $$($(PY) scripts/toc_notebooks.py)
# Test processes (pytest-xdist): one per core.
JOBS ?= $(shell nproc 2>/dev/null || echo 1)

.PHONY: setup book test lint sync check-sync colab-cell gpu-check gpu-full clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/lock.txt scripts/setup.sh
	bash scripts/setup.sh
	@touch $@

## book: build the website into _build/html (executes every chapter; cached between builds)
# scripts/execute_chapters.py first executes the chapters that are not cached, several at a time, into the build's
# cache; the build then renders them (a chapter that failed there is executed again by the build, which reports it).
book: $(STAMP)
	-$(PY) scripts/execute_chapters.py
	$(VENV)/bin/jupyter-book build . --builder html -W -n --keep-going
	@echo "book: open _build/html/index.html"

## test: lint, pairing check, book build, package tests, every chapter, browser tests
# Each chapter executes once: for the book build (scripts/execute_chapters.py, $(JOBS) at a time, into myst-nb's
# cache). Then two things run side by side: the package tests ($(JOBS) processes, pytest-xdist), and the book build
# (it renders the executed chapters) followed by pytest's --chapters-from-build, which gives every chapter of
# _toc.yml a test that fails with the chapter's traceback when it could not be executed (or when it changed since),
# and the browser tests of the built site (log: _build/site-tests.log, printed at the end). Every step runs even
# when an earlier one failed, so every failure is reported; the exit status is the worst. The build's execution
# cache is emptied first: it is keyed on each chapter's cells only, so after a change to gdl/ a cached execution
# would pass a chapter that no longer runs.
test: $(STAMP) lint check-sync
	@start=$$(date +%s); status=0; rm -rf _build/.jupyter_cache; mkdir -p _build; \
	$(PY) scripts/execute_chapters.py; \
	echo "test: the book build and the site tests (log: _build/site-tests.log) run beside the package tests"; \
	( s=0; $(MAKE) --no-print-directory book || s=$$?; \
	  $(PY) -m pytest -p no:cacheprovider --chapters-from-build tests/test_website.py \
		tests/test_book.py::test_every_toc_chapter_is_collected $(NOTEBOOKS) $(PYTEST_ARGS) || s=$$?; \
	  exit $$s ) > _build/site-tests.log 2>&1 & site=$$!; \
	$(PY) -m pytest -p no:cacheprovider -n $(JOBS) --dist worksteal --durations=15 \
		tests --ignore=tests/test_website.py $(PYTEST_ARGS) || status=$$?; \
	wait $$site || status=$$?; \
	echo "---- book build, chapter checks and browser tests (_build/site-tests.log) ----"; cat _build/site-tests.log; \
	echo "test: book build and pytest took $$(( $$(date +%s) - start )) s"; exit $$status

lint: $(STAMP)
	$(VENV)/bin/ruff check .

## sync: pair every chapter's MyST markdown (the reviewed source) with its .ipynb (what Colab opens)
sync: $(STAMP)
	$(VENV)/bin/jupytext --sync $$($(PY) scripts/toc_notebooks.py | sed 's/\.ipynb$$/.md/')

check-sync: $(STAMP)
	$(PY) scripts/check_sync.py

## colab-cell: render the Colab set-up cell from _config.yml's repository into every chapter and exercise
colab-cell: $(STAMP)
	$(PY) scripts/colab_cell.py --write

## gpu-check: every chapter, the registry and every benchmark on CUDA -> _build/gpu-check/report.md
# (without a CUDA GPU it says so, runs nothing and exits 0)
gpu-check: $(STAMP)
	$(PY) scripts/gpu_check.py

## gpu-full: the same at GDL_SCALE=full, one chapter at a time, each with its wall time -> _build/gpu-full/report.md
gpu-full: $(STAMP)
	$(PY) scripts/gpu_check.py --scale full --chapter-timeout 3600 --out _build/gpu-full

clean:
	rm -rf _build .pytest_cache
