"""bokeh figure builders of the dashboards (DataFrames in, bokeh layouts out; no I/O).

Every point has a hover tool naming its observation (or calibration); nights
flagged against the rolling baseline are drawn in red, the baseline itself as
a grey line per series.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import numpy as np
import pandas as pd
from bokeh.layouts import gridplot
from bokeh.models import ColumnDataSource, CustomJSHover, HoverTool, Legend, LegendItem, PrintfTickFormatter, Range1d
from bokeh.palettes import Category10_10
from bokeh.plotting import figure
from bokeh.transform import linear_cmap

from hcdc.dashboards.config import METRICS, contrast_column

NORMAL = "#1f77b4"
FLAGGED = "#d62728"
BASELINE = "#7f7f7f"
STATE_COLOURS = {"done": "#2ca02c", "failed": "#d62728", "running": "#ff7f0e", "pending": "#9e9e9e"}
DIAGNOSIS_COLOURS = {"": NORMAL, "atmosphere": "#ff7f0e", "instrument": FLAGGED, "both": "#9467bd"}
WIDTH, HEIGHT = 540, 250
TOOLS = "pan,box_zoom,wheel_zoom,reset,save"


def _night_x(night: date) -> datetime:
    return datetime.combine(night + timedelta(days=1), time(4, 0))


def _strings(values) -> list[str]:
    return ["" if v is None or (isinstance(v, float) and not np.isfinite(v)) else str(v) for v in values]


def _key_of(value) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def flagged_mask(frame: pd.DataFrame, verdicts: pd.DataFrame, column: str, group_by: tuple[str, ...]) -> np.ndarray:
    """Which rows of ``frame`` fall on a night flagged for ``column`` in their own series."""
    if frame.empty or verdicts.empty:
        return np.zeros(len(frame), dtype=bool)
    flagged = verdicts[(verdicts["metric"] == column) & verdicts["flagged"]]
    keys = {tuple([row["night"]] + [_key_of(row[c]) for c in group_by]) for _, row in flagged.iterrows()}
    if not keys:
        return np.zeros(len(frame), dtype=bool)
    return np.array(
        [
            tuple([n] + [_key_of(v) for v in values]) in keys
            for n, *values in zip(frame["night"], *(frame[c] for c in group_by))
        ],
        dtype=bool,
    )


def _baselines(fig, verdicts: pd.DataFrame, column: str, log: bool = False) -> None:
    """Grey baseline of each series of ``column``: one multi-line for all series (one glyph, not one per series)."""
    if verdicts.empty:
        return
    rows = verdicts[(verdicts["metric"] == column) & verdicts["baseline"].notna()]
    xs, ys = [], []
    for _series, group in rows.groupby("series", sort=True):
        group = group.sort_values("night")
        nights = np.array([_night_x(n) for n in group["night"]], dtype="datetime64[ms]")
        xs.append(nights.astype(np.int64).astype(float))  # milliseconds since the epoch: a datetime axis' unit
        ys.append(group["baseline"].to_numpy(dtype=float))
    if xs:
        source = ColumnDataSource({"xs": xs, "ys": ys}, name=f"baselines {column}")
        fig.multi_line("xs", "ys", source=source, color=BASELINE, line_dash="dashed", line_width=1.5, alpha=0.8)


def time_range(times) -> Range1d | None:
    """A shared time axis; padded to ±1 day when the points span less (a single night, a single point)."""
    values = pd.to_datetime(pd.Series(times)).dropna()
    if values.empty:
        return None
    first, last = values.min(), values.max()
    if last - first >= pd.Timedelta(days=1):
        return None
    middle = first + (last - first) / 2
    return Range1d(middle - pd.Timedelta(days=1), middle + pd.Timedelta(days=1))


def _empty_figure(title: str, message: str, **kwargs):
    fig = figure(title=title, width=WIDTH, height=HEIGHT, tools="", toolbar_location=None, **kwargs)
    fig.text(x=[0.5], y=[0.5], text=[message], text_align="center", text_baseline="middle", text_color="#666666")
    fig.x_range = Range1d(0, 1)
    fig.y_range = Range1d(0, 1)
    fig.axis.visible = False
    fig.grid.visible = False
    return fig


def trend_figure(
    source: ColumnDataSource,
    column: str,
    title: str,
    unit: str,
    verdicts: pd.DataFrame,
    tooltips: list[tuple[str, str]],
    x_range=None,
    log: bool = False,
    name: str | None = None,
):
    """Value of ``column`` against time, red where ``<column>_flag`` is 1, with the series baselines."""
    y_label = f"{title} [{unit}]" if unit else title
    shared = {"x_range": x_range} if x_range is not None else {}
    fig = figure(
        title=title,
        width=WIDTH,
        height=HEIGHT,
        x_axis_type="datetime",
        y_axis_type="log" if log else "linear",
        tools=TOOLS,
        name=name,
        **shared,
    )
    _baselines(fig, verdicts, column, log)
    _ranges(fig, source, column, flag_colour(column))
    renderer = fig.scatter(
        "time", column, source=source, size=7, color=flag_colour(column), alpha=0.85, line_color="white", line_width=0.5
    )
    number = "{0.00e+0}" if log else "{0.[000]}"
    if is_nightly(source):
        shown = NIGHT_TOOLTIPS + [
            (f"{title}, median", f"@{{{column}}}{number}"),
            ("range", f"@{{{column}_min}}{number} – @{{{column}_max}}{number}"),
        ]
    else:
        shown = tooltips + [(title, f"@{{{column}}}{number}")]
    fig.add_tools(HoverTool(renderers=[renderer], formatters=TIME_FORMAT, tooltips=shown))
    fig.yaxis.axis_label = y_label
    fig.xaxis.axis_label = "time (UTC)"
    if log:
        fig.yaxis.formatter = PrintfTickFormatter(format="%.0e")
    return fig


OBSERVATION_TOOLTIPS = [
    ("observation", "@key"),
    ("target", "@target"),
    ("time", "@time{%F %H:%M}"),
    ("filter", "@filter"),
]
TIME_FORMAT = {"@time": "datetime"}
DIAGNOSES = ("normal", "atmosphere", "instrument", "atmosphere and instrument")


def _hover_formatters() -> dict:
    """Tooltip formatters: times, and the night's verdict from its code (no string per observation)."""
    return {**TIME_FORMAT, "@diagnosis_code": CustomJSHover(code=f"return {list(DIAGNOSES)!r}[value] || ''")}


