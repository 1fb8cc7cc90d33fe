"""The post-processing result as tables: one row per candidate, one row per separation.

Used by ``hcdc postprocess`` (``detections.ecsv``, ``contrast_curve.ecsv``), the
systematic pipeline (catalog detections and limits) and the reduction widgets,
so that all three report exactly the same columns.
"""

from __future__ import annotations

import numpy as np


def detections_table(result, pixel_scale: float, star_flux: float | None):
    """One row per candidate, NEGFC values when characterised (else detection values, NaN errors)."""
    import astropy.units as u
    from astropy.table import Table

    from reduction.conventions import star_centre

    cy, cx = star_centre(result.subtraction.residuals.shape)
    scale = result.psf.scale
    rows = []
    for index, item in enumerate(result.characterised, start=1):
        cand, fit = item.candidate, item.negfc
        nan3 = (np.nan, np.nan, np.nan)
        if fit is not None:
            x, y, sep, theta, flux_norm = fit.x, fit.y, fit.separation_px, fit.theta_deg, fit.flux
            unc = fit.uncertainty
            tot, spk, fterm = (unc.total, unc.speckle, unc.fit) if unc is not None else (nan3, nan3, nan3)
        else:
            x, y, sep, theta, flux_norm = cand.x, cand.y, cand.separation_px, cand.theta_deg, np.nan
            tot = spk = fterm = nan3
        th = np.deg2rad(theta)
        x_err = float(np.hypot(np.cos(th) * tot[0], sep * np.sin(th) * np.deg2rad(tot[1])))
        y_err = float(np.hypot(np.sin(th) * tot[0], sep * np.cos(th) * np.deg2rad(tot[1])))
        contrast = flux_norm / star_flux if star_flux else np.nan
        contrast_err = tot[2] / star_flux if star_flux else np.nan
        rows.append(
            {
                "id": index,
                "x": x,
                "y": y,
                "x_err": x_err,
                "y_err": y_err,
                "sep_px": sep,
                "sep_px_err": tot[0],
                "sep_arcsec": sep * pixel_scale,
                "sep_arcsec_err": tot[0] * pixel_scale,
                "sep_arcsec_err_speckle": spk[0] * pixel_scale,
                "sep_arcsec_err_fit": fterm[0] * pixel_scale,
                "pa_deg": float(np.mod(theta - 90.0, 360.0)),
                "pa_deg_err": tot[1],
                "pa_deg_err_speckle": spk[1],
                "pa_deg_err_fit": fterm[1],
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
                "contrast_err": contrast_err,
                "characterised": fit is not None,
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
        "sep_arcsec",
        "sep_arcsec_err",
        "sep_arcsec_err_speckle",
        "sep_arcsec_err_fit",
        "pa_deg",
        "pa_deg_err",
        "pa_deg_err_speckle",
        "pa_deg_err_fit",
        "theta_deg",
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
        "characterised",
        "note",
    ]
    dtypes = [int] + [float] * 27 + [bool, str]
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
        "sep_arcsec_err_speckle": u.arcsec,
        "sep_arcsec_err_fit": u.arcsec,
        "pa_deg": u.deg,
        "pa_deg_err": u.deg,
        "pa_deg_err_speckle": u.deg,
        "pa_deg_err_fit": u.deg,
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
            "uncertainties": "1 sigma; total = speckle (+) fit, see the *_speckle, *_fit columns",
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

#: A detection as the catalog holds it: (field, unit, description, required). The pipeline, the
#: widgets' save, the catalog service, the command line's tables and the exports all use these.
DETECTION_FIELDS = (
    ("x_px", "pix", "0-based column in the final (derotated) image", True),
    ("y_px", "pix", "0-based row in the final image", True),
    ("sep_arcsec", "arcsec", "Separation from the star", True),
    ("sep_err_arcsec", "arcsec", "Separation uncertainty (1 sigma, speckle + fit)", False),
    ("pa_deg", "deg", "Position angle east of north", True),
    ("pa_err_deg", "deg", "Position angle uncertainty (1 sigma, speckle + fit)", False),
    ("snr", None, "S/N (Mawet et al. 2014 small-sample statistics)", True),
    ("fpf", None, "False-positive fraction", False),
    ("flux", None, "Companion flux in a 1-FWHM aperture (cube units)", False),
    ("flux_err", None, "Flux uncertainty (1 sigma)", False),
    ("contrast", None, "Flux ratio to the star (1-FWHM apertures)", False),
    ("contrast_err", None, "Contrast uncertainty (1 sigma)", False),
    ("wavelength_um", "um", "Wavelength of the reduced image", False),
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
