"""The files a post-processing of one cube (one band) leaves: one writer for the CLI and the catalog.

``residuals.fits`` and ``snrmap.fits`` (float32, the star at ``star_centre``, the provenance by
:func:`reduction.fitsio_products.provenance_header` plus the keywords below), ``detections.ecsv``
and ``contrast_curve.ecsv`` (provenance in their metadata). ``hcdc postprocess`` and the catalog's
post-processing both call :func:`write_products`, so a file looks the same whoever made it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from reduction.conventions import star_centre
from reduction.fitsio_products import write_image, write_table

from .results import PostprocessResult
from .statistical import FALSE_ALARM
from .tables import contrast_table, detections_table, spectra_table, spectral_detections_table, spectral_limits_table

#: the definition of the S/N map's values, written in its header
SNR_DEFINITION = ("Mawet2014", "small-sample S/N, 1xFWHM apertures")


def product_cards(result: PostprocessResult, params, pixel_scale: float) -> dict[str, tuple[Any, str]]:
    """Keywords a person reads in the residual and S/N maps (the parameters are all in ``HCDC PARAM``)."""
    frame = result.subtraction.residuals
    cy, cx = star_centre(frame.shape)
    algorithm = params.subtraction.algorithm
    return {
        "ALGO": (algorithm, "PSF subtraction / detection algorithm"),
        "NCOMP": (params.subtraction.ncomp if algorithm in ("pca", "annular-pca") else None, "principal components"),
        "FWHM": (float(result.psf.fwhm), "[px] FWHM of the PSF (Gaussian fit)"),
        "PIXSCAL": (float(pixel_scale), "[arcsec/px] pixel scale"),
        "STARX": (cx + 1, "star x, 1-based FITS pixel"),
        "STARY": (cy + 1, "star y, 1-based FITS pixel"),
        "RECENTER": (bool(params.recenter), "cube re-centred by 2-D Gaussian fit"),
        "NSKIPANN": (len(result.subtraction.skipped_annuli), "annuli skipped (NaN)"),
        "ANGCONV": ("vip-hci", "derotation angle convention"),
    }


def write_products(
    result: PostprocessResult,
    params,
    out_dir: Path,
    provenance: Mapping[str, Any],
    *,
    pixel_scale: float,
    star_flux: float | None,
    suffix: str = "",
) -> dict[str, Path]:
    """Write the four products of one band; return their paths by kind (``residuals{suffix}``, …).

    Parameters
    ----------
    result : PostprocessResult
        What :func:`reduction.postproc.pipeline.postprocess` returned.
    params : PostprocessParameters
        The parameters that made it (their keywords in the headers).
    out_dir : Path
        The folder (created when missing).
    provenance : mapping
        Step, version, reduction, parameters and inputs (see ``provenance_header``).
    pixel_scale, star_flux : float
        Arcsec per pixel and the star's flux (None: no contrasts).
    suffix : str
        Appended to every kind and file name (``_b1``: the band of a multi-band cube).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    provenance = dict(provenance)
    cards = product_cards(result, params, pixel_scale)
    paths = {
        f"residuals{suffix}": write_image(
            out_dir / f"residuals{suffix}.fits", result.subtraction.residuals, provenance, cards, dtype=np.float32
        ),
        f"snrmap{suffix}": write_image(
            out_dir / f"snrmap{suffix}.fits",
            result.detection.snr_map,
            provenance,
            {**cards, "SNRDEF": FALSE_ALARM.get(params.subtraction.algorithm, SNR_DEFINITION)},
            dtype=np.float32,
        ),
        f"detections{suffix}": write_table(
            out_dir / f"detections{suffix}.ecsv", detections_table(result, pixel_scale, star_flux), provenance
        ),
        f"contrast_curve{suffix}": write_table(
            out_dir / f"contrast_curve{suffix}.ecsv", contrast_table(result.contrast), provenance
        ),
    }
    return paths


def write_spectral_products(result, params, out_dir: Path, provenance: Mapping[str, Any]) -> dict[str, Path]:
    """Write the products of a spectral (IFS) post-processing; return their paths by kind.

    ``residuals.fits`` (the collapsed ASDI residual), ``snrmap.fits``, ``channel_residuals.fits``
    (λ, y, x), ``detections.ecsv``, ``spectra.ecsv`` and ``contrast_curve.ecsv`` (per channel and
    collapsed), each with the provenance.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    provenance = dict(provenance)
    cy, cx = star_centre(result.collapsed.shape)
    cards = {
        "ALGO": ("asdi-pca", "spectral + angular differential imaging (PCA)"),
        "ASDIMODE": (params.mode, "single: one PCA over channels and frames; double: SDI then ADI"),
        "NCOMP": (params.ncomp, "principal components"),
        "NCHAN": (int(result.wavelengths_um.size), "wavelength channels"),
        "FWHM": (float(np.mean(result.fwhm)), "[px] mean FWHM of the channels' PSFs"),
        "PIXSCAL": (float(result.pixel_scale), "[arcsec/px] pixel scale"),
        "STARX": (cx + 1, "star x, 1-based FITS pixel"),
        "STARY": (cy + 1, "star y, 1-based FITS pixel"),
        "COLLAPSE": ("matched", "channels weighed by star flux x throughput / noise^2 per separation"),
        "ANGCONV": ("vip-hci", "derotation angle convention"),
    }
    return {
        "residuals": write_image(out_dir / "residuals.fits", result.collapsed, provenance, cards, dtype=np.float32),
        "snrmap": write_image(
            out_dir / "snrmap.fits",
            result.detection.snr_map,
            provenance,
            {**cards, "SNRDEF": SNR_DEFINITION},
            dtype=np.float32,
        ),
        "channel_residuals": write_image(
            out_dir / "channel_residuals.fits", result.channels, provenance, cards, dtype=np.float32
        ),
        "detections": write_table(out_dir / "detections.ecsv", spectral_detections_table(result), provenance),
        "spectra": write_table(out_dir / "spectra.ecsv", spectra_table(result), provenance),
        "contrast_curve": write_table(out_dir / "contrast_curve.ecsv", spectral_limits_table(result), provenance),
    }