def flag_colour(column: str):
    """Red where the night is flagged for ``column`` (an int8 column ``<column>_flag``), blue otherwise."""
    return linear_cmap(f"{column}_flag", palette=[NORMAL, FLAGGED], low=0, high=1)


def observation_source(
    frame: pd.DataFrame, columns: list[str], verdicts: pd.DataFrame, name: str = "observations"
) -> ColumnDataSource:
    """One ColumnDataSource of the observations for every plot of a page (numbers travel as binary arrays).

    Per metric: the values and an int8 ``<column>_flag`` (1: the night is flagged for that series).
    """
    data = {
        "id": frame["id"].astype(np.int64).to_numpy(),
        "key": _strings(frame["key"]),
        "target": _strings(frame["target"]),
        "filter": _strings(frame["filter"]),
        "time": frame["time"].to_numpy(),
    }
    for column in columns:
        base = "contrast" if column.startswith("contrast_") else column
        data[column] = frame[column].astype(float).to_numpy()
        if base in METRICS:
            data[f"{column}_flag"] = flagged_mask(frame, verdicts, column, METRICS[base].group_by).astype(np.int8)
    return ColumnDataSource(data, name=name)


NIGHT_TOOLTIPS = [("night", "@night"), ("observations", "@n_observations")]


def is_nightly(source: ColumnDataSource) -> bool:
    """Whether ``source`` holds one row per night (:func:`nightly_source`), not one per observation."""
    return "n_observations" in source.data


