"""A dashboard page as static HTML: what the browser shows while the live page starts.

Voilà cannot show a page before its JavaScript (about 1.7 s of CPU on 2 cores)
has loaded, connected to the page's kernel and drawn the widgets; a page that
queries 10,000 observations first took 4-9 s to appear. The server therefore
keeps, per viewer and page, the HTML of the page as that viewer last saw it
(:mod:`hcdc.dashboards.snapshots`) and sends it at the top of the response;
the live widgets replace it once drawn. A snapshot is only served while the
catalog has not changed since it was made, so it shows exactly what the live
page will.

:func:`widget_html` renders an ipywidgets tree as the DOM ipywidgets would
make (its classes, so the same CSS applies): boxes as flex boxes, HTML widgets
as their value, controls disabled with their current value, the selected tab
only. Bokeh plots in HTML values are drawn by the same embedder as the live
page (:mod:`.embed`). Each widget value passes an allowlist of tags and
attributes (:func:`safe_value`): no script, event handler, frame or
``javascript:`` link of a value survives, only the plots' JSON payloads.
"""

from __future__ import annotations

import html
import re
import time
from datetime import date
from html.parser import HTMLParser

import ipywidgets as w

from .embed import setup_html

#: What a widget value may hold in a static page (our pages' HTML: text, tables, links, images, the plots'
#: JSON payloads). Anything else is shown as text, and attributes outside the list are dropped: a script,
#: an event handler, a base, meta or frame element, an unclosed textarea or comment would act in a parsed
#: page (unlike in a live widget, where scripts do not run) or swallow the hand-over to the live page.
ALLOWED_TAGS = frozenset(
    "a abbr b br caption code col colgroup dd del details div dl dt em h1 h2 h3 h4 h5 h6 hr i img ins kbd "
    "label li mark ol p pre q s samp small span strong sub summary sup table tbody td tfoot th thead tr u ul "
    "var".split()
)
_VOID_TAGS = frozenset({"br", "col", "hr", "img"})
ALLOWED_ATTRIBUTES = frozenset(
    "alt class colspan download height href id open rel rowspan scope src start style target title width".split()
)
_DATA_ATTRIBUTE = re.compile(r"data-[a-z0-9_.-]+")
_BAD_URL = re.compile(r"^(javascript|vbscript|data:text/html)", re.IGNORECASE)
#: the one script a value may hold: a plot's payload (``embed.plot_html``), exactly so
_JSON_SCRIPT = [("type", "application/json")]


class _Sanitiser(HTMLParser):
    """Re-writes HTML keeping only :data:`ALLOWED_TAGS` and :data:`ALLOWED_ATTRIBUTES` (and ``data-*``)."""

    def __init__(self):
        super().__init__(convert_charrefs=False)
        self.out: list[str] = []
        self.in_payload = False

    def _attributes(self, attributes) -> str:
        kept = []
        for name, value in attributes:
            if name not in ALLOWED_ATTRIBUTES and not _DATA_ATTRIBUTE.fullmatch(name):
                continue
            value = value or ""
            if name in ("href", "src") and _BAD_URL.match(re.sub(r"[\x00-\x20]", "", value)):
                continue
            kept.append(f' {name}="{html.escape(value, quote=True)}"')
        return "".join(kept)

    def handle_starttag(self, tag, attributes):
        if tag == "script" and attributes == _JSON_SCRIPT:
            self.in_payload = True
            self.out.append('<script type="application/json">')
        elif tag in ALLOWED_TAGS:
            self.out.append(f"<{tag}{self._attributes(attributes)}>")
        else:
            self.out.append(html.escape(self.get_starttag_text() or ""))

    def handle_startendtag(self, tag, attributes):
        if tag in ALLOWED_TAGS:
            self.out.append(f"<{tag}{self._attributes(attributes)}>")
        else:
            self.out.append(html.escape(self.get_starttag_text() or ""))

    def handle_endtag(self, tag):
        if tag == "script" and self.in_payload:
            self.in_payload = False
            self.out.append("</script>")
        elif tag in ALLOWED_TAGS and tag not in _VOID_TAGS:
            self.out.append(f"</{tag}>")
        else:
            self.out.append(html.escape(f"</{tag}>"))

    def handle_data(self, data):
        # a payload is JSON with "</" escaped (embed.plot_html): kept as it is
        self.out.append(data if self.in_payload else html.escape(data, quote=False))

    def handle_entityref(self, name):
        self.out.append(f"&{name};")

    def handle_charref(self, name):
        self.out.append(f"&#{name};")

    def unknown_decl(self, data):
        self.out.append(html.escape(f"<![{data}]>"))


