"""The built website as readers see it: every page of the table of contents in headless Chromium.

The book must already be built (``make book`` writes ``_build/html``). A ``http.server`` thread serves
it on 127.0.0.1 and Playwright drives the Debian ``/usr/bin/chromium``. Every request to another host is
blocked and recorded, so the checks below also prove that the site reads offline (MathJax included).

Each page is loaded once (``visit``); the tests then check, page by page:

* the page loads (HTTP 200), with no console error, no uncaught exception, no failed same-site request;
* no asset is requested from outside localhost, and MathJax itself comes from the site;
* every maths element is typeset by MathJax (the intro and every chapter must have maths);
* every image loaded (``naturalWidth > 0``) and every image output of the executed notebook is shown;
* no page shows a line of raw Markdown table syntax (``| a | b |`` or ``|---|---|``) outside code cells, and
  the architectures page shows a real ``<table>`` with one row per ``gdl.architectures.ARCHITECTURES`` entry;
* chapter pages carry a Colab button pointing at their committed ``book/<name>.ipynb``; the Exercises page links
  each committed student notebook (``exercises/student/``) and other pages link none;
* every same-site link resolves to a built file (and to its ``#anchor`` when it has one).

A full-page screenshot of every page goes to ``_build/screenshots/<page>.png`` for review.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest
import yaml

from gdl._book import repository

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
CACHE = ROOT / "_build" / ".jupyter_cache"
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
COLAB = repository(ROOT).colab_url("")          # from _config.yml, as the launch buttons
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
# Requests that are not page assets (a navigation away); recorded but not a failure on their own.
NOT_ASSETS = {"document"}


def toc_pages() -> list[str]:
    """Every document of ``_toc.yml`` (root first), as paths without suffix: ``book/intro``."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    pages = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                pages.append(str(node["file"]).removesuffix(".md").removesuffix(".ipynb"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return list(dict.fromkeys(pages))


PAGES = toc_pages()
EXERCISES = "book/11_exercises"        # links to every student notebook in Colab


def notebook_of(page: str) -> Path | None:
    """The paired notebook of a chapter (``book/NN_name.ipynb``), or None for a plain page."""
    path = ROOT / f"{page}.ipynb"
    return path if path.is_file() else None


def page_name(page: str) -> str:
    return page.split("/")[-1]


def _skip_reason() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install playwright; it drives the system chromium)"
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        return f"chromium is not installed ({CHROMIUM} missing; apt-get install chromium)"
    if not (HTML / "index.html").is_file():
        return f"the website has not been built ({HTML} missing): run `make book` first"
    return None