def nightly_source(
    frame: pd.DataFrame,
    columns: list[str],
    verdicts: pd.DataFrame,
    diagnosis_code: np.ndarray | None = None,
    name: str = "nights",
) -> ColumnDataSource:
    """One row per night of the observations in ``frame``: a plot's level of detail for large selections.

    Per metric: the night's median (``<column>``, NaN values left out), its range (``<column>_min``,
    ``<column>_max``) and ``<column>_flag`` (1: the night is flagged for that series, for any of its
    observations). ``time`` is the night's x position (as the baselines'); ``diagnosis_code``: the night's
    verdict (the same for every observation of a night).
    """
    nights = frame["night"]
    order = sorted(nights.unique())
    data: dict[str, object] = {
        "night": [n.isoformat() for n in order],
        "time": np.array([_night_x(n) for n in order], dtype="datetime64[ns]"),
        "n_observations": nights.value_counts().reindex(order).to_numpy(dtype=np.int64),
    }
    for column in columns:
        base = "contrast" if column.startswith("contrast_") else column
        grouped = frame[column].astype(float).groupby(nights)
        data[column] = grouped.median().reindex(order).to_numpy(dtype=float)
        data[f"{column}_min"] = grouped.min().reindex(order).to_numpy(dtype=float)
        data[f"{column}_max"] = grouped.max().reindex(order).to_numpy(dtype=float)
        if base in METRICS:
            flags = pd.Series(flagged_mask(frame, verdicts, column, METRICS[base].group_by), index=frame.index)
            data[f"{column}_flag"] = flags.groupby(nights).max().reindex(order).to_numpy().astype(np.int8)
    if diagnosis_code is not None:
        codes = pd.Series(diagnosis_code, index=frame.index).groupby(nights).max().reindex(order)
        data["diagnosis_code"] = codes.to_numpy().astype(np.int8)
    return ColumnDataSource(data, name=name)


def _ranges(fig, source: ColumnDataSource, column: str, colour) -> None:
    """A night's range of ``column`` as a vertical bar (nightly sources only)."""
    if is_nightly(source) and f"{column}_min" in source.data:
        fig.segment("time", f"{column}_min", "time", f"{column}_max", source=source, color=colour, alpha=0.3)


CONDITION_COLUMNS = ["seeing_arcsec", "tau0_ms", "airmass", "wind_speed_ms"]
INSTRUMENT_COLUMNS = ["centre_x_px", "centre_y_px", "rejected_fraction", "n_frames", "n_rejected"]


def monitoring_source(
    frame: pd.DataFrame,
    verdicts: pd.DataFrame,
    separations: tuple[float, ...],
    diagnosis: pd.Series,
    max_points: int | None = None,
) -> ColumnDataSource:
    """The source shared by the conditions, instrument and contrast plots.

    One row per observation (named ``observations``); above ``max_points`` observations, one row per
    night (:func:`nightly_source`, named ``nights``).
    """
    from hcdc.dashboards.monitoring import diagnosis_kind

    columns = CONDITION_COLUMNS + INSTRUMENT_COLUMNS + [contrast_column(s) for s in separations]
    kinds = ["", "atmosphere", "instrument", "both"]
    codes = np.array([kinds.index(diagnosis_kind(d)) for d in diagnosis], dtype=np.int8)
    if max_points is not None and len(frame) > max_points:
        return nightly_source(frame, columns, verdicts, codes)
    source = observation_source(frame, columns, verdicts)
    source.data["diagnosis_code"] = codes
    return source


def conditions_layout(frame: pd.DataFrame, verdicts: pd.DataFrame, source: ColumnDataSource | None = None):
    """Seeing, coherence time, airmass and wind against time (shared time axis)."""
    source = source or observation_source(frame, CONDITION_COLUMNS, verdicts)
    figures, x_range = [], time_range(frame["time"])
    for column in CONDITION_COLUMNS:
        metric = METRICS[column]
        fig = trend_figure(
            source, column, metric.label, metric.unit, verdicts, OBSERVATION_TOOLTIPS, x_range, name=f"trend-{column}"
        )
        x_range = x_range or fig.x_range
        figures.append(fig)
    return gridplot(figures, ncols=2, toolbar_location="right")


def instrument_layout(frame: pd.DataFrame, verdicts: pd.DataFrame, source: ColumnDataSource | None = None):
    """Star centre on the detector (x, y) and fraction of frames rejected against time."""
    source = source or observation_source(frame, INSTRUMENT_COLUMNS, verdicts)
    figures, x_range = [], time_range(frame["time"])
    for column in INSTRUMENT_COLUMNS[:3]:
        metric = METRICS[column]
        fig = trend_figure(
            source,
            column,
            metric.label,
            metric.unit if metric.unit != "fraction" else "",
            verdicts,
            OBSERVATION_TOOLTIPS + [("frames", "@n_frames (@n_rejected rejected)")],
            x_range,
            name=f"trend-{column}",
        )
        x_range = x_range or fig.x_range
        figures.append(fig)
    return gridplot(figures, ncols=2, toolbar_location="right")


