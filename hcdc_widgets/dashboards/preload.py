"""Imported by every dashboards kernel at start (kernel spec ``exec_lines``): the heavy libraries.

Kernels of the server's pool (:class:`hcdc.dashboards.server.DashboardKernelManager`)
start before any request, so a page served from the pool does not wait for
pandas, bokeh, SQLAlchemy and ipywidgets to import.
"""

import hcdc_widgets.dashboards.page_browser  # noqa: F401
import hcdc_widgets.dashboards.page_monitoring  # noqa: F401
import hcdc_widgets.dashboards.page_pipeline  # noqa: F401