@pytest.fixture(scope="module")
def site():
    """Serve ``_build/html`` on 127.0.0.1 at a free port; yields the base URL."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(site):
    """A headless Chromium context with a fresh profile that cannot reach any other host."""
    from playwright.sync_api import sync_playwright

    executable = str(CHROMIUM) if CHROMIUM.exists() else shutil.which("chromium")
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        yield context
        context.close()


@dataclass
class Visit:
    """What one page load showed: filled by ``visit``, read by the tests."""

    url: str
    status: int | None = None
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    external: list[tuple[str, str]] = field(default_factory=list)  # (resource type, url)
    local_failures: list[str] = field(default_factory=list)
    local_requests: list[str] = field(default_factory=list)
    math_elements: int = 0
    math_untypeset: list[str] = field(default_factory=list)
    math_errors: int = 0
    mathjax_src: str | None = None
    mathjax_error: str | None = None
    images: list[dict] = field(default_factory=list)
    output_images: int = 0
    figure_scales: list[dict] = field(default_factory=list)        # displayed width / natural width per figure
    colab_links: list[str] = field(default_factory=list)
    hrefs: list[str] = field(default_factory=list)
    bib_entries: int = 0
    citations: list[str] = field(default_factory=list)
    reader_text: str = ""                                           # what a reader reads: no code cell inputs
    tables: list[dict] = field(default_factory=list)               # {"header": [...], "rows": n}
    page_overflow: int = 0                                          # px the page is wider than the window
    wide_equations: list[dict] = field(default_factory=list)       # display maths wider than the text column
    wide_outputs: list[dict] = field(default_factory=list)         # printed lines a reader must scroll to read


_VISITS: dict[str, Visit] = {}

COLLECT_JS = """() => {
  const main = document.querySelector('main') || document.body;
  const maths = [...main.querySelectorAll('.math')];
  const script = document.querySelector('script[src*="mathjax" i]');
  return {
    math_elements: maths.length,
    math_untypeset: maths.filter(m => !m.querySelector('mjx-container'))
                         .map(m => m.textContent.trim().slice(0, 80)),
    math_errors: document.querySelectorAll('mjx-merror').length,
    mathjax_src: script ? script.src : null,
    images: [...document.images].map(i => ({src: i.currentSrc || i.src, complete: i.complete,
                                             width: i.naturalWidth})),
    output_images: main.querySelectorAll('.cell_output img').length,
    // figures as shown: how much the browser shrinks each one to fit the page (text in it shrinks alike)
    figure_scales: [...main.querySelectorAll('.cell_output img')].filter(i => i.naturalWidth > 0)
                     .map(i => ({src: i.currentSrc || i.src, scale: i.getBoundingClientRect().width / i.naturalWidth})),
    colab_links: [...document.querySelectorAll('a[href*="colab.research.google.com"]')]
                   .map(a => a.href),
    hrefs: [...document.querySelectorAll('a[href]')].map(a => a.href),
    bib_entries: main.querySelectorAll('[role="doc-biblioentry"]').length,
    citations: [...main.querySelectorAll('.bibtex-citation a[href]')].map(a => a.href),
    reader_text: (() => {
      // the page as read: prose and cell outputs; code cell inputs and code blocks in prose are code, not text
      const clone = main.cloneNode(true);
      clone.querySelectorAll('.cell_input, script, style, mjx-container').forEach(e => e.remove());
      clone.querySelectorAll('pre').forEach(e => { if (!e.closest('.cell_output')) e.remove(); });
      return clone.textContent;
    })(),
    tables: [...main.querySelectorAll('table')].map(t => ({
      header: [...t.querySelectorAll('thead th')].map(th => th.textContent.trim()),
      rows: t.querySelectorAll('tbody tr').length,
      visible: t.getBoundingClientRect().width > 0,
      // every column on screen: the table needs no horizontal scrolling inside its container
      fits: t.parentElement.scrollWidth <= t.parentElement.clientWidth + 1,
    })),
    // the page itself scrolls sideways (one wide element shifts the whole page)
    page_overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
    // a display equation wider than the column it sits in is cut off or needs scrolling
    wide_equations: [...main.querySelectorAll('mjx-container[display="true"]')].map((m, i) => {
      const column = (m.closest('section') || main).getBoundingClientRect().width;
      const eq = m.querySelector('mjx-math') || m;
      return {index: i, width: Math.round(eq.getBoundingClientRect().width), column: Math.round(column),
              text: (m.querySelector('mjx-assistive-mml') || m).textContent.replace(/\\s+/g, ' ').slice(0, 60)};
    }).filter(e => e.width > e.column + 1),
    // printed output a reader must scroll sideways to read
    wide_outputs: [...main.querySelectorAll('.cell_output pre')]
      .filter(p => p.scrollWidth > p.clientWidth + 1)
      .map(p => ({over: p.scrollWidth - p.clientWidth,
                  line: p.textContent.split('\\n').reduce((a, b) => b.length > a.length ? b : a, '').slice(0, 90)})),
  };
}"""

LOAD_IMAGES_JS = """async () => {
  for (const img of document.images) img.loading = 'eager';
  await Promise.all([...document.images].map(i => i.decode().catch(() => null)));
}"""

TYPESET_JS = """async () => {
  if (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) return 'MathJax not loaded';
  try { await MathJax.startup.promise; return null; } catch (e) { return String(e); }
}"""


def visit(browser, site: str, page: str) -> Visit:
    """Load ``page`` once (cached), record everything the tests check, save its screenshot."""
    if page in _VISITS:
        return _VISITS[page]
    html = HTML / f"{page}.html"
    if not html.is_file():
        pytest.fail(f"{page} is in _toc.yml but {html} was not built: run `make book` again")
    result = Visit(url=urljoin(site, f"{page}.html"))

    def route(r):
        host = urlsplit(r.request.url).hostname
        if host in LOCAL_HOSTS:
            result.local_requests.append(r.request.url)
            r.continue_()
        else:
            result.external.append((r.request.resource_type, r.request.url))
            r.abort("blockedbyclient")

    def console(message):
        if message.type == "error":
            result.console_errors.append(f"{message.text} ({message.location.get('url', '')})")

    def response(r):
        if r.status >= 400:
            result.local_failures.append(f"{r.status} {r.url}")

    def request_failed(r):
        if urlsplit(r.url).hostname in LOCAL_HOSTS:
            result.local_failures.append(f"{r.failure} {r.url}")

    tab = browser.new_page()
    tab.route(re.compile(r"^(https?|wss?)://"), route)
    tab.on("console", console)
    tab.on("pageerror", lambda error: result.page_errors.append(str(error)))
    tab.on("response", response)
    tab.on("requestfailed", request_failed)
    try:
        answer = tab.goto(result.url, wait_until="load")
        result.status = answer.status if answer else None
        has_math = tab.evaluate("() => !!document.querySelector('main .math')")
        if has_math:
            result.mathjax_error = tab.evaluate(TYPESET_JS)
        tab.evaluate(LOAD_IMAGES_JS)
        for key, value in tab.evaluate(COLLECT_JS).items():
            setattr(result, key, value)
        SHOTS.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(SHOTS / f"{page_name(page)}.png"), full_page=True)
    finally:
        tab.close()
    _VISITS[page] = result
    return result


def _local_target(site: str, url: str) -> tuple[Path, str] | None:
    """The built file (and fragment) a same-site URL points to; None for other hosts."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not url.startswith(site):
        return None
    rel = unquote(parts.path)[len(urlsplit(site).path) :]
    path = HTML / rel
    if rel == "" or rel.endswith("/"):
        path = path / "index.html"
    return path, unquote(parts.fragment)