def contrast_layout(
    frame: pd.DataFrame,
    verdicts: pd.DataFrame,
    separations: tuple[float, ...],
    diagnosis: pd.Series,
    source: ColumnDataSource | None = None,
):
    """Achieved contrast against time, and against seeing and coherence time (is it the atmosphere?)."""
    columns = [contrast_column(s) for s in separations]
    source = source or monitoring_source(frame, verdicts, separations, diagnosis)
    diagnosis_colour = linear_cmap(
        "diagnosis_code",
        palette=[DIAGNOSIS_COLOURS[k] for k in ("", "atmosphere", "instrument", "both")],
        low=0,
        high=3,
    )
    palette = {column: Category10_10[i % 10] for i, column in enumerate(columns)}
    figures = []
    padded = time_range(frame["time"])
    time_fig = figure(
        title="Achieved 5σ contrast",
        width=WIDTH,
        height=HEIGHT + 40,
        x_axis_type="datetime",
        y_axis_type="log",
        tools=TOOLS,
        name="contrast-time",
        **({"x_range": padded} if padded else {}),
    )
    items = []
    observation_tooltips = NIGHT_TOOLTIPS if is_nightly(source) else OBSERVATION_TOOLTIPS
    for separation, column in zip(separations, columns):
        _baselines(time_fig, verdicts, column, log=True)
        _ranges(time_fig, source, column, palette[column])
        renderer = time_fig.scatter(
            "time",
            column,
            source=source,
            size=7,
            color=flag_colour(column),
            line_color=palette[column],
            line_width=2,
            alpha=0.85,
        )
        items.append(LegendItem(label=f'{separation:g}"', renderers=[renderer]))
        time_fig.add_tools(
            HoverTool(
                renderers=[renderer],
                formatters=_hover_formatters(),
                tooltips=observation_tooltips
                + [
                    (f'contrast at {separation:g}"', f"@{{{column}}}{{0.00e+0}}"),
                    ("seeing", '@seeing_arcsec{0.00}"'),
                    ("τ0", "@tau0_ms{0.0} ms"),
                    ("night verdict", "@diagnosis_code{custom}"),
                ],
            )
        )
    time_fig.add_layout(Legend(items=items, location="top_left", title="separation"))
    time_fig.yaxis.axis_label = "5σ contrast"
    time_fig.yaxis.formatter = PrintfTickFormatter(format="%.0e")
    time_fig.xaxis.axis_label = "time (UTC)"
    figures.append(time_fig)
    for condition, label, unit in (("seeing_arcsec", "seeing", "arcsec"), ("tau0_ms", "coherence time τ0", "ms")):
        fig = figure(
            title=f"Contrast against {label}",
            width=WIDTH,
            height=HEIGHT + 40,
            y_axis_type="log",
            tools=TOOLS,
            name=f"contrast-{condition}",
        )
        items = []
        for separation, column in zip(separations, columns):
            renderer = fig.scatter(
                condition,
                column,
                source=source,
                size=7,
                color=diagnosis_colour,
                line_color=palette[column],
                line_width=2,
                alpha=0.85,
                marker="circle" if column == columns[0] else "square",
            )
            items.append(LegendItem(label=f'{separation:g}"', renderers=[renderer]))
            fig.add_tools(
                HoverTool(
                    renderers=[renderer],
                    formatters=_hover_formatters(),
                    tooltips=observation_tooltips
                    + [
                        (f'contrast at {separation:g}"', f"@{{{column}}}{{0.00e+0}}"),
                        (label, f"@{condition}{{0.00}} {unit}"),
                        ("night verdict", "@diagnosis_code{custom}"),
                    ],
                )
            )
        fig.add_layout(Legend(items=items, location="top_left", title="separation"))
        nightly = ", nightly median" if is_nightly(source) else ""
        fig.xaxis.axis_label = f"{label} [{unit}]{nightly}"
        fig.yaxis.axis_label = f"5σ contrast{nightly}"
        fig.yaxis.formatter = PrintfTickFormatter(format="%.0e")
        figures.append(fig)
    return gridplot(figures, ncols=2, toolbar_location="right")


