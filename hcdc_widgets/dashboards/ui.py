"""Shared ipywidgets pieces of the dashboards: page frame, messages, tables, filters, downloads.

Everything a person reads is escaped HTML; numbers a test (or a script) may
want to read carry ``data-hcdc`` attributes.
"""

from __future__ import annotations

import base64
import html
import logging
import os
import traceback
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Callable, Iterable, Sequence

import ipywidgets as w
import numpy as np
import pandas as pd

from hcdc.access import Principal
from hcdc.dashboards.config import DashboardSettings, get_dashboard_settings
from hcdc.dashboards.context import CatalogUnavailable, NoViewer, Viewer, current_viewer, open_catalog
from hcdc.dashboards.queries import Choices, Filters
from hcdc.dashboards.snapshots import PAGES as FIRST_PAINT_PAGES
from hcdc.dashboards.snapshots import FirstPaintStore, fingerprint

from .embed import setup_html

log = logging.getLogger("hcdc.dashboards")

ALL = "(all)"


# --- text ---------------------------------------------------------------------------------------


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def fmt(value: Any, spec: str = "") -> str:
    """A cell's text: '' for missing values, numbers with ``spec``."""
    if value is None or value is pd.NaT:
        return ""
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return ""
        return format(float(value), spec) if spec else f"{float(value):.4g}"
    if isinstance(value, (int, np.integer)):
        return format(int(value), spec) if spec else str(int(value))
    if isinstance(value, datetime):  # pandas Timestamps too
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def message(text: str, kind: str = "info", key: str | None = None) -> str:
    """A message box (kind: info, warning, error, empty)."""
    attribute = f' data-hcdc="{esc(key)}"' if key else ""
    return f'<div class="hcdc-message hcdc-{esc(kind)}"{attribute}>{text}</div>'


def cards(items: Sequence[tuple[Any, str, str]]) -> str:
    """Big numbers: (value, label, data-hcdc key)."""
    body = "".join(
        f'<div class="hcdc-card"><div class="hcdc-card-value" data-hcdc="{esc(key)}">{esc(fmt(value))}</div>'
        f'<div class="hcdc-card-label">{esc(label)}</div></div>'
        for value, label, key in items
    )
    return f'<div class="hcdc-cards">{body}</div>'


@dataclass(frozen=True)
class Column:
    name: str
    header: str
    spec: str = ""
    #: optional: row -> HTML of the cell (escaped by the caller)
    render: Callable[[dict], str] | None = None


def table(
    frame: pd.DataFrame,
    columns: Sequence[Column],
    key: str,
    max_rows: int | None = None,
    row_key: str = "id",
    caption: str | None = None,
) -> str:
    """An HTML table of ``frame`` (``data-hcdc=key``; rows ``data-id``; cells ``data-col``)."""
    head = "".join(f"<th>{esc(c.header)}</th>" for c in columns)
    records = frame.to_dict("records")
    shown = records if max_rows is None else records[:max_rows]
    rows = []
    for record in shown:
        cells = []
        for column in columns:
            content = column.render(record) if column.render else esc(fmt(record.get(column.name), column.spec))
            cells.append(f'<td data-col="{esc(column.name)}">{content}</td>')
        rows.append(f'<tr data-id="{esc(fmt(record.get(row_key)))}">{"".join(cells)}</tr>')
    note = ""
    if max_rows is not None and len(records) > max_rows:
        note = f'<div class="hcdc-note">{max_rows} of {len(records)} rows shown; the export holds them all.</div>'
    caption_html = f"<caption>{esc(caption)}</caption>" if caption else ""
    return (
        f'<div class="hcdc-table-wrap"><table class="hcdc-table" data-hcdc="{esc(key)}" '
        f'data-rows="{len(records)}">{caption_html}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>{note}"
    )


def link(url: str, text: str, key: str | None = None) -> str:
    attribute = f' data-hcdc="{esc(key)}"' if key else ""
    return f'<a href="{esc(url)}" target="_blank" rel="noopener"{attribute}>{esc(text)}</a>'