_LAYOUT_CSS = {
    "width": "width",
    "height": "height",
    "min_width": "min-width",
    "max_width": "max-width",
    "min_height": "min-height",
    "max_height": "max-height",
    "flex": "flex",
    "flex_flow": "flex-flow",
    "align_items": "align-items",
    "align_content": "align-content",
    "justify_content": "justify-content",
    "margin": "margin",
    "padding": "padding",
    "border": "border",
    "overflow": "overflow",
    "grid_template_columns": "grid-template-columns",
    "grid_template_rows": "grid-template-rows",
    "grid_gap": "grid-gap",
}


def _esc(value) -> str:
    return html.escape("" if value is None else str(value))


def _css(widget: w.Widget) -> list[str]:
    layout = getattr(widget, "layout", None)
    hidden = _hidden(widget)
    parts: list[str] = []
    if layout is None:
        return parts
    for trait, css in _LAYOUT_CSS.items():
        value = getattr(layout, trait, None)
        if value not in (None, "") and not hidden:
            parts.append(f"{css}: {value}")
    return parts


def _style(widget: w.Widget, *first: str) -> str:
    parts = [*first, *_css(widget)]
    return f' style="{_esc("; ".join(parts))}"' if parts else ""


def _classes(widget: w.Widget, *base: str) -> str:
    return " ".join([*base, *getattr(widget, "_dom_classes", ())])


def _hidden(widget: w.Widget) -> bool:
    """Hidden by its layout (display none or visibility hidden)."""
    layout = getattr(widget, "layout", None)
    return layout is not None and (layout.display == "none" or layout.visibility == "hidden")


def safe_value(value: str) -> str:
    """An HTML widget's value for a static page, through the allowlist of ``_Sanitiser``."""
    sanitiser = _Sanitiser()
    sanitiser.feed(value or "")
    sanitiser.close()
    if sanitiser.in_payload:  # an unclosed payload: close it, so that the page goes on
        sanitiser.out.append("</script>")
    return "".join(sanitiser.out)


def _description(widget: w.Widget) -> str:
    text = getattr(widget, "description", "") or ""
    return f'<label class="widget-label">{_esc(text)}</label>' if text else ""


def _control(widget: w.Widget, inner: str) -> str:
    return (
        f'<div class="{_classes(widget, "lm-Widget", "widget-inline-hbox", "hcdc-snapshot-control")}"'
        f"{_style(widget)}>{_description(widget)}{inner}</div>"
    )


def _value_text(widget: w.Widget) -> str:
    if isinstance(widget, (w.Dropdown, w.Select, w.RadioButtons, w.ToggleButtons)):
        label = getattr(widget, "label", None)
        return "" if label is None else str(label)
    value = getattr(widget, "value", None)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def _output(widget: w.Output) -> str:
    parts = []
    for output in widget.outputs:
        data = output.get("data", {}) if isinstance(output, dict) else {}
        if "text/html" in data:
            parts.append(safe_value("".join(data["text/html"])))
        elif "text/plain" in data:
            parts.append(f"<pre>{_esc(''.join(data['text/plain']))}</pre>")
        elif output.get("output_type") == "stream":
            parts.append(f"<pre>{_esc(''.join(output.get('text', '')))}</pre>")
    return "".join(parts)


