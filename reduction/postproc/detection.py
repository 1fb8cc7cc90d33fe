"""Automatic candidate extraction from an S/N map.

Local maxima of the S/N map above a threshold (on the Student-t S/N, or on its
Gaussian-equivalent significance) become candidates, brightest first; each gets
a sub-pixel position (the 1xFWHM-aperture flux peak within one FWHM of the S/N
peak, refined by a 2-D Gaussian fit of the final image, as
``vip_hci.metrics.detection`` fits the peaks), its S/N measured there, and its
false-positive fraction from the small-sample statistics (Mawet et al. 2014).

A bright source raises several local maxima of the S/N map (its wings, the
lobes of the PCA self-subtraction), all in one connected region above the
threshold, whose refined positions fall within a few pixels of each other. A
peak is therefore dropped when its refined position is within one FWHM of a
brighter candidate, or within two FWHM of a brighter candidate of the same
region (not resolved from it): one candidate per source, while two sources
more than 2 FWHM apart stay two.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from reduction.conventions import star_centre

from ._checks import check_frame, check_positive
from ._threads import blas_single_thread
from .photometry import aperture_sums
from .psf import fit_gaussian
from .results import Candidate, DetectionResult, theta_to_pa
from .snr import fpf_from_snr, n_apertures, significance_from_fpf, snr, snr_map

THRESHOLD_KINDS = ("snr", "significance")


def significance_map(smap: np.ndarray, fwhm: float) -> np.ndarray:
    """Gaussian-equivalent significance of every pixel of an S/N map."""
    cy, cx = star_centre(smap.shape)
    yy, xx = np.mgrid[: smap.shape[0], : smap.shape[1]]
    sep = np.hypot(yy - cy, xx - cx)
    n_noise = np.maximum(n_apertures(np.maximum(sep, fwhm), fwhm) - 1, 2)
    return significance_from_fpf(fpf_from_snr(np.nan_to_num(smap, nan=-np.inf), n_noise))


def _brightest_near(frame: np.ndarray, peak_yx: tuple[int, int], fwhm: float) -> tuple[int, int]:
    """Pixel of maximum 1xFWHM-aperture flux within one FWHM of the S/N peak.

    The S/N map peaks where signal over *local* noise is largest, which can be
    a pixel or two off the source; the flux peak is the source.
    """
    py, px = peak_yx
    reach = int(np.ceil(fwhm))
    y0, x0 = max(py - reach, 0), max(px - reach, 0)
    y1, x1 = min(py + reach + 1, frame.shape[0]), min(px + reach + 1, frame.shape[1])
    yy, xx = np.mgrid[y0:y1, x0:x1]
    cy, cx = star_centre(frame.shape)
    # not into the star's own residual: within one FWHM of the star the S/N is not defined
    near = (np.hypot(yy - py, xx - px) <= fwhm) & (np.hypot(yy - cy, xx - cx) >= fwhm)
    if not near.any():
        return py, px
    fluxes = aperture_sums(np.nan_to_num(frame, nan=0.0), xx[near].astype(float), yy[near].astype(float), fwhm / 2)
    best = int(np.argmax(fluxes))
    return int(yy[near][best]), int(xx[near][best])


def subpixel_peak(frame: np.ndarray, peak_yx: tuple[int, int], fwhm: float) -> tuple[float, float]:
    """2-D Gaussian centroid near a peak, or the peak pixel when the fit is not credible."""
    cropsize = max(5, int(np.ceil(1.5 * fwhm)) | 1)
    py, px = peak_yx
    try:
        fit = fit_gaussian(np.nan_to_num(frame, nan=0.0), (py, px), cropsize=cropsize, fwhm_guess=fwhm)
    except Exception:  # noqa: BLE001 - any fitting failure falls back to the peak pixel
        return float(py), float(px)
    ok = (
        np.isfinite(fit["x"])
        and np.isfinite(fit["y"])
        and fit["amplitude"] > 0
        and np.hypot(fit["x"] - px, fit["y"] - py) <= 1.5
        and 0.3 * fwhm <= fit["fwhm"] <= 3.0 * fwhm
    )
    return (fit["y"], fit["x"]) if ok else (float(py), float(px))


@blas_single_thread
def candidate_at(
    x: float,
    y: float,
    centre_yx: tuple[float, float],
    snr: float,
    peak_snr: float,
    fpf: float,
    significance: float,
    n_apertures: int,
) -> Candidate:
    """A :class:`Candidate` at ``(x, y)`` with its polar coordinates about the star at ``centre_yx``."""
    cy, cx = centre_yx
    theta = float(np.mod(np.rad2deg(np.arctan2(y - cy, x - cx)), 360.0))
    return Candidate(
        x=float(x),
        y=float(y),
        separation_px=float(np.hypot(y - cy, x - cx)),
        theta_deg=theta,
        pa_deg=theta_to_pa(theta),
        snr=float(snr),
        peak_snr=float(peak_snr),
        fpf=float(fpf),
        significance=float(significance),
        n_apertures=int(n_apertures),
    )


def detect_candidates(
    frame,
    fwhm: float,
    *,
    snr_map_array: np.ndarray | None = None,
    threshold: float = 5.0,
    threshold_on: str = "snr",
    min_separation: float | None = None,
    max_candidates: int | None = None,
    tolerance: float = 2e-4,
) -> DetectionResult:
    """Find point-source candidates in a post-processed image.

    Parameters
    ----------
    frame : ndarray, (y, x)
        Final PSF-subtracted image (NaN allowed where not computed).
    fwhm : float
        FWHM in pixels.
    snr_map_array : ndarray, optional
        A precomputed S/N map of ``frame`` (computed when None).
    threshold : float
        Detection threshold (5 by default).
    threshold_on : {'snr', 'significance'}
        Apply the threshold to the Student-t S/N of the map, or to its
        Gaussian-equivalent significance (sigma) at each separation.
    min_separation : float, optional
        Minimum distance between the refined positions of two candidates
        (default 1 FWHM), twice that within one connected region of the map
        above the threshold; the fainter one is dropped.
    max_candidates : int, optional
        Keep only the brightest ones.
    tolerance : float
        S/N map accuracy (see :func:`reduction.postproc.snr.snr_map`).

    Returns
    -------
    DetectionResult
        Candidates sorted by decreasing S/N at the peak.
    """
    frame = check_frame(frame)
    fwhm = check_positive(fwhm, "fwhm")
    if threshold_on not in THRESHOLD_KINDS:
        raise ValueError(f"threshold_on must be one of {THRESHOLD_KINDS}, got {threshold_on!r}")
    smap = snr_map(frame, fwhm, tolerance=tolerance) if snr_map_array is None else np.asarray(snr_map_array)
    if smap.shape != frame.shape:
        raise ValueError(f"the S/N map {smap.shape} does not match the frame {frame.shape}")
    min_sep = fwhm if min_separation is None else float(min_separation)
    work = np.where(np.isfinite(smap) & (smap != 0), smap, -np.inf)
    score = work if threshold_on == "snr" else significance_map(work, fwhm)
    above = score >= threshold
    peaks = (work == ndimage.maximum_filter(work, size=3, mode="constant", cval=-np.inf)) & above
    regions, _ = ndimage.label(above, structure=np.ones((3, 3), dtype=bool))
    py, px = np.nonzero(peaks)
    order = np.argsort(work[py, px], kind="stable")[::-1]
    cy, cx = star_centre(frame.shape)
    candidates: list[Candidate] = []
    kept_regions: list[int] = []
    for i in order:
        if max_candidates is not None and len(candidates) >= max_candidates:
            break
        y_pk, x_pk = int(py[i]), int(px[i])
        ys, xs = subpixel_peak(frame, _brightest_near(frame, (y_pk, x_pk), fwhm), fwhm)
        if np.hypot(ys - cy, xs - cx) < fwhm:
            continue  # refined onto the star's residual, where no S/N is defined (vip's snrmap domain)
        # the peaks of one source converge on it once refined (so compare refined positions, not peaks)
        region = int(regions[y_pk, x_pk])
        if any(
            np.hypot(ys - c.y, xs - c.x) < (2 * min_sep if r == region else min_sep)
            for c, r in zip(candidates, kept_regions)
        ):
            continue
        try:
            measurement = snr(np.nan_to_num(frame, nan=0.0), (xs, ys), fwhm)
            value, fpf, sig, n = measurement.snr, measurement.fpf, measurement.significance, measurement.n_apertures
        except ValueError:
            value, n = float(smap[y_pk, x_pk]), int(n_apertures(np.hypot(ys - cy, xs - cx), fwhm) - 1)
            fpf = float(fpf_from_snr(value, n))
            sig = float(significance_from_fpf(fpf))
        candidates.append(candidate_at(xs, ys, (cy, cx), value, float(smap[y_pk, x_pk]), fpf, sig, n))
        kept_regions.append(region)
    return DetectionResult(
        candidates=tuple(candidates),
        snr_map=smap,
        threshold=float(threshold),
        threshold_on=threshold_on,
        fwhm=float(fwhm),
    )
