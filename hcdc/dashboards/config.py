"""Validated settings of the dashboards: outlier thresholds, baseline, contrast, reference curves.

Values come, lowest priority first, from the defaults below, an optional YAML
file named by ``HCDC_DASHBOARDS_CONFIG``, and environment variables
``HCDC_DASHBOARDS_<FIELD>`` (nested fields with ``__``, e.g.
``HCDC_DASHBOARDS_RULES__SEEING_ARCSEC__N_SIGMA=4``). Every field has help
text; ``python -m hcdc.dashboards config`` prints the resolved values and
``python -m hcdc.dashboards config --schema`` the JSON schema.

A YAML file only needs what it changes; a rule given partly keeps the metric's
own defaults for the rest::

    baseline:
      nights: 15
    rules:
      seeing_arcsec: {n_sigma: 4}
      n_hot_pixels: {min_absolute: 25}

(This section lives here rather than in :mod:`hcdc.settings` because the
dashboards are its only reader; moving it there is one import.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

CONFIG_ENV = "HCDC_DASHBOARDS_CONFIG"


# --- what is monitored ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """A monitored quantity: where it comes from, its unit, and which side is bad."""

    name: str
    label: str
    unit: str
    category: Literal["atmosphere", "detector", "instrument", "performance"]
    bad: Literal["high", "low", "both"]
    source: Literal["observation", "calibration"]
    #: columns that define one series (a baseline is computed per series)
    group_by: tuple[str, ...]
    scale: Literal["linear", "log"] = "linear"


#: Every metric the monitoring trends, keyed by name (the names of :class:`Rules`' fields).
METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("seeing_arcsec", "Seeing (DIMM)", "arcsec", "atmosphere", "high", "observation", ("instrument",)),
        Metric("tau0_ms", "Coherence time τ0", "ms", "atmosphere", "low", "observation", ("instrument",)),
        Metric("airmass", "Airmass", "", "atmosphere", "high", "observation", ("instrument",)),
        Metric("wind_speed_ms", "Wind speed", "m/s", "atmosphere", "high", "observation", ("instrument",)),
        Metric(
            "dark_level_adu",
            "Dark / background level",
            "ADU",
            "detector",
            "both",
            "calibration",
            ("instrument", "kind", "dit_s", "filter"),
        ),
        Metric(
            "read_noise_adu",
            "Read noise",
            "ADU",
            "detector",
            "high",
            "calibration",
            ("instrument", "kind", "dit_s", "filter"),
        ),
        Metric(
            "n_hot_pixels",
            "Hot pixels",
            "pixels",
            "detector",
            "high",
            "calibration",
            ("instrument", "kind", "dit_s", "filter"),
        ),
        Metric(
            "n_dead_pixels",
            "Dead pixels",
            "pixels",
            "detector",
            "high",
            "calibration",
            ("instrument", "kind", "filter"),
        ),
        Metric("flat_rms", "Flat-field RMS", "", "detector", "high", "calibration", ("instrument", "kind", "filter")),
        Metric(
            "centre_x_px", "Star centre x (detector)", "px", "instrument", "both", "observation", ("instrument", "mode")
        ),
        Metric(
            "centre_y_px", "Star centre y (detector)", "px", "instrument", "both", "observation", ("instrument", "mode")
        ),
        Metric(
            "rejected_fraction",
            "Frames rejected",
            "fraction",
            "instrument",
            "high",
            "observation",
            ("instrument", "mode"),
        ),
        Metric(
            "contrast",
            "Achieved 5σ contrast",
            "flux ratio",
            "performance",
            "high",
            "observation",
            ("instrument", "mode", "filter"),
            scale="log",
        ),
    )
}

#: Poisson floor on the scatter for metrics that are counts.
COUNT_METRICS = frozenset({"n_hot_pixels", "n_dead_pixels"})


# --- thresholds ----------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Rule(_Model):
    """When a night's value of one metric is an outlier against its rolling baseline.

    A night is flagged when its deviation on the bad side exceeds all three of
    ``n_sigma`` × scatter, ``min_relative`` × |baseline| and ``min_absolute``
    (statistically *and* practically significant).
    """

    enabled: bool = Field(True, description="Flag outliers of this metric (it is plotted either way).")
    n_sigma: float = Field(
        3.0,
        gt=0,
        le=100,
        description="Deviation, in robust standard deviations (1.4826 × MAD) of the baseline nights, to flag.",
    )
    min_relative: float = Field(
        0.0,
        ge=0,
        le=100,
        description="Smallest deviation to flag, as a fraction of the baseline (0.3 = 30 %); ignored for log metrics.",
    )
    min_absolute: float = Field(
        0.0, ge=0, description="Smallest deviation to flag, in the metric's unit (dex for the contrast)."
    )


def _rule(description: str, **defaults: Any):
    return Field(
        default_factory=lambda: Rule(**defaults),
        description=description,
        json_schema_extra={"metric_defaults": defaults},
    )


class Rules(_Model):
    """Thresholds per metric (see :data:`METRICS` for units and the bad side)."""

    seeing_arcsec: Rule = _rule("Seeing (arcsec): high is bad.", n_sigma=3.0, min_relative=0.5, min_absolute=0.3)
    tau0_ms: Rule = _rule("Coherence time (ms): low is bad.", n_sigma=3.0, min_relative=0.4, min_absolute=1.0)
    airmass: Rule = _rule(
        "Airmass: the observer's choice, plotted but not flagged by default.",
        enabled=False,
        n_sigma=3.0,
        min_relative=0.3,
    )
    wind_speed_ms: Rule = _rule("Wind speed (m/s): high is bad.", n_sigma=3.0, min_relative=0.5, min_absolute=5.0)
    dark_level_adu: Rule = _rule(
        "Master dark/background level (ADU), per kind, DIT and filter: both sides are bad.",
        n_sigma=5.0,
        min_relative=0.02,
        min_absolute=5.0,
    )
    read_noise_adu: Rule = _rule("Read noise (ADU): high is bad.", n_sigma=5.0, min_relative=0.2)
    n_hot_pixels: Rule = _rule(
        "Hot pixels in a master dark/background: high is bad (Poisson floor on the scatter).",
        n_sigma=5.0,
        min_relative=1.0,
        min_absolute=10.0,
    )
    n_dead_pixels: Rule = _rule(
        "Dead pixels in a master flat: high is bad (Poisson floor on the scatter).",
        n_sigma=5.0,
        min_relative=1.0,
        min_absolute=10.0,
    )
    flat_rms: Rule = _rule("Flat-field RMS: high is bad.", n_sigma=5.0, min_relative=0.3)
    centre_x_px: Rule = _rule(
        "Star centre on the detector, x (px): a jump either way is bad.", n_sigma=5.0, min_absolute=3.0
    )
    centre_y_px: Rule = _rule(
        "Star centre on the detector, y (px): a jump either way is bad.", n_sigma=5.0, min_absolute=3.0
    )
    rejected_fraction: Rule = _rule(
        "Fraction of science frames rejected by pre-processing: high is bad.", n_sigma=3.0, min_absolute=0.2
    )
    contrast: Rule = _rule(
        "Achieved 5σ contrast at each monitored separation (compared in log10): high (shallower) is bad.",
        n_sigma=3.0,
        min_absolute=0.3,
    )

    @model_validator(mode="before")
    @classmethod
    def _merge_metric_defaults(cls, data: Any) -> Any:
        """A rule given partly keeps its metric's defaults for the fields not given."""
        if not isinstance(data, dict):
            return data
        merged = dict(data)
        for name, value in data.items():
            field = cls.model_fields.get(name)
            if field is None or not isinstance(value, dict):
                continue
            defaults = (field.json_schema_extra or {}).get("metric_defaults", {})
            merged[name] = {**defaults, **value}
        return merged

    def for_metric(self, name: str) -> Rule:
        return getattr(self, name)


