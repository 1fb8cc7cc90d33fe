"""Outliers against a rolling baseline, night by night (pure: pandas in, pandas out).

A metric is first reduced to one value per series and night (the median of
that night's observations or calibrations; a *series* is e.g. one instrument
for the seeing, one kind/DIT/filter of master dark for the hot pixels). Each
night is then compared with its **rolling baseline**: the median of the
``baseline.nights`` nights with data before it (within ``max_age_days`` if
set), and as scatter 1.4826 × their median absolute deviation. A night with
fewer than ``min_nights`` earlier nights in its series gets no verdict (the
start of a series, or a set-up used once).

A night is flagged when its deviation on the metric's bad side exceeds all of
``n_sigma`` × scatter, ``min_relative`` × |baseline| and ``min_absolute``
(:class:`hcdc.dashboards.config.Rule`). Counts (hot/dead pixels) have a
Poisson floor on the scatter; the contrast is compared in log10 (dex).
"""

from __future__ import annotations

import math
from collections import deque
from datetime import date, timedelta
from statistics import median

import numpy as np
import pandas as pd

from .config import COUNT_METRICS, Baseline, Metric, Rule

MAD_TO_SIGMA = 1.4826

#: Columns of :func:`evaluate_nights`' result besides the group columns.
VERDICT_COLUMNS = (
    "metric",
    "series",
    "night",
    "value",
    "n_points",
    "baseline",
    "scatter",
    "threshold",
    "deviation",
    "n_baseline",
    "basis",
    "flagged",
)


def nightly_values(frame: pd.DataFrame, value: str, group_by: tuple[str, ...]) -> pd.DataFrame:
    """One row per series and night: the median of ``value`` and the number of points.

    ``frame`` needs a ``night`` column (dates) and the ``group_by`` columns; rows
    without a value are ignored.
    """
    columns = list(group_by) + ["night"]
    if frame.empty or value not in frame:
        return pd.DataFrame(columns=columns + ["value", "n_points"])
    data = frame[columns + [value]].dropna(subset=[value, "night"])
    if data.empty:
        return pd.DataFrame(columns=columns + ["value", "n_points"])
    keyed = data.copy()
    for column in group_by:  # None is a value of its own (e.g. darks have no filter)
        keyed[column] = keyed[column].astype(object).where(keyed[column].notna(), "")
    grouped = keyed.groupby(columns, sort=True, dropna=False)[value]
    out = grouped.median().rename("value").to_frame()
    out["n_points"] = grouped.size()
    return out.reset_index()


def _transform(values: np.ndarray, log: bool) -> np.ndarray:
    if not log:
        return values.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(values > 0, np.log10(values.astype(float)), np.nan)


def baseline_for(nights: list[date], values: np.ndarray, index: int, settings: Baseline) -> tuple[np.ndarray, str]:
    """The baseline values of night ``index`` and its basis: ``previous`` (trailing nights) or ``none``.

    (Reference implementation of one night; :func:`evaluate_series` does all nights in one pass.)
    """
    night = nights[index]
    horizon = timedelta(days=settings.max_age_days) if settings.max_age_days else timedelta.max
    previous = [k for k in range(index) if night - nights[k] <= horizon and np.isfinite(values[k])]
    previous = previous[-settings.nights :]
    if len(previous) >= settings.min_nights:
        return values[previous], "previous"
    return values[[]], "none"


def evaluate_series(
    nights: list[date], raw_values: np.ndarray, metric: Metric, rule: Rule, settings: Baseline
) -> list[dict]:
    """Verdicts for one series (nights sorted, one value each), in one pass over a sliding window."""
    log = metric.scale == "log"
    raw = np.asarray(raw_values, dtype=float)
    values = _transform(raw, log).tolist()
    raw = raw.tolist()
    horizon = timedelta(days=settings.max_age_days) if settings.max_age_days else None
    window: deque[tuple[date, float]] = deque()  # the last `nights` finite values before the current night
    rows = []
    for index, night in enumerate(nights):
        if horizon is not None:
            while window and night - window[0][0] > horizon:
                window.popleft()
        value = values[index]
        finite = math.isfinite(value)
        row = {
            "night": night,
            "value": raw[index],
            "n_baseline": len(window),
            "basis": "none",
            "baseline": np.nan,
            "scatter": np.nan,
            "threshold": np.nan,
            "deviation": np.nan,
            "flagged": False,
        }
        if len(window) >= settings.min_nights and finite:
            reference = [v for _n, v in window]  # a few values: plain Python beats numpy's per-call overhead
            centre = float(median(reference))
            scatter = MAD_TO_SIGMA * float(median([abs(v - centre) for v in reference]))
            if metric.name in COUNT_METRICS:
                scatter = max(scatter, math.sqrt(max(abs(centre), 1.0)))
            threshold = max(rule.n_sigma * scatter, rule.min_absolute, 0.0 if log else rule.min_relative * abs(centre))
            signed = value - centre
            deviation = signed if metric.bad == "high" else (-signed if metric.bad == "low" else abs(signed))
            row.update(
                basis="previous",
                baseline=10**centre if log else centre,
                scatter=scatter,
                threshold=threshold,
                deviation=deviation,
                flagged=bool(rule.enabled and deviation > threshold),
            )
        rows.append(row)
        if finite:
            window.append((night, float(value)))
            if len(window) > settings.nights:
                window.popleft()
    return rows


def evaluate_nights(
    frame: pd.DataFrame, value: str, metric: Metric, rule: Rule, settings: Baseline, series_label=None
) -> pd.DataFrame:
    """Nightly verdicts of ``value`` in ``frame`` for every series of ``metric``.

    Returns one row per series and night with the group columns and
    :data:`VERDICT_COLUMNS` (``metric`` is ``value``, the column evaluated;
    ``series`` a readable name of the series).
    """
    nightly = nightly_values(frame, value, metric.group_by)
    columns = list(metric.group_by) + list(VERDICT_COLUMNS)
    if nightly.empty:
        return pd.DataFrame(columns=columns)
    out = []
    for key, series in nightly.groupby(list(metric.group_by), sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        series = series.sort_values("night")
        verdicts = evaluate_series(list(series["night"]), series["value"].to_numpy(), metric, rule, settings)
        label = series_label(dict(zip(metric.group_by, key))) if series_label else " ".join(str(k) for k in key if k)
        for verdict, n_points in zip(verdicts, series["n_points"]):
            out.append(
                {
                    **dict(zip(metric.group_by, key)),
                    **verdict,
                    "n_points": int(n_points),
                    "metric": value,
                    "series": label,
                }
            )
    return pd.DataFrame(out, columns=columns)