def widget_html(widget: w.Widget, _unhide: bool = False) -> str:
    """Static HTML of ``widget`` and its children (controls disabled, showing their current value)."""
    if _hidden(widget) and not _unhide:  # kept (a hidden HTML widget may carry a plot payload), not shown
        return f'<div style="display: none">{widget_html(widget, _unhide=True)}</div>'
    if isinstance(widget, (w.Tab, w.Accordion)):
        index = widget.selected_index if widget.selected_index is not None else 0
        titles = list(getattr(widget, "titles", ()) or ())
        children = list(widget.children)
        tabs = "".join(
            f'<span class="hcdc-snapshot-tab{" hcdc-snapshot-tab-selected" if i == index else ""}">'
            f"{_esc(titles[i] if i < len(titles) else '')}</span>"
            for i in range(len(children))
        )
        body = widget_html(children[index]) if 0 <= index < len(children) else ""
        return (
            f'<div class="{_classes(widget, "lm-Widget", "hcdc-snapshot-tabs")}"{_style(widget)}>'
            f'<div class="hcdc-snapshot-tabbar">{tabs}</div>{body}</div>'
        )
    if isinstance(widget, w.Box):
        direction = "row" if isinstance(widget, w.HBox) else "column"
        kind = "widget-hbox" if isinstance(widget, w.HBox) else "widget-vbox" if isinstance(widget, w.VBox) else ""
        inner = "".join(widget_html(child) for child in widget.children)
        display = "grid" if isinstance(widget, w.GridBox) else "flex"
        style = _style(widget, f"display: {display}", f"flex-direction: {direction}")
        classes = _classes(widget, "lm-Widget", "widget-container", "widget-box", kind)
        return f'<div class="{classes}"{style}>{inner}</div>'
    if isinstance(widget, (w.HTML, w.HTMLMath)):
        return (
            f'<div class="{_classes(widget, "lm-Widget", "widget-inline-hbox", "widget-html")}"{_style(widget)}>'
            f'{_description(widget)}<div class="widget-html-content">{safe_value(widget.value)}</div></div>'
        )
    if isinstance(widget, w.Label):
        classes = _classes(widget, "lm-Widget", "widget-label")
        return f'<div class="{classes}"{_style(widget)}>{_esc(widget.value)}</div>'
    if isinstance(widget, w.Button):
        return (
            f'<button class="{_classes(widget, "lm-Widget", "jupyter-button", "widget-button")}" disabled'
            f"{_style(widget)}>{_esc(widget.description)}</button>"
        )
    if isinstance(widget, w.Output):
        return f'<div class="{_classes(widget, "lm-Widget", "widget-output")}"{_style(widget)}>{_output(widget)}</div>'
    if isinstance(widget, w.Checkbox):
        checked = " checked" if widget.value else ""
        return _control(widget, f'<input type="checkbox" disabled{checked}>')
    if isinstance(widget, w.Image):
        import base64

        data = base64.b64encode(bytes(widget.value)).decode()
        classes = _classes(widget, "lm-Widget", "widget-image")
        return f'<img class="{classes}" src="data:image/{_esc(widget.format)};base64,{data}">'
    if isinstance(widget, w.DOMWidget) and hasattr(widget, "value"):
        return _control(
            widget, f'<input type="text" class="widget-input" disabled value="{_esc(_value_text(widget))}">'
        )
    return f'<div class="{_classes(widget, "lm-Widget", "hcdc-snapshot-unknown")}"></div>'


def page_snapshot(root: w.Widget) -> str:
    """The HTML sent before the live page: BokehJS, the embedder, then the page as :func:`widget_html`."""
    return setup_html() + widget_html(root)


def rebuild(store, catalog, max_age_s: float = 7 * 86400, only_stale: bool = True) -> list[tuple[str, str, float]]:
    """Build again every stored first paint (used within ``max_age_s``) that the catalog has made stale.

    Each page is built as its viewer's live page is (:func:`hcdc_widgets.dashboards.page` for that viewer:
    the same access rule, on PostgreSQL the same row-level security) and stored under the fingerprint read
    before it was built. Returns (page, viewer key, seconds) of each page built.
    """
    from hcdc.dashboards.config import get_dashboard_settings
    from hcdc.dashboards.snapshots import fingerprint, viewer_key

    from . import page as dashboard_page

    settings = get_dashboard_settings()
    store.prune(max_age_s)
    built = []
    for entry in store.entries(max_age_s):
        stamp = fingerprint(catalog, settings)
        if stamp is None or (only_stale and entry.fingerprint == stamp):
            continue
        started = time.perf_counter()
        view = dashboard_page(entry.page, viewer=entry.viewer, catalog=catalog, settings=settings)
        root = view.widget()
        if view.problem is None and not view.failed:  # a failure is not kept: the next visit tries again
            store.save(entry.page, entry.viewer, stamp, page_snapshot(root), viewed_at=entry.viewed_at)
        built.append((entry.page, viewer_key(entry.viewer), round(time.perf_counter() - started, 2)))
    return built


def main(argv: list[str] | None = None) -> int:
    """``python -m hcdc_widgets.dashboards.snapshot``: rebuild the stale first paints of a data directory."""
    import argparse
    import logging

    from hcdc.dashboards.context import CatalogUnavailable, open_catalog
    from hcdc.dashboards.snapshots import FirstPaintStore
    from hcdc.settings import get_settings

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--max-age-days", type=float, default=7.0, help="Rebuild pages viewed within this many days.")
    parser.add_argument("--all", action="store_true", help="Rebuild every page, stale or not.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    store = FirstPaintStore.from_environment() or FirstPaintStore.for_data_dir(get_settings().data_dir)
    try:
        catalog = open_catalog()
    except CatalogUnavailable as exc:
        print(f"first paints not rebuilt: {exc}")
        return 1
    try:
        for page_name, viewer, seconds in rebuild(store, catalog, args.max_age_days * 86400, not args.all):
            print(f"first paint of {page_name} for {viewer} rebuilt in {seconds:.1f} s", flush=True)
    finally:
        catalog.dispose()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