class Baseline(_Model):
    """The rolling baseline a night is compared with."""

    nights: int = Field(
        10,
        ge=1,
        le=1000,
        description="Nights with data before the night that form its baseline (median, and 1.4826 × MAD as scatter).",
    )
    min_nights: int = Field(
        2,
        ge=1,
        le=1000,
        description="A night needs at least this many earlier nights with data "
        "in its series to be judged (none before: the start of a "
        "series gets no verdict). Raise it on a long archive.",
    )
    max_age_days: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="Baseline nights further than this from the night are ignored "
        "(null: no limit, the last 'nights' nights with data count however "
        "old).",
    )


class ReferenceCurve(_Model):
    """A published contrast curve in the reference-data folder (text table)."""

    file: str = Field(..., description="File name under <reference data>/published_contrast_curves.")
    label: str = Field(..., description="Legend label.")
    separation_column: int = Field(0, ge=0, description="Column of the separation (arcsec).")
    value_column: int = Field(1, ge=0, description="Column of the contrast or Δmag.")
    kind: Literal["contrast", "delta_mag"] = Field(
        "contrast", description="contrast: flux ratio; delta_mag: magnitude difference (converted)."
    )


def _default_references() -> list[ReferenceCurve]:
    return [
        ReferenceCurve(file="SPHERE_Vigan.txt", label="SPHERE IFS/IRDIS, Sirius ~1 h (Vigan+2015)", kind="delta_mag"),
        ReferenceCurve(file="GPIES_T-type_contrast_curve_2per.txt", label="GPIES best 2 %, 38 min (Ruffio+2017)"),
        ReferenceCurve(file="GPI_Sirius_Ttype.txt", label="GPI H, Sirius 60 min T-type (Ruffio+2017)", value_column=2),
        ReferenceCurve(file="magao_Ys_betapic_5sigma.txt", label="MagAO Ys, beta Pic 60 min (Males)", value_column=2),
    ]


