"""The dashboards' pages (ipywidgets + bokeh), shown by the notebooks of ``notebooks/dashboards``.

* ``page_*`` — the three pages (instrument monitoring, pipeline status, catalog browser), :func:`show`;
* :mod:`.figures` — bokeh figure builders; :mod:`.embed` — BokehJS inline; :mod:`.ui` — the pieces a page
  is made of (filters, tables, cards, messages);
* :mod:`.preload` — imported by the Voilà server's pooled kernels.

The data come from :mod:`hcdc.dashboards` (queries filtered by the access rule, outlier nights,
exports); the pages only show them.
"""

from __future__ import annotations

PAGES = {
    "monitoring": ("hcdc_widgets.dashboards.page_monitoring", "MonitoringPage"),
    "pipeline": ("hcdc_widgets.dashboards.page_pipeline", "PipelinePage"),
    "browser": ("hcdc_widgets.dashboards.page_browser", "BrowserPage"),
}


def page(name: str, **kwargs):
    """The dashboard page ``name`` (monitoring, pipeline, browser) for the current viewer."""
    import importlib

    module, cls = PAGES[name]
    return getattr(importlib.import_module(module), cls)(**kwargs)


def show(name: str, **kwargs) -> None:
    """Display dashboard ``name`` in a notebook (what the notebooks of notebooks/dashboards do)."""
    page(name, **kwargs).show()