def download_link(data: bytes, filename: str, mime: str, text: str, key: str) -> str:
    encoded = base64.b64encode(data).decode()
    return (
        f'<a class="hcdc-download" download="{esc(filename)}" data-hcdc="{esc(key)}" '
        f'href="data:{esc(mime)};base64,{encoded}">{esc(text)}</a>'
    )


def server_url(path: str) -> str:
    """URL of a dashboards-server endpoint (the kernel knows the server's base URL from Voilà)."""
    base = os.environ.get("HCDC_DASHBOARDS_BASE_URL") or os.environ.get("VOILA_BASE_URL") or "/"
    return base.rstrip("/") + "/" + path.lstrip("/")


def reduction_url(reduction_id: int, what: str) -> str:
    return server_url(f"hcdc/reductions/{int(reduction_id)}/{what}")


# --- the page -----------------------------------------------------------------------------------


class Page:
    """The frame of a dashboard: title, who is looking, then the body (or a clear message).

    Subclasses implement :meth:`build` (returns the body widget) and use
    :meth:`guard` around anything that queries the catalog, so that a failure
    becomes a sentence on the page (and a traceback in the server log).
    """

    title = "HC-DC"
    name = "dashboard"

    def __init__(self, viewer: Viewer | None = None, catalog=None, settings: DashboardSettings | None = None):
        self.settings = settings or get_dashboard_settings()
        self.problem: str | None = None
        try:
            self.viewer = viewer or current_viewer()
        except NoViewer as exc:
            self.viewer, self.problem = None, str(exc)
        self.catalog = catalog
        if self.catalog is None and self.problem is None:
            try:
                self.catalog = open_catalog()
            except CatalogUnavailable as exc:
                self.problem = str(exc)
        self.principal: Principal | None = None
        self.failed = False  #: something on the page could not be done (see guard)
        #: where this page's first paint is kept for its viewer's next visit (dashboards server's kernels), and
        #: the catalog's fingerprint read before anything else (a write after it makes the stored page stale)
        self.first_paint_store = FirstPaintStore.from_environment()
        self.first_paint_fingerprint: str | None = None
        if self.problem is None and self.first_paint_store is not None and self.name in FIRST_PAINT_PAGES:
            try:
                self.first_paint_fingerprint = fingerprint(self.catalog, self.settings)
            except Exception:  # an optimisation only: the page is built and shown all the same
                log.exception("cannot read the catalog's fingerprint")
        if self.problem is None:
            try:
                with self.catalog.session() as session:
                    self.principal = self.viewer.principal(session)
            except Exception as exc:  # an uninitialised database, a wrong URL...
                log.exception("cannot read the catalog")
                self.problem = f"The catalog cannot be read: {esc(exc)}"
        self.banner = w.HTML(self._banner_html())
        self.body = w.VBox([], layout=w.Layout(width="100%"))
        self.root = w.VBox([self.banner, self.body], layout=w.Layout(width="100%"))
        self.root.add_class("hcdc-page")
        self.root.add_class(f"hcdc-page-{self.name}")

    def _banner_html(self) -> str:
        if self.viewer is None or self.principal is None:
            who = "Nobody identified"
        else:
            who = self.viewer.describe(self.principal)
        kind = "hcdc-staff" if self.viewer is not None and self.viewer.all_rows else "hcdc-user"
        return (
            f'<div class="hcdc-banner {kind}"><h1 class="hcdc-title">{esc(self.title)}</h1>'
            f'<div class="hcdc-viewer" data-hcdc="viewer">{esc(who)}</div></div>'
        )

    def guard(self, action: str, function: Callable[[], Any], target: w.HTML | None = None) -> Any:
        """Run ``function``; on failure show what could not be done (and log the traceback)."""
        try:
            return function()
        except Exception as exc:
            self.failed = True  # a page showing a failure is not kept as a first paint
            log.error("%s failed:\n%s", action, traceback.format_exc())
            text = message(f"Could not {esc(action)}: {esc(type(exc).__name__)}: {esc(exc)}", "error", key="error")
            if target is not None:
                target.value = text
            else:
                self.body.children = [w.HTML(text)]
            return None

    def build(self) -> w.Widget:  # pragma: no cover - abstract
        raise NotImplementedError

    def widget(self) -> w.Widget:
        if self.problem is not None:
            self.body.children = [w.HTML(message(self.problem, "error", key="problem"))]
        else:
            built = self.guard(f"build the {self.title.lower()}", self.build)
            if built is not None:
                self.body.children = [built]
        return self.root

    def show(self) -> None:
        from IPython.display import HTML, display

        display(HTML(setup_html()))
        display(self.widget())
        self.keep_first_paint()

    def keep_first_paint(self) -> None:
        """Store the page as built (before any interaction) as its viewer's next first paint."""
        if (
            self.first_paint_store is None
            or self.first_paint_fingerprint is None
            or self.viewer is None
            or self.problem is not None
            or self.failed
        ):
            return
        from .snapshot import page_snapshot

        try:
            self.first_paint_store.save(self.name, self.viewer, self.first_paint_fingerprint, page_snapshot(self.root))
        except Exception:  # an optimisation only: the next visit waits for the live page
            log.exception("cannot store the %s page's first paint", self.name)