CALIBRATION_TOOLTIPS = [
    ("calibration", "@kind"),
    ("time", "@time{%F %H:%M}"),
    ("DIT", "@dit_s{0.[00]} s"),
    ("filter", "@filter"),
    ("instrument", "@instrument"),
]
KIND_MARKERS = {
    "master_dark": "circle",
    "master_background": "square",
    "master_flat": "triangle",
    "master_sky": "diamond",
    "bad_pixel_map": "x",
}


def detector_layout(frame: pd.DataFrame, verdicts: pd.DataFrame):
    """Detector health from the reduced calibrations: dark level, read noise, hot/dead pixels, flat RMS."""
    columns = ["dark_level_adu", "read_noise_adu", "n_hot_pixels", "n_dead_pixels", "flat_rms"]
    data = {
        "id": frame["id"].astype(np.int64).to_numpy(),
        "kind": _strings(frame["kind"]),
        "dit_s": frame["dit_s"].astype(float).to_numpy(),
        "filter": _strings(frame["filter"]),
        "instrument": _strings(frame["instrument"]),
        "time": frame["time"].to_numpy(),
        "marker": [KIND_MARKERS.get(k, "circle") for k in frame["kind"]],
    }
    for column in columns:
        data[column] = frame[column].astype(float).to_numpy()
        data[f"{column}_flag"] = flagged_mask(frame, verdicts, column, METRICS[column].group_by).astype(np.int8)
    source = ColumnDataSource(data, name="calibrations")
    figures, x_range = [], time_range(frame["time"])
    for column in columns:
        metric = METRICS[column]
        shared = {"x_range": x_range} if x_range is not None else {}
        fig = figure(
            title=metric.label,
            width=WIDTH,
            height=HEIGHT,
            x_axis_type="datetime",
            tools=TOOLS,
            name=f"trend-{column}",
            **shared,
        )
        _baselines(fig, verdicts, column)
        renderer = fig.scatter(
            "time",
            column,
            source=source,
            size=8,
            color=flag_colour(column),
            marker="marker",
            alpha=0.85,
            line_color="white",
            line_width=0.5,
        )
        fig.add_tools(
            HoverTool(
                renderers=[renderer],
                formatters=TIME_FORMAT,
                tooltips=CALIBRATION_TOOLTIPS + [(metric.label, f"@{{{column}}}{{0.[000]}}")],
            )
        )
        fig.yaxis.axis_label = f"{metric.label} [{metric.unit}]" if metric.unit else metric.label
        fig.xaxis.axis_label = "time (UTC)"
        x_range = x_range or fig.x_range
        figures.append(fig)
    return gridplot(figures, ncols=2, toolbar_location="right")


# --- pipeline --------------------------------------------------------------------------------------


def steps_figure(reductions: pd.DataFrame):
    """Reductions per step and state (latest attempt per observation and step)."""
    latest = reductions.sort_values("id").groupby(["observation_id", "step"], dropna=False).tail(1)
    steps = sorted(latest["step"].unique())
    states = ["done", "failed", "running", "pending"]
    data = {"step": steps}
    for state in states:
        data[state] = [int(((latest["step"] == s) & (latest["state"] == state)).sum()) for s in steps]
    source = ColumnDataSource(data, name="steps")
    fig = figure(
        y_range=steps,
        title="Reductions per step (latest attempt)",
        width=WIDTH,
        height=max(190, 110 + 45 * len(steps)),
        tools="save",
        toolbar_location="right",
        name="steps",
    )
    renderers = fig.hbar_stack(states, y="step", height=0.6, source=source, color=[STATE_COLOURS[s] for s in states])
    fig.add_layout(
        Legend(
            items=[LegendItem(label=s, renderers=[r]) for s, r in zip(states, renderers)],
            orientation="horizontal",
            location="center",
        ),
        "below",
    )
    fig.add_tools(
        HoverTool(
            renderers=renderers,
            tooltips=[
                ("step", "@step"),
                ("done", "@done"),
                ("failed", "@failed"),
                ("running", "@running"),
                ("pending", "@pending"),
            ],
        )
    )
    fig.x_range.start = 0
    fig.xaxis.axis_label = "reductions"
    return fig


