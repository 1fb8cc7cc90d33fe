"""The post-processing result as tables: one row per candidate, one row per separation.

Used by ``hcdc postprocess`` (``detections.ecsv``, ``contrast_curve.ecsv``), the
systematic pipeline (catalog detections and limits) and the reduction widgets,
so that all three report exactly the same columns.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .budget import ANGLE_TERMS, CONTRAST_TERMS, SEPARATION_TERMS

#: the position columns of a detections table, with the budget's terms (in table order)
POSITION_COLUMNS = (
    "sep_arcsec",
    "sep_arcsec_err",
    *(f"sep_arcsec_err_{k}" for k in SEPARATION_TERMS),
    "pa_deg",
    "pa_deg_err",
    *(f"pa_deg_err_{k}" for k in ANGLE_TERMS),
    "theta_deg",
)


def detections_table(result, pixel_scale: float, star_flux: float | None):
    """One row per candidate, NEGFC values when characterised (else detection values, NaN errors)."""
    import astropy.units as u
    from astropy.table import Table

    from reduction.conventions import star_centre

    cy, cx = star_centre(result.subtraction.residuals.shape)
    scale = result.psf.scale
    rows = []
    systematics = result.systematics
    for index, item in enumerate(result.characterised, start=1):
        cand, fit, budget = item.candidate, item.negfc, item.budget
        nan3 = (np.nan, np.nan, np.nan)
        if fit is not None:
            x, y, sep, theta, flux_norm = fit.x, fit.y, fit.separation_px, fit.theta_deg, fit.flux
            unc = fit.uncertainty
            tot, spk, fterm = (unc.total, unc.speckle, unc.fit) if unc is not None else (nan3, nan3, nan3)
        else:
            x, y, sep, theta, flux_norm = cand.x, cand.y, cand.separation_px, cand.theta_deg, np.nan
            tot = spk = fterm = nan3
        if budget is not None:
            sep_terms, pa_terms, contrast_terms = budget.separation_arcsec, budget.pa_deg, budget.contrast
            sep_total, pa_total, contrast_total = budget.separation_total, budget.pa_total, budget.contrast_total
        else:  # no fit: no measurement error to add the systematic terms to
            sep_terms = {k: np.nan for k in SEPARATION_TERMS}
            pa_terms = {k: np.nan for k in ANGLE_TERMS}
            contrast_terms = {k: np.nan for k in CONTRAST_TERMS}
            sep_total = pa_total = contrast_total = np.nan
        th = np.deg2rad(theta)
        sep_total_px = sep_total / pixel_scale
        x_err = float(np.hypot(np.cos(th) * sep_total_px, sep * np.sin(th) * np.deg2rad(pa_total)))
        y_err = float(np.hypot(np.sin(th) * sep_total_px, sep * np.cos(th) * np.deg2rad(pa_total)))
        contrast = flux_norm / star_flux if star_flux else np.nan
        rows.append(
            {
                "id": index,
                "x": x,
                "y": y,
                "x_err": x_err,
                "y_err": y_err,
                "sep_px": sep,
                "sep_px_err": sep_total_px,
                "sep_arcsec": sep * pixel_scale,
                "sep_arcsec_err": sep_total,
                **{f"sep_arcsec_err_{k}": v for k, v in sep_terms.items()},
                "pa_deg": float(np.mod(theta - 90.0, 360.0)),
                "pa_deg_err": pa_total,
                **{f"pa_deg_err_{k}": v for k, v in pa_terms.items()},
                "theta_deg": theta,
                "snr": cand.snr,
                "peak_snr": cand.peak_snr,
                "fpf": cand.fpf,
                "significance": cand.significance,
                "flux": flux_norm / scale,
                "flux_err": tot[2] / scale,
                "flux_err_speckle": spk[2] / scale,
                "flux_err_fit": fterm[2] / scale,
                "flux_fwhm_aperture": flux_norm,
                "flux_fwhm_aperture_err": tot[2],
                "contrast": contrast,
                "contrast_err": contrast_total,
                **{f"contrast_err_{k}": v for k, v in contrast_terms.items()},
                "characterised": fit is not None,
                "centre_status": systematics.centre_status if systematics is not None else "given",
                "found_by": "+".join(item.found_by),
                "note": item.note,
            }
        )
    names = [
        "id",
        "x",
        "y",
        "x_err",
        "y_err",
        "sep_px",
        "sep_px_err",
        *POSITION_COLUMNS,
        "snr",
        "peak_snr",
        "fpf",
        "significance",
        "flux",
        "flux_err",
        "flux_err_speckle",
        "flux_err_fit",
        "flux_fwhm_aperture",
        "flux_fwhm_aperture_err",
        "contrast",
        "contrast_err",
        *(f"contrast_err_{k}" for k in CONTRAST_TERMS),
        "characterised",
        "centre_status",
        "found_by",
        "note",
    ]
    dtypes = [int] + [float] * (len(names) - 5) + [bool, str, str, str]
    table = (
        Table(rows=[[r[n] for n in names] for r in rows], names=names, dtype=dtypes)
        if rows
        else Table(names=names, dtype=dtypes)
    )
    units = {
        "x": u.pix,
        "y": u.pix,
        "x_err": u.pix,
        "y_err": u.pix,
        "sep_px": u.pix,
        "sep_px_err": u.pix,
        "sep_arcsec": u.arcsec,
        "sep_arcsec_err": u.arcsec,
        **{f"sep_arcsec_err_{k}": u.arcsec for k in SEPARATION_TERMS},
        "pa_deg": u.deg,
        "pa_deg_err": u.deg,
        **{f"pa_deg_err_{k}": u.deg for k in ANGLE_TERMS},
        "theta_deg": u.deg,
    }
    for name, unit in units.items():
        table[name].unit = unit
    descriptions = {
        "x": "0-based column of the final (derotated) image",
        "y": "0-based row of the final image",
        "pa_deg": "position angle east of north (with the given derotation angles)",
        "theta_deg": "polar angle counter-clockwise from +x (vip-hci convention)",
        "snr": "S/N at (x, y), Mawet et al. 2014 small-sample statistics",
        "fpf": "false-positive fraction (Student-t, n_apertures - 1 dof)",
        "significance": "Gaussian-equivalent significance of fpf (sigma)",
        "flux": "scale factor of the given PSF found by the negative-companion fit",
        "flux_fwhm_aperture": "companion flux in a 1xFWHM aperture (cube units; vip NEGFC flux)",
        "contrast": "flux_fwhm_aperture / star flux (1xFWHM aperture)",
    }
    for name, text in descriptions.items():
        table[name].description = text
    table.meta.update(
        {
            "pixel_scale_arcsec": pixel_scale,
            "fwhm_px": result.psf.fwhm,
            "star_flux": star_flux,
            "psf_aperture_flux": result.psf.aperture_flux,
            "psf_scale": result.psf.scale,
            "star_xy": [int(cx), int(cy)],
            "uncertainties": (
                "1 sigma; sep/pa/contrast totals = max(*_fit, *_speckle) (the same noise, counted once) and the "
                "*_centre, *_calibration (*_photometry for contrasts) terms in quadrature (reduction.postproc.budget); "
                "flux_err = max(fit, speckle)"
            ),
            "systematics": result.systematics.to_dict() if result.systematics is not None else None,
        }
    )
    return table


def contrast_table(curve):
    import astropy.units as u
    from astropy.table import Table

    nan = np.full(curve.separation_px.shape, np.nan)
    table = Table(
        {
            "sep_px": curve.separation_px,
            "sep_arcsec": curve.separation_arcsec if curve.separation_arcsec is not None else nan,
            "contrast_5sigma": curve.contrast if curve.contrast is not None else nan,
            "contrast_5sigma_gaussian": curve.contrast_gaussian if curve.contrast_gaussian is not None else nan,
            "flux_5sigma": curve.flux_limit,
            "throughput": curve.throughput,
            "noise": curve.noise,
            "sigma_corrected": curve.sigma_corrected,
        }
    )
    table["sep_px"].unit = u.pix
    table["sep_arcsec"].unit = u.arcsec
    table["contrast_5sigma"].description = (
        f"{curve.sigma:g}-sigma contrast with throughput and Student-t "
        "small-sample correction (NaN without --star-flux)"
    )
    table["flux_5sigma"].description = "flux limit in a 1xFWHM aperture, cube units"
    table.meta.update(
        {
            "sigma": curve.sigma,
            "star_flux": curve.star_flux,
            "fwhm_px": curve.fwhm,
            "throughput_separation_px": [float(v) for v in curve.throughput_separation_px],
            "throughput_measured": [float(v) for v in curve.throughput_measured],
            "parameters": curve.parameters,
        }
    )
    return table


# --- the catalog's detection and limit rows: one schema, one mapping -----------------------------


class DetectionField(NamedTuple):
    """One column of a detection as the catalog holds it."""

    name: str
    unit: str | None
    description: str
    required: bool
    kind: type = float


#: A detection as the catalog holds it. The pipeline, the widgets' save, the catalog service, the
#: command line's tables and the exports all use these.
DETECTION_FIELDS: tuple[DetectionField, ...] = (
    DetectionField("x_px", "pix", "0-based column in the final (derotated) image", True),
    DetectionField("y_px", "pix", "0-based row in the final image", True),
    DetectionField("sep_arcsec", "arcsec", "Separation from the star", True),
    DetectionField("sep_err_arcsec", "arcsec", "Separation uncertainty (1 sigma, the budget's total)", False),
    DetectionField("pa_deg", "deg", "Position angle east of north", True),
    DetectionField("pa_err_deg", "deg", "Position angle uncertainty (1 sigma, the budget's total)", False),
    DetectionField("snr", None, "S/N (Mawet et al. 2014 small-sample statistics)", True),
    DetectionField("fpf", None, "False-positive fraction", False),
    DetectionField("flux", None, "Companion flux in a 1-FWHM aperture (cube units)", False),
    DetectionField("flux_err", None, "Flux uncertainty (1 sigma, larger of fit and speckle)", False),
    DetectionField("contrast", None, "Flux ratio to the star (1-FWHM apertures)", False),
    DetectionField("contrast_err", None, "Contrast uncertainty (1 sigma, the budget's total)", False),
    DetectionField("wavelength_um", "um", "Wavelength of the reduced image", False),
    DetectionField("sep_err_fit_arcsec", "arcsec", "Separation: NEGFC fit term (chi2 curvature)", False),
    DetectionField("sep_err_speckle_arcsec", "arcsec", "Separation: speckle-noise term (injections)", False),
    DetectionField("sep_err_centre_arcsec", "arcsec", "Separation: star-centre term", False),
    DetectionField("sep_err_calibration_arcsec", "arcsec", "Separation: pixel scale and distortion", False),
    DetectionField("pa_err_fit_deg", "deg", "Position angle: NEGFC fit term", False),
    DetectionField("pa_err_speckle_deg", "deg", "Position angle: speckle-noise term", False),
    DetectionField("pa_err_centre_deg", "deg", "Position angle: star-centre term", False),
    DetectionField("pa_err_calibration_deg", "deg", "Position angle: true north, pupil offset, distortion", False),
    DetectionField("contrast_err_fit", None, "Contrast: NEGFC fit term", False),
    DetectionField("contrast_err_speckle", None, "Contrast: speckle-noise term", False),
    DetectionField("contrast_err_photometry", None, "Contrast: the star's flux (FLUX frames, neutral density)", False),
    DetectionField(
        "centre_status",
        None,
        "How the star centre was found: waffle, centre-from-header, coronagraph-core, fitted, given",
        False,
        str,
    ),
    DetectionField(
        "found_by",
        None,
        "Algorithms whose own detection map finds it, '+'-separated, the reduction's main one first (empty: one ran)",
        False,
        str,
    ),
    DetectionField("note", None, "Why a candidate has no fit (empty when it has one)", False, str),
)

#: the error-budget columns of a detection, in table order
ERROR_BUDGET_FIELDS = (
    *(f"sep_err_{k}_arcsec" for k in SEPARATION_TERMS),
    *(f"pa_err_{k}_deg" for k in ANGLE_TERMS),
    *(f"contrast_err_{k}" for k in CONTRAST_TERMS),
)

#: which column of :func:`detections_table` each catalog field comes from
_FROM_TABLE = {
    "x_px": "x",
    "y_px": "y",
    "sep_arcsec": "sep_arcsec",
    "sep_err_arcsec": "sep_arcsec_err",
    "pa_deg": "pa_deg",
    "pa_err_deg": "pa_deg_err",
    "snr": "snr",
    "fpf": "fpf",
    "flux": "flux_fwhm_aperture",
    "flux_err": "flux_fwhm_aperture_err",
    "contrast": "contrast",
    "contrast_err": "contrast_err",
    **{f"sep_err_{k}_arcsec": f"sep_arcsec_err_{k}" for k in SEPARATION_TERMS},
    **{f"pa_err_{k}_deg": f"pa_deg_err_{k}" for k in ANGLE_TERMS},
    **{f"contrast_err_{k}": f"contrast_err_{k}" for k in CONTRAST_TERMS},
}


def finite(value) -> float | None:
    """``value`` as a float, None when it is missing or not finite (the catalog stores no NaN)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def catalog_detections(table, wavelength_um: float | None) -> list[dict]:
    """The catalog fields (:data:`DETECTION_FIELDS`) of every row of :func:`detections_table`."""
    rows = []
    for row in table:
        values = {field: finite(row[column]) for field, column in _FROM_TABLE.items()}
        values["wavelength_um"] = finite(wavelength_um)
        values["centre_status"] = str(row["centre_status"]) or None
        values["found_by"] = (str(row["found_by"]) or None) if "found_by" in row.colnames else None
        values["note"] = str(row["note"])[:200] or None
        rows.append(values)
    return rows


