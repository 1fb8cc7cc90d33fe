"""HC-DC dashboards: instrument monitoring, pipeline status and the catalog browser (Voilà + bokeh).

Layers, each usable alone:

* :mod:`~hcdc.dashboards.queries` — catalog queries, pure functions of (session, principal, filters) → pandas,
  every protected row filtered by :mod:`hcdc.access`;
* :mod:`~hcdc.dashboards.outliers` and :mod:`~hcdc.dashboards.monitoring` — rolling-baseline outlier nights
  and the atmosphere-or-instrument diagnosis (thresholds: :mod:`~hcdc.dashboards.config`);
* :mod:`~hcdc.dashboards.figures` — bokeh figure builders; :mod:`~hcdc.dashboards.embed` — BokehJS inline;
* :mod:`~hcdc.dashboards.exports` — CSV / ECSV / VOTable of a selection (astropy, :mod:`hcdc.tables`);
* ``page_*`` — the ipywidgets pages the notebooks of ``notebooks/dashboards`` show (:func:`show`);
* :mod:`~hcdc.dashboards.server` — Voilà, standalone for staff or as a hub service
  (``python -m hcdc.dashboards serve [--hub]``).
"""

from __future__ import annotations

PAGES = {
    "monitoring": ("hcdc.dashboards.page_monitoring", "MonitoringPage"),
    "pipeline": ("hcdc.dashboards.page_pipeline", "PipelinePage"),
    "browser": ("hcdc.dashboards.page_browser", "BrowserPage"),
}


def page(name: str, **kwargs):
    """The dashboard page ``name`` (monitoring, pipeline, browser) for the current viewer."""
    import importlib

    module, cls = PAGES[name]
    return getattr(importlib.import_module(module), cls)(**kwargs)


def show(name: str, **kwargs) -> None:
    """Display dashboard ``name`` in a notebook (what the notebooks of notebooks/dashboards do)."""
    page(name, **kwargs).show()