def timeline_figure(reductions: pd.DataFrame, max_points: int = 5000):
    """Each reduction (the latest ``max_points``): when it finished and how long it took, coloured by state."""
    data = reductions[reductions["started_at"].notna()]
    if data.empty:
        return _empty_figure("Reduction timeline", "no reduction has started yet")
    shown = len(data) > max_points
    data = data.sort_values("started_at").tail(max_points).copy()
    data["end"] = data["finished_at"].where(data["finished_at"].notna(), data["started_at"])
    source = ColumnDataSource(
        {
            "end": data["end"],
            "duration_s": data["duration_s"].fillna(0.0).astype(float).clip(lower=0.01),
            "colour": [STATE_COLOURS[s] for s in data["state"]],
            "key": _strings(data["key"]),
            "target": _strings(data["target"]),
            "step": _strings(data["step"]),
            "status": _strings(data["status"]),
            "error": [
                str(e).strip().splitlines()[0][:120] if isinstance(e, str) and e.strip() else "" for e in data["error"]
            ],
            "id": data["id"].astype(int).tolist(),
        },
        name="reductions",
    )
    title = f"Reduction timeline (latest {max_points})" if shown else "Reduction timeline"
    fig = figure(
        title=title,
        width=WIDTH,
        height=HEIGHT + 30,
        x_axis_type="datetime",
        y_axis_type="log",
        tools=TOOLS,
        name="timeline",
    )
    renderer = fig.scatter("end", "duration_s", source=source, color="colour", size=8, alpha=0.85)
    fig.add_tools(
        HoverTool(
            renderers=[renderer],
            tooltips=[
                ("observation", "@key"),
                ("target", "@target"),
                ("step", "@step"),
                ("status", "@status"),
                ("duration", "@duration_s{0.0} s"),
                ("error", "@error"),
            ],
        )
    )
    fig.xaxis.axis_label = "finished (UTC)"
    fig.yaxis.axis_label = "duration [s]"
    return fig


# --- catalog browser -------------------------------------------------------------------------------


#: Limits of a target drawn each in its own colour (the newest; the earlier ones together in grey).
COLOURED_CURVES = 10


def _earlier_limits(fig, limits: pd.DataFrame, points: pd.DataFrame) -> LegendItem:
    """The earlier limits of a target as one grey multi-line (a hover names each curve)."""
    by_limit = {limit_id: group for limit_id, group in points.groupby("limit_id", sort=False)}
    curves = [(limit, by_limit.get(limit["limit_id"])) for _, limit in limits.iterrows()]
    curves = [(limit, curve) for limit, curve in curves if curve is not None and len(curve)]
    source = ColumnDataSource(
        {
            "xs": [curve["sep_arcsec"].astype(float).tolist() for _, curve in curves],
            "ys": [curve["contrast"].astype(float).tolist() for _, curve in curves],
            "key": [str(limit["observation"]) for limit, _ in curves],
            "night_text": [str(limit["night"]) for limit, _ in curves],
            "algorithm": [str(limit["algorithm"] or "") for limit, _ in curves],
            "sigma": [limit["sigma"] for limit, _ in curves],
            "limit_id": [int(limit["limit_id"]) for limit, _ in curves],
        },
        name="earlier-limits",
    )
    lines = fig.multi_line("xs", "ys", source=source, color="#9a9a9a", line_width=1.2, alpha=0.7)
    fig.add_tools(
        HoverTool(
            renderers=[lines],
            tooltips=[
                ("observation", "@key"),
                ("night", "@night_text"),
                ("algorithm", "@algorithm (@sigma σ)"),
                ("separation", '$x{0.000}"'),
                ("contrast", "$y{0.00e+0}"),
            ],
        )
    )
    return LegendItem(label=f"{len(curves)} earlier limit(s)", renderers=[lines])