def catalog_limit(curve, sigma: float, algorithm: str, wavelength_um: float | None, star_flux: float | None) -> dict:
    """A detection limit as the catalog holds it, from :func:`contrast_table`'s ``curve``.

    Contrasts when the star's flux is known, else fluxes (cube units); points without a finite
    separation or value are left out.
    """
    values = curve["contrast_5sigma"] if star_flux else curve["flux_5sigma"]
    return {
        "sigma": float(sigma),
        "algorithm": algorithm,
        "wavelength_um": finite(wavelength_um),
        "points": [
            {"sep_arcsec": finite(s), "contrast": finite(v), "throughput": finite(t)}
            for s, v, t in zip(curve["sep_arcsec"], values, curve["throughput"])
            if finite(s) is not None and finite(v) is not None
        ],
    }


# --- spectral (IFS) results -----------------------------------------------------------------------


def spectral_detections_table(result):
    """One row per candidate of a :class:`~reduction.postproc.spectral.SpectralResult`, with the columns
    :func:`catalog_detections` maps (collapsed position, S/N and contrast; the budget's terms) and the
    spectral vetting (``status``, ``radial_slope``)."""
    import astropy.units as u
    from astropy.table import Table

    rows = []
    scale = result.pixel_scale
    mean_star = float(np.mean(result.star_flux)) if result.star_flux is not None else np.nan
    for index, item in enumerate(result.candidates, start=1):
        cand, budget = item.candidate, item.budget
        rows.append(
            {
                "id": index,
                "x": cand.x,
                "y": cand.y,
                "sep_px": cand.separation_px,
                "sep_arcsec": cand.separation_px * scale,
                "sep_arcsec_err": budget.separation_total,
                **{f"sep_arcsec_err_{k}": budget.separation_arcsec.get(k, np.nan) for k in SEPARATION_TERMS},
                "pa_deg": cand.pa_deg,
                "pa_deg_err": budget.pa_total,
                **{f"pa_deg_err_{k}": budget.pa_deg.get(k, np.nan) for k in ANGLE_TERMS},
                "theta_deg": cand.theta_deg,
                "snr": cand.snr,
                "fpf": cand.fpf,
                "flux_fwhm_aperture": item.contrast * mean_star,
                "flux_fwhm_aperture_err": item.contrast_err * mean_star,
                "contrast": item.contrast,
                "contrast_err": budget.contrast_total,
                **{f"contrast_err_{k}": budget.contrast.get(k, np.nan) for k in CONTRAST_TERMS},
                "radial_slope": item.radial_slope,
                "radial_slope_err": item.radial_slope_err,
                "radial_slope_model": item.radial_slope_model,
                "status": item.status,
                "centre_status": budget.centre_status,
                "found_by": "",
                "note": item.note or "",
                "position_from": item.position_from,
            }
        )
    names = [
        "id",
        "x",
        "y",
        "sep_px",
        *POSITION_COLUMNS,
        "snr",
        "fpf",
        "flux_fwhm_aperture",
        "flux_fwhm_aperture_err",
        "contrast",
        "contrast_err",
        *(f"contrast_err_{k}" for k in CONTRAST_TERMS),
        "radial_slope",
        "radial_slope_err",
        "radial_slope_model",
        "status",
        "centre_status",
        "found_by",
        "note",
        "position_from",
    ]
    dtypes = [int] + [float] * (len(names) - 6) + [str] * 5
    table = (
        Table(rows=[[r[n] for n in names] for r in rows], names=names, dtype=dtypes)
        if rows
        else Table(names=names, dtype=dtypes)
    )
    for name in ("x", "y", "sep_px"):
        table[name].unit = u.pix
    for name in ("sep_arcsec", "sep_arcsec_err"):
        table[name].unit = u.arcsec
    for name in ("pa_deg", "pa_deg_err", "theta_deg"):
        table[name].unit = u.deg
    table["contrast"].description = "contrast of the collapsed image: the channels' contrasts as it weighs them"
    table["radial_slope"].description = "d ln r / d ln lambda of the per-channel centroids (0 companion, 1 speckle)"
    table["radial_slope_model"].description = "the same slope for the candidate's forward model (self-subtraction)"
    table["status"].description = "candidate, or speckle-like when radial_slope - radial_slope_model is above threshold"
    table["position_from"].description = "forward-model (astrometry of the model through the ASDI) or centroid"
    table.meta.update(
        {
            "pixel_scale_arcsec": scale,
            "fwhm_px": [float(v) for v in result.fwhm],
            "wavelengths_um": [float(v) for v in result.wavelengths_um],
            "uncertainties": (
                "1 sigma; position: FWHM / 2 S/N for a forward-model position, else the scatter of the per-channel "
                "centroids over sqrt(n) (or FWHM / 2 S/N); contrast: "
                "the collapsed image's noise apertures over its response; the systematic terms in quadrature"
            ),
        }
    )
    return table


