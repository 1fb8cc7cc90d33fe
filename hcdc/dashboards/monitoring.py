"""Instrument monitoring: trends and outlier nights from the catalog (pure, no widgets).

:func:`build_monitoring` gathers, for a principal and filters, the observations
(conditions, pre-processing summary, achieved contrast) and the reduced
calibrations (detector health), evaluates every metric of
:data:`hcdc.dashboards.config.METRICS` against its rolling baseline
(:mod:`hcdc.dashboards.outliers`) and summarises the flagged nights with a
diagnosis: is a bad night the atmosphere (conditions flagged), the instrument
(detector, centring or rejected frames flagged; or the contrast is worse while
the conditions are normal), or both?
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from hcdc.access import Principal

from .config import METRICS, DashboardSettings, contrast_column, get_dashboard_settings
from .outliers import VERDICT_COLUMNS, evaluate_nights
from .queries import (
    Filters,
    calibrations_frame,
    count_calibrations_without_night,
    observations_frame,
)

CONDITION_METRICS = ("seeing_arcsec", "tau0_ms", "airmass", "wind_speed_ms")
DETECTOR_METRICS = ("dark_level_adu", "read_noise_adu", "n_hot_pixels", "n_dead_pixels", "flat_rms")
INSTRUMENT_METRICS = ("centre_x_px", "centre_y_px", "rejected_fraction")


@dataclass
class MonitoringData:
    """Everything the monitoring dashboard shows for one principal and filters."""

    filters: Filters
    observations: pd.DataFrame
    calibrations: pd.DataFrame
    #: one row per metric, series and night (see :data:`hcdc.dashboards.outliers.VERDICT_COLUMNS`)
    verdicts: pd.DataFrame
    #: one row per flagged night: night, categories, diagnosis, reasons
    flagged: pd.DataFrame
    separations: tuple[float, ...]
    calibrations_without_night: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def n_observations(self) -> int:
        return len(self.observations)

    @property
    def nights(self) -> list[date]:
        nights = set(self.observations["night"]) | set(self.calibrations["night"])
        return sorted(n for n in nights if n is not None)

    @property
    def flagged_nights(self) -> list[date]:
        return sorted(self.flagged["night"]) if len(self.flagged) else []

    def contrast_columns(self) -> list[str]:
        return [contrast_column(s) for s in self.separations]

    def flag_of_observations(self) -> pd.Series:
        """Per observation: the categories flagged on its night ('' when none)."""
        by_night = dict(zip(self.flagged["night"], self.flagged["categories"])) if len(self.flagged) else {}
        return self.observations["night"].map(lambda n: by_night.get(n, ""))


def _series_label(metric_name: str):
    metric = METRICS[metric_name]

    def label(key: dict) -> str:
        if metric.source == "calibration":
            parts = [key.get("instrument"), str(key.get("kind", "")).replace("master_", "")]
            if key.get("dit_s") not in (None, ""):
                parts.append(f"DIT {float(key['dit_s']):g} s")
            if key.get("filter"):
                parts.append(str(key["filter"]))
            return " ".join(p for p in parts if p)
        return " ".join(str(key[c]) for c in metric.group_by if key.get(c))

    return label


def evaluate_all(observations: pd.DataFrame, calibrations: pd.DataFrame, settings: DashboardSettings) -> pd.DataFrame:
    """Nightly verdicts of every metric (observations and calibrations)."""
    frames = []
    for name in CONDITION_METRICS + INSTRUMENT_METRICS:
        metric = METRICS[name]
        frames.append(
            evaluate_nights(
                observations, name, metric, settings.rules.for_metric(name), settings.baseline, _series_label(name)
            )
        )
    for separation in settings.contrast_separations_arcsec:
        column = contrast_column(separation)
        metric = METRICS["contrast"]
        verdicts = evaluate_nights(
            observations, column, metric, settings.rules.contrast, settings.baseline, _series_label("contrast")
        )
        verdicts["series"] = verdicts["series"].astype(str) + f' at {separation:g}"'
        frames.append(verdicts)
    for name in DETECTOR_METRICS:
        metric = METRICS[name]
        frames.append(
            evaluate_nights(
                calibrations, name, metric, settings.rules.for_metric(name), settings.baseline, _series_label(name)
            )
        )
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(VERDICT_COLUMNS) + ["category", "label", "unit"])
    verdicts = pd.concat(frames, ignore_index=True, sort=False)
    base = verdicts["metric"].map(lambda m: "contrast" if str(m).startswith("contrast_") else m)
    verdicts["category"] = base.map(lambda m: METRICS[m].category)
    verdicts["label"] = base.map(lambda m: METRICS[m].label)
    verdicts["unit"] = base.map(lambda m: METRICS[m].unit)
    return verdicts


def _reason(row) -> str:
    unit = f" {row['unit']}" if row["unit"] and row["unit"] != "fraction" else ""
    return (
        f"{row['label']} ({row['series']}): {row['value']:.3g}{unit} against a baseline of "
        f"{row['baseline']:.3g}{unit} over {row['n_baseline']} night{'s' if row['n_baseline'] != 1 else ''}"
    )


def diagnose(categories: set[str]) -> str:
    """The answer to 'atmosphere or instrument?' for a night with these flagged categories.

    Causes are the flagged categories among atmosphere (conditions), detector
    (calibrations) and instrument (centring, rejected frames); a degraded
    contrast with none of them points at the instrument.
    """
    causes = [c for c in ("atmosphere", "detector", "instrument") if c in categories]
    performance = "performance" in categories
    if not causes:
        return "instrument suspected: contrast degraded while the conditions were normal" if performance else ""
    text = " and ".join(causes)
    if performance:
        text += " — contrast degraded" + (" by the conditions" if "atmosphere" in causes else "")
    return text


def diagnosis_kind(diagnosis: str) -> str:
    """'' (normal), 'atmosphere', 'instrument' or 'both', for colouring."""
    if not diagnosis:
        return ""
    atmosphere = diagnosis.startswith("atmosphere")
    other = any(word in diagnosis for word in ("detector", "instrument"))
    return "both" if atmosphere and other else ("atmosphere" if atmosphere else "instrument")


def summarise_flags(verdicts: pd.DataFrame) -> pd.DataFrame:
    """One row per flagged night: night, categories (comma-separated), diagnosis, reasons (list)."""
    columns = ["night", "categories", "diagnosis", "reasons", "metrics"]
    if verdicts.empty or not verdicts["flagged"].any():
        return pd.DataFrame(columns=columns)
    rows = []
    for night, group in verdicts[verdicts["flagged"]].groupby("night", sort=True):
        categories = set(group["category"])
        rows.append(
            {
                "night": night,
                "categories": ", ".join(sorted(categories)),
                "diagnosis": diagnose(categories),
                "reasons": [_reason(r) for _, r in group.iterrows()],
                "metrics": sorted(set(group["metric"])),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def build_monitoring(
    session: Session, principal: Principal, filters: Filters = Filters(), settings: DashboardSettings | None = None
) -> MonitoringData:
    """Query, evaluate and summarise (see the module docstring)."""
    settings = settings or get_dashboard_settings()
    observations = observations_frame(session, principal, filters, settings)
    calibrations = calibrations_frame(session, filters)
    verdicts = evaluate_all(observations, calibrations, settings)
    notes = []
    n_nights = observations["night"].nunique() if len(observations) else 0
    if 0 < n_nights < settings.baseline.min_nights + 1:
        notes.append(
            f"Only {n_nights} night{'s' if n_nights != 1 else ''} of observations in this selection: "
            f"outliers need at least {settings.baseline.min_nights + 1} nights (one night and its "
            f"{settings.baseline.min_nights}-night baseline), so none can be flagged yet."
        )
    if len(observations) and all(
        observations[c].isna().all() for c in (contrast_column(s) for s in settings.contrast_separations_arcsec)
    ):
        notes.append(
            "No detection limit (contrast curve) yet for these observations: the achieved contrast "
            "appears once post-processing has run."
        )
    if len(observations) and observations["n_frames"].isna().all():
        notes.append("No pre-processed cube yet: star centring and rejected frames appear once pre-processing has run.")
    return MonitoringData(
        filters=filters,
        observations=observations,
        calibrations=calibrations,
        verdicts=verdicts,
        flagged=summarise_flags(verdicts),
        separations=tuple(settings.contrast_separations_arcsec),
        calibrations_without_night=count_calibrations_without_night(session, filters),
        notes=notes,
    )


def observation_flags(data: MonitoringData) -> pd.DataFrame:
    """Per observation and metric, whether its night is flagged for that metric's series (for colouring)."""
    if data.verdicts.empty:
        return pd.DataFrame(columns=["night", "metric", "flagged"])
    flagged = data.verdicts[data.verdicts["flagged"]]
    return flagged[["night", "metric", "series"]].drop_duplicates()


def nan_to_none(values) -> list:
    return [None if (isinstance(v, float) and not np.isfinite(v)) else v for v in values]
