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
    image: np.ndarray,
    title: str,
    name: str,
    candidates=(),
    palette: str = "Inferno256",
    symmetric: bool = False,
    pixel_scale_arcsec: float | None = None,
    north_up: bool = False,
):
    """An image with a colour bar (and candidates as circles).

    With ``pixel_scale_arcsec`` the axes are offsets from the star in arcsec (the star at the centre
    pixel of :func:`reduction.conventions.star_centre`). A ``north_up`` image (a derotated one: north
    up, east left, the convention of :mod:`reduction.conventions`) has axes ΔRA (increasing to the
    left, east) and ΔDec, and a north/east compass; other images (a frame as observed) have Δx, Δy.
    Without a pixel scale the axes are pixels.
    """
    from reduction.conventions import star_centre

    image = np.asarray(image, dtype=float)
    ny, nx = image.shape
    finite = image[np.isfinite(image)]
    lo, hi = np.percentile(finite, [0.5, 99.7]) if finite.size else (0.0, 1.0)
    if symmetric:
        hi = max(abs(lo), abs(hi)) or 1.0
        lo = -hi
    mapper = LinearColorMapper(palette=palette, low=float(lo), high=float(hi) if hi > lo else float(lo) + 1)
    cy, cx = star_centre((ny, nx))
    scale = float(pixel_scale_arcsec) if pixel_scale_arcsec else None
    data = np.nan_to_num(image).astype(np.float32)
    if scale is None:
        x0, dw, x_range = -0.5, nx, (-0.5, nx - 0.5)
        y0, dh, y_range = -0.5, ny, (-0.5, ny - 0.5)
    elif north_up:
        # ΔRA = -(x - cx) * scale grows to the left: the columns are drawn flipped on a reversed axis,
        # so the picture is the same as in pixels and the axis reads east-positive
        data = data[:, ::-1]
        x0, dw = -(nx - 0.5 - cx) * scale, nx * scale
        x_range = (x0 + dw, x0)
        y0, dh = -(cy + 0.5) * scale, ny * scale
        y_range = (y0, y0 + dh)
    else:
        x0, dw = -(cx + 0.5) * scale, nx * scale
        y0, dh = -(cy + 0.5) * scale, ny * scale
        x_range, y_range = (x0, x0 + dw), (y0, y0 + dh)
    fig = figure(
        title=title,
        width=SIZE + 60,
        height=SIZE,
        x_range=x_range,
        y_range=y_range,
        match_aspect=True,
        tools="pan,wheel_zoom,box_zoom,reset,save",
        name=name,
    )
    fig.image(image=[data], x=x0, y=y0, dw=dw, dh=dh, color_mapper=mapper)
    fig.add_layout(ColorBar(color_mapper=mapper, width=10), "right")
    if scale is None:
        fig.xaxis.axis_label, fig.yaxis.axis_label = "x (px)", "y (px)"
    elif north_up:
        fig.xaxis.axis_label, fig.yaxis.axis_label = "ΔRA (arcsec, east left)", "ΔDec (arcsec)"
        _compass(fig, x_range, y_range)
    else:
        fig.xaxis.axis_label, fig.yaxis.axis_label = "Δx (arcsec)", "Δy (arcsec)"

    def plotted(x, y):  # pixel -> the figure's coordinates
        if scale is None:
            return x, y
        return ((cx - x) if north_up else (x - cx)) * scale, (y - cy) * scale

    if len(candidates):
        xy = [plotted(c.x, c.y) for c in candidates]
        source = ColumnDataSource(
            {
                "x": [p[0] for p in xy],
                "y": [p[1] for p in xy],
                "px": [c.x for c in candidates],
                "py": [c.y for c in candidates],
                "snr": [round(c.snr, 2) for c in candidates],
                "id": list(range(1, len(candidates) + 1)),
            },
            name="candidates",
        )
        circles = fig.scatter("x", "y", source=source, size=18, fill_alpha=0, line_color="cyan", line_width=2)
        fig.text("x", "y", text="id", source=source, x_offset=9, y_offset=-9, text_color="cyan", text_font_size="11px")
        tooltips = [("#", "@id"), ("x, y (px)", "@px{0.0}, @py{0.0}"), ("S/N", "@snr")]
        if scale is not None:
            tooltips.insert(2, ("offset (arcsec)", "@x{0.000}, @y{0.000}"))
        fig.add_tools(HoverTool(renderers=[circles], tooltips=tooltips))
    return fig


def _compass(fig, x_range, y_range) -> None:
    """North (up) and east (left) arrows in the lower right corner of a north-up figure."""
    from bokeh.models import Arrow, Label, VeeHead

    span_x, span_y = x_range[0] - x_range[1], y_range[1] - y_range[0]  # x_range is reversed (east left)
    length = 0.15 * min(span_x, span_y)
    ox, oy = x_range[1] + 0.1 * span_x, y_range[0] + 0.1 * span_y  # near the lower right corner
    for dx, dy, text in ((0.0, length, "N"), (length, 0.0, "E")):
        fig.add_layout(
            Arrow(
                end=VeeHead(size=8, line_color="white", fill_color="white"),
                x_start=ox,
                y_start=oy,
                x_end=ox + dx,
                y_end=oy + dy,
                line_color="white",
                line_width=2,
                name=f"compass-{text}",
            )
        )
        fig.add_layout(
            Label(
                x=ox + 1.25 * dx,
                y=oy + 1.25 * dy,
                text=text,
                text_color="white",
                text_font_size="11px",
                text_align="center",
                text_baseline="middle",
            )
        )


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
