"""The error budget of a detection: every term its own number, and their total.

A NEGFC fit gives two statistical terms (:class:`~reduction.postproc.results.Uncertainty`): the fit
(curvature of the chi² at the optimum) and the speckle noise (fake companions injected at the same
separation). They measure the same noise, so the measurement error is the larger of the two, not their
sum (:func:`measurement_error`; why, in :mod:`reduction.postproc.negfc`). What the cube cannot tell is
added to it in quadrature, from the observation (:class:`Systematics`):

* **star centre**: ``σc`` px per axis moves the companion by as much: ``σc`` along the radius and
  ``σc / r`` radians in angle;
* **calibration**: the pixel scale's relative uncertainty and the distortion left in the data scale the
  separation; true north and the pupil offset turn every position angle; a distortion of relative
  amplitude ``δ`` also turns it by up to ``δ`` radians; a positional residual ``d`` px (GPI) adds ``d``
  along the radius and ``d / r`` in angle;
* **photometry**: the star's flux enters every contrast, ``σ(contrast) = contrast x σ(F*)/F*``.

All 1 sigma; separations in arcsec, angles in degrees, contrasts as flux ratios.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def measurement_error(fit: float, speckle: float) -> float:
    """The measurement's 1-sigma error from its fit and speckle terms: the larger of the two (NaN-aware).

    Both measure the noise at the companion (the injections are fitted in the same noise), so adding
    them would count it twice; the larger guards against too few injections or a neighbourhood that
    differs from the annulus. NaN when neither is known.
    """
    values = [float(v) for v in (fit, speckle) if v is not None and np.isfinite(v)]
    return max(values) if values else float("nan")


#: how a centre was found (``Systematics.centre_status``)
CENTRE_STATUSES = ("waffle", "centre-from-header", "coronagraph-core", "fitted", "given")


@dataclass(frozen=True)
class Systematics:
    """What an observation adds to the errors of its detections (1 sigma).

    Attributes
    ----------
    pixel_scale_rel : float
        Relative uncertainty of the pixel scale.
    north_deg : float
        Uncertainty of the image's north direction: true north and pupil offset in quadrature.
    distortion_rel : float
        Relative amplitude of the distortion left in the data (uncorrected anamorphism).
    distortion_px : float
        Positional residual of the distortion, in pixels (instruments that publish it that way).
    centre_px : float
        Star-centre uncertainty per axis, in pixels of the cube (NaN: not known, no term).
    centre_status : str
        How the centre was found, one of :data:`CENTRE_STATUSES`.
    star_flux_rel : float
        Relative uncertainty of the star's flux (NaN: not measured, no contrast term).
    sources : tuple of (str, str)
        ``(term, citation or measurement)`` for every number above.
    """

    pixel_scale_rel: float = 0.0
    north_deg: float = 0.0
    distortion_rel: float = 0.0
    distortion_px: float = 0.0
    centre_px: float = float("nan")
    centre_status: str = "given"
    star_flux_rel: float = float("nan")
    sources: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.centre_status not in CENTRE_STATUSES:
            raise ValueError(f"centre_status must be one of {', '.join(CENTRE_STATUSES)}; got {self.centre_status!r}")
        for name in ("pixel_scale_rel", "north_deg", "distortion_rel", "distortion_px"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
        if not (np.isnan(self.centre_px) or self.centre_px >= 0):  # NaN: not measured (no term, said so)
            raise ValueError(f"centre_px must be >= 0 or NaN; got {self.centre_px!r}")

    def to_dict(self) -> dict:
        """JSON-ready, for the provenance of the reduction."""
        return {
            "pixel_scale_rel": self.pixel_scale_rel,
            "north_deg": self.north_deg,
            "distortion_rel": self.distortion_rel,
            "distortion_px": self.distortion_px,
            "centre_px": None if not np.isfinite(self.centre_px) else self.centre_px,
            "centre_status": self.centre_status,
            "star_flux_rel": None if not np.isfinite(self.star_flux_rel) else self.star_flux_rel,
            "sources": {term: text for term, text in self.sources},
        }


def instrument_systematics(
    instrument,
    filter_name: str | None,
    *,
    centre_px: float,
    centre_status: str,
    centre_source: str,
    star_flux_rel: float = float("nan"),
    star_flux_source: str = "",
) -> Systematics:
    """The systematics of an observation: the instrument's published calibration and the measured centre.

    ``instrument`` is a :class:`reduction.instruments.base.Instrument` class: its pixel scale (for
    ``filter_name``), north and distortion constants, with their sources, give the calibration terms.
    """
    scale = instrument.pixel_scale_constant(filter_name)
    distortion = instrument.distortion
    relative = distortion.value if distortion.unit == "fraction" else 0.0
    positional = distortion.value if distortion.unit == "px" else 0.0
    sources = {
        "pixel_scale": f"{scale.value} +- {scale.uncertainty} {scale.unit}: {scale.source}",
        "north": (
            f"true north {instrument.true_north_deg.uncertainty} deg ({instrument.true_north_deg.source}), pupil "
            f"offset {instrument.pupil_offset_deg.uncertainty} deg ({instrument.pupil_offset_deg.source})"
        ),
        "distortion": f"{distortion.value} {distortion.unit}: {distortion.source}",
        "centre": centre_source,
    }
    if star_flux_source:
        sources["star_flux"] = star_flux_source
    return Systematics(
        pixel_scale_rel=scale.uncertainty / scale.value,
        north_deg=instrument.north_uncertainty_deg(),
        distortion_rel=relative,
        distortion_px=positional,
        centre_px=float(centre_px),
        centre_status=centre_status,
        star_flux_rel=float(star_flux_rel),
        sources=tuple(sorted(sources.items())),
    )


#: the terms of each quantity, in the order the columns are written
SEPARATION_TERMS = ("fit", "speckle", "centre", "calibration")
ANGLE_TERMS = ("fit", "speckle", "centre", "calibration")
CONTRAST_TERMS = ("fit", "speckle", "photometry")


@dataclass(frozen=True)
class ErrorBudget:
    """The 1-sigma terms of one detection and their totals.

    ``separation_arcsec``, ``pa_deg`` and ``contrast`` map each term name (:data:`SEPARATION_TERMS`,
    :data:`ANGLE_TERMS`, :data:`CONTRAST_TERMS`) to its value; a term that could not be computed is NaN
    and is left out of the total (the total is NaN when every term is). The total is the measurement
    error (the larger of ``fit`` and ``speckle``, :func:`measurement_error`) and the other terms in
    quadrature.
    """

    separation_arcsec: dict[str, float]
    pa_deg: dict[str, float]
    contrast: dict[str, float]
    centre_status: str

    @staticmethod
    def _total(terms: dict[str, float]) -> float:
        measurement = measurement_error(terms.get("fit", np.nan), terms.get("speckle", np.nan))
        others = [v for k, v in terms.items() if k not in ("fit", "speckle")]
        values = np.array([v for v in (measurement, *others) if np.isfinite(v)])
        return float(np.sqrt((values**2).sum())) if values.size else float("nan")

    @property
    def separation_total(self) -> float:
        return self._total(self.separation_arcsec)

    @property
    def pa_total(self) -> float:
        return self._total(self.pa_deg)

    @property
    def contrast_total(self) -> float:
        return self._total(self.contrast)


def detection_budget(
    separation_px: float,
    pixel_scale: float,
    fit: tuple[float, float, float],
    speckle: tuple[float, float, float],
    contrast: float,
    flux_to_contrast: float,
    systematics: Systematics,
) -> ErrorBudget:
    """The budget of one detection.

    Parameters
    ----------
    separation_px : float
        Fitted separation, pixels.
    pixel_scale : float
        arcsec per pixel.
    fit, speckle : tuple of float
        ``(separation px, polar angle deg, flux)`` terms of the NEGFC fit (NaN where unknown).
    contrast : float
        The detection's contrast (NaN without a star flux).
    flux_to_contrast : float
        Factor from the fit's flux units to contrast (NaN without a star flux).
    systematics : Systematics
    """
    s = systematics
    r = max(float(separation_px), 1e-9)
    sep_arcsec = r * pixel_scale
    separation = {
        "fit": fit[0] * pixel_scale,
        "speckle": speckle[0] * pixel_scale,
        "centre": s.centre_px * pixel_scale,
        "calibration": float(
            np.sqrt(
                (sep_arcsec * s.pixel_scale_rel) ** 2
                + (sep_arcsec * s.distortion_rel) ** 2
                + (s.distortion_px * pixel_scale) ** 2
            )
        ),
    }
    angle = {
        "fit": float(fit[1]),
        "speckle": float(speckle[1]),
        "centre": float(np.rad2deg(s.centre_px / r)),
        "calibration": float(
            np.sqrt(s.north_deg**2 + np.rad2deg(s.distortion_rel) ** 2 + np.rad2deg(s.distortion_px / r) ** 2)
        ),
    }
    contrast_terms = {
        "fit": fit[2] * flux_to_contrast,
        "speckle": speckle[2] * flux_to_contrast,
        "photometry": contrast * s.star_flux_rel,
    }
    return ErrorBudget(
        {k: float(v) for k, v in separation.items()},
        angle,
        {k: float(v) for k, v in contrast_terms.items()},
        s.centre_status,
    )