class _YamlSource(PydanticBaseSettingsSource):
    """The file named by ``HCDC_DASHBOARDS_CONFIG`` (if any)."""

    def __init__(self, settings_cls: type[BaseSettings]):
        super().__init__(settings_cls)
        self._values: dict[str, Any] = {}
        path = os.environ.get(CONFIG_ENV)
        if path:
            file = Path(path)
            if not file.is_file():
                raise FileNotFoundError(f"{CONFIG_ENV}={path}: no such dashboards configuration file")
            loaded = yaml.safe_load(file.read_text()) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{CONFIG_ENV}={path}: expected a mapping, got {type(loaded).__name__}")
            self._values = loaded

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


class DashboardSettings(BaseSettings):
    """Settings of the HC-DC dashboards (monitoring thresholds, contrast, reference curves, tables)."""

    model_config = SettingsConfigDict(
        env_prefix="HCDC_DASHBOARDS_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    baseline: Baseline = Field(default_factory=Baseline, description="Rolling baseline of the outlier flags.")
    rules: Rules = Field(default_factory=Rules, description="Outlier thresholds per metric.")
    contrast_separations_arcsec: list[float] = Field(
        [0.25, 0.5],
        min_length=1,
        max_length=6,
        description="Separations (arcsec) at which the achieved contrast is monitored (curves are interpolated "
        "log-linearly; outside a curve's range: no value).",
    )
    contrast_sigma: float = Field(
        5.0, gt=0, description="Detection limits at another σ are scaled to this one (contrast ∝ σ)."
    )
    table_rows: int = Field(
        50,
        ge=1,
        le=10_000,
        description="Rows shown in the dashboards' tables (the latest first); exports always hold the whole selection.",
    )
    max_plot_points: int = Field(
        3_000,
        ge=1,
        le=2_000_000,
        description="Above this many observations in a selection, the monitoring plots show one point per "
        "night (the night's median, a bar over its range, red when the night is flagged) instead of every "
        "observation: the browser draws ~10 plots, and 10,000 points each took it seconds. Narrower filters "
        "bring every observation back.",
    )
    reference_curves: list[ReferenceCurve] = Field(
        default_factory=_default_references,
        description="Published curves offered for comparison in the catalog browser.",
    )

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))

    def contrast_column(self, separation_arcsec: float) -> str:
        return contrast_column(separation_arcsec)


def contrast_column(separation_arcsec: float) -> str:
    """Column name of the achieved contrast at a separation: ``contrast_0p25``."""
    return "contrast_" + f"{separation_arcsec:.2f}".replace(".", "p")


@lru_cache(maxsize=1)
def get_dashboard_settings() -> DashboardSettings:
    """The resolved settings (cached; :func:`reload_dashboard_settings` re-reads them)."""
    return DashboardSettings()


def reload_dashboard_settings() -> DashboardSettings:
    get_dashboard_settings.cache_clear()
    return get_dashboard_settings()


def dashboard_settings_schema() -> dict[str, Any]:
    schema = DashboardSettings.model_json_schema()
    schema["title"] = "HC-DC dashboards configuration"
    return schema