def spectra_table(result):
    """The spectra of a spectral result: one row per (candidate ``id``, channel)."""
    import astropy.units as u
    from astropy.table import Table

    rows = [
        (index, float(w), float(c), float(e), float(s))
        for index, item in enumerate(result.candidates, start=1)
        for w, c, e, s in zip(
            item.spectrum.wavelengths_um, item.spectrum.contrast, item.spectrum.contrast_err, item.spectrum.snr
        )
    ]
    names = ("id", "wavelength_um", "contrast", "contrast_err", "snr")
    table = Table(rows=rows, names=names, dtype=(int, float, float, float, float)) if rows else Table(names=names)
    table["wavelength_um"].unit = u.um
    table["contrast"].description = "flux ratio to the star in the channel (1xFWHM apertures), self-subtraction fitted"
    table["contrast_err"].description = "1 sigma: the channel's noise apertures at the same separation"
    return table


def spectral_limits_table(result):
    """Detection limits of a spectral result: one row per (channel or collapsed, separation).

    ``wavelength_um`` is NaN on the collapsed image's rows (``channel`` 0; channels count from 1).
    """
    import astropy.units as u
    from astropy.table import Table

    limits = result.limits
    nl = result.wavelengths_um.size
    radii = limits.radii_px
    channel = np.repeat(np.arange(nl + 1), radii.size)
    channel = np.where(channel == nl, 0, channel + 1)
    wavelengths = np.concatenate([np.repeat(result.wavelengths_um, radii.size), np.full(radii.size, np.nan)])
    table = Table(
        {
            "channel": channel,
            "wavelength_um": wavelengths,
            "sep_px": np.tile(radii, nl + 1),
            "sep_arcsec": np.tile(radii, nl + 1) * result.pixel_scale,
            "contrast_5sigma": np.concatenate([limits.contrast.ravel(), limits.collapsed]),
            "throughput": limits.throughput.ravel(),
            "noise": limits.noise.ravel(),
        }
    )
    table["sep_px"].unit = u.pix
    table["sep_arcsec"].unit = u.arcsec
    table["wavelength_um"].unit = u.um
    table["contrast_5sigma"].description = (
        f"{limits.sigma:g}-sigma contrast (Student-t corrected); channel 0: the collapsed image, for a flat-contrast "
        "companion"
    )
    table.meta["sigma"] = limits.sigma
    return table


def catalog_spectral_limits(table, algorithm: str) -> list[dict]:
    """The detection limits of :func:`spectral_limits_table` as the catalog holds them, collapsed first."""
    out = []
    for channel in [0, *sorted(set(int(c) for c in table["channel"]) - {0})]:
        rows = table[table["channel"] == channel]
        if len(rows) == 0:
            continue
        out.append(
            {
                "sigma": float(table.meta.get("sigma", 5.0)),
                "algorithm": algorithm if channel else f"{algorithm}-collapsed",
                "wavelength_um": finite(rows["wavelength_um"][0]),
                "points": [
                    {"sep_arcsec": finite(s), "contrast": finite(v), "throughput": finite(t)}
                    for s, v, t in zip(rows["sep_arcsec"], rows["contrast_5sigma"], rows["throughput"])
                    if finite(s) is not None and finite(v) is not None
                ],
            }
        )
    return out