def contrast_curves_figure(
    limits: pd.DataFrame,
    points: pd.DataFrame,
    detections: pd.DataFrame,
    references: list[tuple[str, np.ndarray, np.ndarray]],
    title: str,
):
    """A target's detection limits, its detections, and reference curves.

    The newest :data:`COLOURED_CURVES` limits have a colour, a legend entry and a hover each; the
    earlier ones (a target observed for years) are drawn together in grey, one renderer with a hover
    per curve: a plot of thirty colours repeating is unreadable, and a renderer per curve made the
    page's document (and its first render) grow with the target's history.
    """
    fig = figure(title=title, width=2 * WIDTH, height=420, y_axis_type="log", tools=TOOLS, name="contrast-curves")
    items = []
    earlier, limits = limits.iloc[: max(len(limits) - COLOURED_CURVES, 0)], limits.iloc[-COLOURED_CURVES:]
    if len(earlier):
        items.append(_earlier_limits(fig, earlier, points))
    for index, (_, limit) in enumerate(limits.iterrows()):
        curve = points[points["limit_id"] == limit["limit_id"]]
        if curve.empty:
            continue
        n = len(curve)
        source = ColumnDataSource(
            {
                "sep_arcsec": curve["sep_arcsec"].astype(float),
                "contrast": curve["contrast"].astype(float),
                "key": [limit["observation"]] * n,
                "night_text": [str(limit["night"])] * n,
                "algorithm": [limit["algorithm"] or ""] * n,
                "sigma": [limit["sigma"]] * n,
                "limit_id": [int(limit["limit_id"])] * n,
            },
            name=f"limit-{int(limit['limit_id'])}",
        )
        colour = Category10_10[index % 10]
        line = fig.line("sep_arcsec", "contrast", source=source, color=colour, line_width=2)
        dots = fig.scatter("sep_arcsec", "contrast", source=source, color=colour, size=4)
        fig.add_tools(
            HoverTool(
                renderers=[dots, line],
                tooltips=[
                    ("observation", "@key"),
                    ("night", "@night_text"),
                    ("algorithm", "@algorithm (@sigma σ)"),
                    ("separation", '@sep_arcsec{0.000}"'),
                    ("contrast", "@contrast{0.00e+0}"),
                ],
            )
        )
        items.append(LegendItem(label=f"{limit['night']} {limit['algorithm'] or ''}".strip(), renderers=[line, dots]))
    for index, (label, separations, contrasts) in enumerate(references):
        source = ColumnDataSource(
            {"sep_arcsec": separations, "contrast": contrasts, "label": [label] * len(separations)},
            name=f"reference-{index}",
        )
        line = fig.line(
            "sep_arcsec",
            "contrast",
            source=source,
            color="#555555",
            line_dash="dashed" if index % 2 == 0 else "dotdash",
            line_width=1.5,
            alpha=0.8,
        )
        fig.add_tools(
            HoverTool(
                renderers=[line],
                tooltips=[
                    ("reference", "@label"),
                    ("separation", '@sep_arcsec{0.000}"'),
                    ("contrast", "@contrast{0.00e+0}"),
                ],
            )
        )
        items.append(LegendItem(label=label, renderers=[line]))
    if len(detections):
        source = ColumnDataSource(
            {
                "sep_arcsec": detections["sep_arcsec"].astype(float),
                "contrast": detections["contrast"].astype(float),
                "snr": detections["snr"].astype(float),
                "pa_deg": detections["pa_deg"].astype(float),
                "status": _strings(detections["status"]),
                "key": _strings(detections["observation"]),
                "night_text": _strings(detections["night"]),
                "id": detections["id"].astype(int).tolist(),
            },
            name="detections",
        )
        stars = fig.scatter(
            "sep_arcsec", "contrast", source=source, marker="star", size=14, color="#d62728", line_color="black"
        )
        fig.add_tools(
            HoverTool(
                renderers=[stars],
                tooltips=[
                    ("detection", "@id (@status)"),
                    ("observation", "@key"),
                    ("S/N", "@snr{0.0}"),
                    ("separation", '@sep_arcsec{0.000}"'),
                    ("PA", "@pa_deg{0.0}°"),
                    ("contrast", "@contrast{0.00e+0}"),
                ],
            )
        )
        items.append(LegendItem(label="detections", renderers=[stars]))
    if items:
        legend = Legend(items=items, location="top_right", click_policy="hide")
        fig.add_layout(legend, "right")
    fig.xaxis.axis_label = "separation [arcsec]"
    fig.yaxis.axis_label = "5σ contrast (flux ratio)"
    fig.yaxis.formatter = PrintfTickFormatter(format="%.0e")
    return fig