# ---------------------------------------------------------------------------------------------


def test_toc_lists_intro_chapters_and_references():
    """The page list the other tests walk is read correctly from _toc.yml."""
    assert PAGES[0] == "book/intro", PAGES
    assert "book/references" in PAGES, "book/references.md (the bibliography) is not in _toc.yml"
    for page in PAGES:
        assert (ROOT / f"{page}.md").is_file(), f"_toc.yml lists {page}, but {page}.md is missing"


@pytest.mark.parametrize("page", PAGES)
def test_page_loads_without_errors(browser, site, page):
    v = visit(browser, site, page)
    assert v.status == 200, f"{v.url} answered {v.status}"
    assert not v.page_errors, f"{page}: uncaught JavaScript exceptions: {v.page_errors}"
    assert not v.console_errors, f"{page}: console errors: {v.console_errors}"
    assert not v.local_failures, f"{page}: same-site requests failed: {v.local_failures}"


@pytest.mark.parametrize("page", PAGES)
def test_nothing_loaded_from_outside_localhost(browser, site, page):
    v = visit(browser, site, page)
    assets = [(kind, url) for kind, url in v.external if kind not in NOT_ASSETS]
    assert not assets, (
        f"{page} requests page assets from outside localhost (blocked; the site must read offline): {assets}"
    )
    if v.mathjax_src is not None:
        assert v.mathjax_src.startswith(site), (
            f"{page} loads MathJax from {v.mathjax_src}, not from the site itself: is the "
            "sphinx-mathjax-offline extension in _config.yml?"
        )


@pytest.mark.parametrize("page", PAGES)
def test_maths_is_typeset(browser, site, page):
    v = visit(browser, site, page)
    if page == PAGES[0] or notebook_of(page):
        assert v.math_elements > 0, f"{page} (intro or chapter) shows no maths at all"
    if v.math_elements == 0:
        return
    assert v.mathjax_error is None, f"{page}: MathJax did not typeset: {v.mathjax_error}"
    assert v.mathjax_src and v.mathjax_src.startswith(site), f"{page}: MathJax served from {v.mathjax_src}"
    assert any("/_static/mathjax/" in u for u in v.local_requests), v.local_requests
    assert not v.math_untypeset, f"{page}: maths left as raw TeX: {v.math_untypeset}"
    assert v.math_errors == 0, f"{page}: {v.math_errors} MathJax errors (bad TeX)"


