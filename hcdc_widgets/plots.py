"""bokeh figures of a post-processing run, embedded in ipywidgets (BokehJS inline, no CDN).

The figures are bokeh models; :func:`plot_widget` wraps one in an
:class:`ipywidgets.HTML` through :mod:`hcdc_widgets.dashboards.embed` (the page loads
``bokeh.resources.INLINE`` once — :func:`bokeh_setup` — and renders every plot
container that appears), so they stay interactive (pan, zoom, hover) in
JupyterLab, Notebook 7 and Voilà alike.
"""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np
from bokeh.models import ColorBar, ColumnDataSource, HoverTool, LinearColorMapper
from bokeh.plotting import figure

from .dashboards.embed import plot_html, setup_html

SIZE = 360


def bokeh_setup():
    """What a notebook displays once before any plot: BokehJS (inline) and the embedder."""
    from IPython.display import HTML

    return HTML(setup_html())


def plot_widget(model, name: str) -> widgets.HTML:
    return widgets.HTML(plot_html(model, name))


def image_figure(
    image: np.ndarray, title: str, name: str, candidates=(), palette: str = "Inferno256", symmetric: bool = False
):
    """An image with a colour bar (and candidates as circles)."""
    image = np.asarray(image, dtype=float)
    ny, nx = image.shape
    finite = image[np.isfinite(image)]
    lo, hi = np.percentile(finite, [0.5, 99.7]) if finite.size else (0.0, 1.0)
    if symmetric:
        hi = max(abs(lo), abs(hi)) or 1.0
        lo = -hi
    mapper = LinearColorMapper(palette=palette, low=float(lo), high=float(hi) if hi > lo else float(lo) + 1)
    fig = figure(
        title=title,
        width=SIZE + 60,
        height=SIZE,
        x_range=(-0.5, nx - 0.5),
        y_range=(-0.5, ny - 0.5),
        match_aspect=True,
        tools="pan,wheel_zoom,box_zoom,reset,save",
        name=name,
    )
    fig.image(image=[np.nan_to_num(image).astype(np.float32)], x=-0.5, y=-0.5, dw=nx, dh=ny, color_mapper=mapper)
    fig.add_layout(ColorBar(color_mapper=mapper, width=10), "right")
    if len(candidates):
        source = ColumnDataSource(
            {
                "x": [c.x for c in candidates],
                "y": [c.y for c in candidates],
                "snr": [round(c.snr, 2) for c in candidates],
                "id": list(range(1, len(candidates) + 1)),
            },
            name="candidates",
        )
        circles = fig.scatter("x", "y", source=source, size=18, fill_alpha=0, line_color="cyan", line_width=2)
        fig.text("x", "y", text="id", source=source, x_offset=9, y_offset=-9, text_color="cyan", text_font_size="11px")
        fig.add_tools(
            HoverTool(renderers=[circles], tooltips=[("#", "@id"), ("x, y", "@x{0.0}, @y{0.0}"), ("S/N", "@snr")])
        )
    return fig


def angles_figure(angles: np.ndarray, name: str = "angles"):
    angles = np.asarray(angles, dtype=float)
    source = ColumnDataSource({"frame": np.arange(len(angles)), "angle": angles}, name="angles")
    fig = figure(
        title=f"derotation angles ({angles.max() - angles.min():.1f}° of rotation)",
        width=SIZE,
        height=220,
        tools="pan,wheel_zoom,reset,hover",
        tooltips=[("frame", "@frame"), ("angle", "@angle{0.00}°")],
        name=name,
    )
    fig.line("frame", "angle", source=source)
    fig.scatter("frame", "angle", source=source, size=4)
    fig.xaxis.axis_label = "frame"
    fig.yaxis.axis_label = "angle (deg)"
    return fig


def contrast_figure(curve, name: str = "contrast"):
    """The detection limit against separation (contrast when the star flux is known, else flux)."""
    sep = curve.separation_arcsec if curve.separation_arcsec is not None else curve.separation_px
    values = curve.contrast if curve.contrast is not None else curve.flux_limit
    good = np.isfinite(sep) & np.isfinite(values) & (np.asarray(values) > 0)
    source = ColumnDataSource(
        {
            "sep": np.asarray(sep)[good],
            "limit": np.asarray(values)[good],
            "throughput": np.asarray(curve.throughput)[good],
        },
        name="contrast",
    )
    unit = "arcsec" if curve.separation_arcsec is not None else "px"
    what = "contrast" if curve.contrast is not None else "flux"
    fig = figure(
        title=f"{curve.sigma:g}σ {what} limit",
        width=SIZE + 60,
        height=SIZE,
        y_axis_type="log",
        tools="pan,wheel_zoom,box_zoom,reset,save,hover",
        tooltips=[("sep", f"@sep{{0.000}} {unit}"), (what, "@limit{0.00e}"), ("throughput", "@throughput{0.00}")],
        name=name,
    )
    fig.line("sep", "limit", source=source, line_width=2)
    fig.scatter("sep", "limit", source=source, size=5)
    fig.xaxis.axis_label = f"separation ({unit})"
    fig.yaxis.axis_label = f"{curve.sigma:g}σ {what}"
    return fig