def source_track_figure(track: dict, title: str):
    """ΔRA* and ΔDec of a source against time, with the background track and its 1- and 2-sigma band.

    ``track`` is :func:`hcdc.sources.source_track`'s answer (``band`` from
    :func:`reduction.astrometry.track_band`).
    """
    from bokeh.layouts import column
    from bokeh.models import Whisker

    band, test = track["band"], track["test"]
    measured = band["measured"]
    verdict = f"{test.status}, log10 odds {test.log10_odds:+.1f} ({test.n_epochs} epochs)"
    figures_ = []
    for k, label in enumerate(("ΔRA cos δ [mas, east +]", "ΔDec [mas, north +]")):
        shared = {"x_range": figures_[0].x_range} if figures_ else {}
        fig = figure(
            width=WIDTH + 160,
            height=HEIGHT,
            title=f"{title}: {verdict}" if k == 0 else None,
            x_axis_label="epoch [yr]" if k == 1 else None,
            y_axis_label=label,
            tools=TOOLS,
            **shared,
        )
        x, y, s = band["years"], band["track"][:, k], band["sigma"][:, k]
        fig.varea(x=x, y1=y - 2 * s, y2=y + 2 * s, fill_color="#dddddd", legend_label="2σ")
        fig.varea(x=x, y1=y - s, y2=y + s, fill_color="#bbbbbb", legend_label="1σ")
        fig.line(x, y, color="#555555", line_width=1.5, legend_label="background track")
        values, errors = measured["offsets"][:, k], measured["errors"][:, k]
        source = ColumnDataSource(
            {"x": measured["years"], "y": values, "lo": values - errors, "hi": values + errors, "err": errors}
        )
        fig.add_layout(Whisker(source=source, base="x", upper="hi", lower="lo", line_color=FLAGGED))
        fig.scatter("x", "y", source=source, size=7, color=FLAGGED, legend_label="measured")
        fig.add_tools(HoverTool(tooltips=[("epoch", "@x{0.00}"), ("offset", "@y{0.0} ± @err{0.0} mas")]))
        fig.legend.location = "top_left"
        fig.legend.label_text_font_size = "8pt"
        figures_.append(fig)
    return column(*figures_)


def spectra_figure(spectra: pd.DataFrame, detections: pd.DataFrame, title: str):
    """Contrast against wavelength of every detection with a spectrum (IFS), with 1-sigma whiskers."""
    from bokeh.models import Whisker

    fig = figure(
        width=WIDTH + 160,
        height=HEIGHT + 60,
        title=title,
        x_axis_label="wavelength [µm]",
        y_axis_label="contrast (flux ratio to the star)",
        tools=TOOLS,
    )
    labels = {
        int(r["id"]): f'{r["night"]} {r["sep_arcsec"]:.3f}" PA {r["pa_deg"]:.1f}° ({r["status"]})'
        for _, r in detections.iterrows()
    }
    for index, (detection_id, rows) in enumerate(spectra.groupby("detection_id", sort=True)):
        colour = Category10_10[index % 10]
        values, errors = rows["contrast"].to_numpy(float), rows["contrast_err"].to_numpy(float)
        source = ColumnDataSource(
            {
                "x": rows["wavelength_um"].to_numpy(float),
                "y": values,
                "lo": values - errors,
                "hi": values + errors,
                "err": errors,
                "snr": rows["snr"].to_numpy(float),
            }
        )
        label = labels.get(int(detection_id), f"detection {detection_id}")
        fig.add_layout(Whisker(source=source, base="x", upper="hi", lower="lo", line_color=colour))
        fig.line("x", "y", source=source, color=colour, legend_label=label)
        fig.scatter("x", "y", source=source, size=5, color=colour, legend_label=label)
    fig.add_tools(
        HoverTool(tooltips=[("λ", "@x{0.000} µm"), ("contrast", "@y{0.00e} ± @err{0.0e}"), ("S/N", "@snr{0.0}")])
    )
    # the whiskers are annotations, which bokeh's automatic range leaves out: the range holds them
    lows = (spectra["contrast"] - spectra["contrast_err"]).to_numpy(float)
    highs = (spectra["contrast"] + spectra["contrast_err"]).to_numpy(float)
    finite = np.isfinite(lows) & np.isfinite(highs)
    if finite.any():
        low, high = float(lows[finite].min()), float(highs[finite].max())
        pad = 0.05 * (high - low) if high > low else abs(high) * 0.1 or 1.0
        fig.y_range = Range1d(low - pad, high + pad)
    if fig.legend:  # below the plot, where it hides no point
        fig.legend.label_text_font_size = "8pt"
        fig.add_layout(fig.legend[0], "below")
    return fig