# --- filters ------------------------------------------------------------------------------------


class FilterBar:
    """Instrument, mode, filter and date range; calls ``on_change(filters)`` on every change."""

    def __init__(self, choices: Choices, on_change: Callable[[Filters], None]):
        self._on_change = on_change
        self.instrument = w.Dropdown(
            options=[ALL, *choices.instruments], value=ALL, description="Instrument", layout=w.Layout(width="240px")
        )
        self.mode = w.Dropdown(
            options=[ALL, *choices.modes], value=ALL, description="Mode", layout=w.Layout(width="200px")
        )
        self.filter = w.Dropdown(
            options=[ALL, *choices.filters], value=ALL, description="Filter", layout=w.Layout(width="200px")
        )
        self.night_from = w.DatePicker(value=None, description="From", layout=w.Layout(width="230px"))
        self.night_to = w.DatePicker(value=None, description="To", layout=w.Layout(width="230px"))
        for control, name in (
            (self.instrument, "instrument"),
            (self.mode, "mode"),
            (self.filter, "filter"),
            (self.night_from, "night-from"),
            (self.night_to, "night-to"),
        ):
            control.add_class(f"hcdc-filter-{name}")
            control.style.description_width = "70px"
            control.observe(self._changed, names="value")
        hint = w.HTML(
            f'<span class="hcdc-note">nights {fmt(choices.first_night)} to {fmt(choices.last_night)}</span>'
            if choices.first_night
            else ""
        )
        self.widget = w.HBox(
            [self.instrument, self.mode, self.filter, self.night_from, self.night_to, hint],
            layout=w.Layout(flex_flow="row wrap", align_items="center"),
        )
        self.widget.add_class("hcdc-filters")

    @property
    def filters(self) -> Filters:
        def pick(control):
            return None if control.value in (ALL, None, "") else control.value

        return Filters(
            instrument=pick(self.instrument),
            mode=pick(self.mode),
            filter=pick(self.filter),
            night_from=self.night_from.value,
            night_to=self.night_to.value,
        )

    def _changed(self, _change) -> None:
        self._on_change(self.filters)


def section(title: str, *children: w.Widget, key: str, note: str | None = None) -> w.VBox:
    header = f'<h2 class="hcdc-section-title">{esc(title)}</h2>'
    if note:
        header += f'<div class="hcdc-note">{note}</div>'
    box = w.VBox([w.HTML(header), *children], layout=w.Layout(width="100%"))
    box.add_class("hcdc-section")
    box.add_class(f"hcdc-section-{key}")
    return box


def plural(n: int, word: str, plural_form: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural_form or word + 's')}"


def first_line(text: Any, limit: int = 160) -> str:
    if not text:
        return ""
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def unique(values: Iterable[Any]) -> list[Any]:
    seen, out = set(), []
    for value in values:
        if value not in seen:
            seen.add(value)
            out.append(value)
    return out