def _notebook_image_outputs(page: str) -> int:
    """How many image outputs the executed chapter has, read from myst-nb's jupyter-cache.

    The book executes each chapter's ``.md`` with ``execute_notebooks: cache``; the cache record that
    matches the chapter's current source holds the executed notebook with its outputs.
    """
    from jupyter_cache import get_cache

    source = ROOT / f"{page}.md"
    try:
        record = get_cache(CACHE).get_cached_project_nb(str(source))
    except Exception as err:  # any lookup failure means the build did not execute it
        record, why = None, f"{type(err).__name__}: {err}"
    else:
        why = "its current source has no executed copy"
    assert record is not None, f"{page}: not in the book's execution cache {CACHE} ({why}); run `make book`"
    executed = CACHE / "executed" / record.hashkey / "base.ipynb"
    nb = json.loads(executed.read_text(encoding="utf-8"))
    return sum(
        any(mime.startswith("image/") for mime in out.get("data", {}))
        for cell in nb["cells"]
        if cell["cell_type"] == "code"
        for out in cell.get("outputs", [])
    )


@pytest.mark.parametrize("page", PAGES)
def test_figures_are_shown(browser, site, page):
    v = visit(browser, site, page)
    broken = [img["src"] for img in v.images if not (img["complete"] and img["width"] > 0)]
    assert not broken, f"{page}: images that did not load: {broken}"
    if notebook_of(page):
        expected = _notebook_image_outputs(page)
        assert v.output_images >= expected, (
            f"{page}: the notebook has {expected} image outputs, the page shows {v.output_images}"
        )


# A Markdown table row (two or more cells between pipes) or its separator line (|---|:---:|).
_TABLE_ROW = re.compile(r"^\s*\|(?:[^|\n]*\|){2,}\s*$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)+\|?\s*$")


def raw_markdown_table_lines(text: str) -> list[str]:
    """The lines of ``text`` that are Markdown table syntax a browser shows verbatim."""
    return [line.strip() for line in text.splitlines() if _TABLE_ROW.match(line) or _TABLE_RULE.match(line)]


def test_raw_table_detector():
    """The detector used below finds what a reader saw before tables rendered, and nothing in plain prose."""
    raw = "Results\n| architecture | symmetry | kind |\n|---|---|---:|\n| CNN | Translation | equivariant |\n"
    assert raw_markdown_table_lines(raw) == ["| architecture | symmetry | kind |", "|---|---|---:|",
                                             "| CNN | Translation | equivariant |"]
    assert raw_markdown_table_lines("|---|:---:|") == ["|---|:---:|"]
    prose = "the norm |x| of a vector, a set {a | b}, and the ratio |f(gx) - gf(x)| / |gf(x)| are fine\n---"
    assert raw_markdown_table_lines(prose) == []


@pytest.mark.parametrize("page", PAGES)
def test_no_raw_markdown_tables(browser, site, page):
    """Tables printed by code (``display(Markdown(...))``) must reach the reader as tables, not as pipes."""
    v = visit(browser, site, page)
    assert v.reader_text.strip(), f"{page}: no text read from the page's main element"
    raw = raw_markdown_table_lines(v.reader_text)
    assert not raw, f"{page} shows raw Markdown table syntax instead of a table: {raw[:3]}"
    for table in v.tables:
        assert table["visible"] and table["rows"] > 0, f"{page}: an empty or hidden table {table}"


def test_architectures_page_shows_the_registry_as_a_table(browser, site):
    """The centre of the course: one row per registry entry, with the behaviour column of the source table."""
    from gdl import architectures

    page = next((p for p in PAGES if p.endswith("_architectures_table")), None)
    assert page is not None, f"no architectures-table chapter in _toc.yml: {PAGES}"
    v = visit(browser, site, page)
    expected = len(architectures.ARCHITECTURES)
    registry = [t for t in v.tables if "architecture" in t["header"]]
    assert registry, f"{page}: no HTML table with an 'architecture' column; tables found: {v.tables}"
    table = registry[0]
    assert table["rows"] == expected, (
        f"{page}: the architectures table shows {table['rows']} rows, the registry has {expected}")
    for column in ("symmetry", "kind", "behaviour", "error", "parameters"):
        assert column in table["header"], f"{page}: the architectures table has no {column!r} column: {table}"
    assert table["fits"], f"{page}: the architectures table is wider than the page; a reader must scroll: {table}"


