"""Sphinx extension: stop inline scripts from being written twice into every page.

Sphinx 7.4's ``app.add_js_file(None, body=...)`` called after the HTML builder started stores the
script on the builder with ``filename=None``; ``prepare_writing`` then adds the same script again from
the registry with ``filename=""``. The two never compare equal, so sphinx-thebe's
``const THEBE_JS_URL = ...`` is emitted twice and every page throws
``SyntaxError: Identifier 'THEBE_JS_URL' has already been declared`` (sphinx-togglebutton's
``var togglebuttonSelector`` is duplicated the same way, harmlessly).

After reading, this renames the ``None`` entries to ``""`` (dropping duplicates), so the registry
copies added later are recognised as the same script. Loaded from ``_config.yml``
(``sphinx.local_extensions``); ``tests/test_website.py`` fails on the page error without it.
"""

from __future__ import annotations

from sphinx.application import Sphinx


def _normalise_inline_scripts(app: Sphinx, env) -> None:
    builder = app.builder
    scripts = getattr(builder, "_js_files", None)
    if scripts is None:  # not an HTML builder
        return
    js_class = type(scripts[0]) if scripts else None
    unique = []
    for js in scripts:
        if js.filename is None:
            js = js_class("", priority=js.priority, **js.attributes)
        if js not in unique:
            unique.append(js)
    scripts[:] = unique


def setup(app: Sphinx) -> dict:
    # env-updated runs after every read (extensions add their inline scripts before or during it)
    # and before the builder's prepare_writing merges in the registry's copies.
    app.connect("env-updated", _normalise_inline_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
