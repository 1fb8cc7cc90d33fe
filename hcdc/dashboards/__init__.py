"""HC-DC dashboards, the platform's side: what the pages of :mod:`hcdc_widgets.dashboards` show, and the server.

* :mod:`~hcdc.dashboards.queries` — catalog queries, pure functions of (session, principal, filters) → pandas,
  every protected row filtered by :mod:`hcdc.access`;
* :mod:`~hcdc.dashboards.outliers` and :mod:`~hcdc.dashboards.monitoring` — rolling-baseline outlier nights
  and the atmosphere-or-instrument diagnosis (thresholds: :mod:`~hcdc.dashboards.config`);
* :mod:`~hcdc.dashboards.exports` — CSV / ECSV / VOTable of a selection (astropy, :mod:`hcdc.tables`);
* :mod:`~hcdc.dashboards.context` — who is looking, the catalog opened for them;
* :mod:`~hcdc.dashboards.server` — Voilà, standalone for staff or as a hub service
  (``python -m hcdc.dashboards serve [--hub]``), serving ``notebooks/dashboards``.
"""