@pytest.mark.parametrize("page", PAGES)
def test_nothing_is_wider_than_the_page(browser, site, page):
    """A reader never scrolls sideways: the page fits the window, every display equation fits its column, and
    printed output wraps (``_static/custom.css``) instead of running off the page."""
    v = visit(browser, site, page)
    assert v.page_overflow <= 1, f"{page}: the page is {v.page_overflow} px wider than the window"
    assert not v.wide_equations, (f"{page}: display equations wider than the text column (break them into "
                                  f"aligned lines): {v.wide_equations}")
    assert not v.wide_outputs, f"{page}: printed lines that must be scrolled sideways: {v.wide_outputs[:3]}"


# A figure shrunk below this fraction of its drawn size has text smaller than about 8 px: unreadable.
MIN_FIGURE_SCALE = 0.75


@pytest.mark.parametrize("page", PAGES)
def test_figures_are_readable_at_page_width(browser, site, page):
    """Figures are drawn for the page: the browser does not have to shrink them (and their labels) much."""
    v = visit(browser, site, page)
    shrunk = [f"{f['src'].rsplit('/', 1)[-1]} shown at {f['scale']:.2f}" for f in v.figure_scales
              if f["scale"] < MIN_FIGURE_SCALE]
    assert not shrunk, (f"{page}: figures drawn too wide for the page (make figsize about 7.5 inches wide): "
                        f"{shrunk}")


@pytest.mark.parametrize("page", PAGES)
def test_colab_button(browser, site, page):
    v = visit(browser, site, page)
    nb = notebook_of(page)
    if nb is None:
        students = sorted(COLAB + p.relative_to(ROOT).as_posix()
                          for p in (ROOT / "exercises" / "student").glob("*.ipynb"))
        if page == EXERCISES:
            assert sorted(set(v.colab_links)) == students, f"{page}: Colab links {v.colab_links}, expected {students}"
        else:
            assert not v.colab_links, f"{page} has no notebook but links to Colab: {v.colab_links}"
        return
    expected = COLAB + nb.relative_to(ROOT).as_posix()
    assert v.colab_links, f"{page}: no Colab launch button (expected a link to {expected})"
    for href in v.colab_links:
        assert href == expected, f"{page}: Colab button points to {href}, expected {expected}"
        target = ROOT / href.removeprefix(COLAB)
        assert target.suffix == ".ipynb" and target.is_file(), f"{href}: {target} missing"


@pytest.mark.parametrize("page", PAGES)
def test_internal_links_resolve(browser, site, page):
    v = visit(browser, site, page)
    same_site = [(href, _local_target(site, href)) for href in v.hrefs]
    same_site = [(href, t) for href, t in same_site if t is not None]
    assert same_site, f"{page}: no same-site links at all (navigation missing?)"
    missing, no_anchor = [], []
    for href, (path, fragment) in same_site:
        if not path.is_file():
            missing.append(href)
        elif fragment and path.suffix == ".html":
            text = path.read_text(encoding="utf-8")
            if f'id="{fragment}"' not in text and f'name="{fragment}"' not in text:
                no_anchor.append(href)
    assert not missing, f"{page}: links to files that were not built: {sorted(set(missing))}"
    assert not no_anchor, f"{page}: links to anchors that do not exist: {sorted(set(no_anchor))}"


def test_bibliography_lists_every_reference(browser, site):
    """book/references.md shows every entry of references.bib, and chapter citations link to it."""
    bib = (ROOT / "references.bib").read_text(encoding="utf-8")
    keys = re.findall(r"^@\w+\{([^,\s]+),", bib, flags=re.MULTILINE)
    assert len(keys) >= 14, f"references.bib has only {len(keys)} entries: {keys}"
    page = visit(browser, site, "book/references")
    assert page.bib_entries == len(keys), (
        f"the References page lists {page.bib_entries} entries, references.bib has {len(keys)}"
    )
    for chapter in PAGES:
        for href in visit(browser, site, chapter).citations:
            assert "/book/references.html#" in href, f"{chapter}: citation {href} misses the list"
