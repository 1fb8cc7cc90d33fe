"""Signal-to-noise with the small-sample statistics of Mawet et al. (2014).

At separation ``ρ`` from the star, the test aperture (diameter 1 FWHM) and
``N - 1`` non-overlapping noise apertures sit on a circle of radius ``ρ``,
``N = floor(2π / (2 arcsin(FWHM / 2ρ)))``, stepping clockwise from the test
position. The S/N is Mawet's eq. 9 (two-sample t statistic)::

    S/N = (F_test - mean(F_i)) / (std(F_i, ddof=1) * sqrt(1 + 1/n)),   n = N - 1

which follows a Student-t distribution with ``n - 1`` degrees of freedom for
Gaussian noise, hence the false-positive fraction ``FPF = t.sf(S/N, n - 1)``.
Aperture positions, photometry (exact pixel overlap) and the formula are those
of ``vip_hci.metrics.snr`` / ``snrmap``.

The S/N map evaluates this at every pixel. ``vip_hci.metrics.snrmap`` runs the
exact photometry aperture by aperture; here the exact aperture flux is
tabulated once on a grid 16 times finer than the pixels and interpolated with
a cubic B-spline. A first-order error bound of every pixel's S/N (from the
difference with a linear interpolation) picks the pixels whose interpolated
S/N could be off by more than ``tolerance`` (first-order propagation of the
aperture-flux errors, root-sum-square); those are recomputed with exact
photometry. The result equals vip's exact map to a few ``tolerance`` (the
default 2e-4 gives <= 5e-4 on white noise, the worst case, and on PCA
residuals; ``tests/test_postproc_snr.py``).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, stats

from reduction.conventions import star_centre

from ._checks import check_frame, check_positive
from ._threads import blas_single_thread
from .photometry import aperture_sum_grid, aperture_sums
from .results import SnrMeasurement

#: Sub-pixel oversampling of the tabulated aperture flux.
OVERSAMPLING = 16
#: Scale from the cubic-spline/linear interpolation difference of the aperture fluxes to the error of
#: the S/N (root-sum-square of the first-order terms); calibrated on white noise, correlated noise
#: and PCA residuals against vip's exact map, so that the remaining error stays below ~2.5 x tolerance.
_ERROR_SCALE = 0.7


def n_apertures(separation_px, fwhm: float):
    """Number ``N`` of non-overlapping apertures on the circle (test + noise)."""
    sep = np.asarray(separation_px, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        angle = 2 * np.arcsin(np.clip(fwhm / 2.0 / sep, -1, 1))
        return np.floor(2 * np.pi / angle).astype(int)


def fpf_from_snr(snr, n_noise_apertures):
    """False-positive fraction of an S/N with ``n`` noise apertures (Student-t, ``n - 1`` d.o.f.)."""
    dof = np.maximum(np.asarray(n_noise_apertures, dtype=float) - 1.0, 1.0)
    return stats.t.sf(snr, dof)


def significance_from_fpf(fpf):
    """Gaussian-equivalent significance (sigma) of a false-positive fraction."""
    return stats.norm.isf(np.clip(fpf, 1e-300, 1.0))


def snr_threshold_for_significance(sigma: float, separation_px, fwhm: float):
    """S/N needed at ``separation_px`` for a Gaussian-equivalent ``sigma`` (Student-t)."""
    n_noise = n_apertures(separation_px, fwhm) - 1
    dof = np.maximum(n_noise - 1.0, 1.0)
    return stats.t.isf(stats.norm.sf(sigma), dof)


def aperture_centres(
    frame_shape: tuple[int, int], x: float, y: float, fwhm: float, exclude_negative_lobes: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Test aperture first, then the noise apertures, as ``vip_hci.metrics.indep_ap_centers``."""
    cy, cx = star_centre(frame_shape)
    dx, dy = float(x) - cx, float(y) - cy
    sep = np.hypot(dx, dy)
    if not sep > fwhm / 2.0:
        raise ValueError(
            f"the test position ({x}, {y}) is too close to the star "
            f"(separation {sep:.2f} px <= FWHM/2 = {fwhm / 2:.2f} px)"
        )
    angle = np.arcsin(fwhm / 2.0 / sep) * 2
    number = int(np.floor(2 * np.pi / angle))
    k = np.arange(number)
    a = -k * angle  # clockwise, as vip
    xs = cx + np.cos(a) * dx - np.sin(a) * dy
    ys = cy + np.sin(a) * dx + np.cos(a) * dy
    if exclude_negative_lobes and number > 3:
        keep = np.ones(number, bool)
        keep[[1, number - 1]] = False
        xs, ys = xs[keep], ys[keep]
    return xs, ys


@blas_single_thread
def snr(frame, xy: tuple[float, float], fwhm: float, exclude_negative_lobes: bool = False) -> SnrMeasurement:
    """S/N of the resolution element at ``xy = (x, y)`` (``vip_hci.metrics.snr``).

    Parameters
    ----------
    frame : ndarray, (y, x)
        Post-processed image.
    xy : tuple of float
        Test position, 0-based pixels.
    fwhm : float
        FWHM in pixels (aperture diameter).
    exclude_negative_lobes : bool
        Drop the two noise apertures next to the test aperture (ADI negative lobes).

    Returns
    -------
    SnrMeasurement
    """
    frame = check_frame(frame)
    fwhm = check_positive(fwhm, "fwhm")
    x, y = float(xy[0]), float(xy[1])
    xs, ys = aperture_centres(frame.shape, x, y, fwhm, exclude_negative_lobes)
    fluxes = aperture_sums(frame, xs, ys, fwhm / 2.0)
    signal, noise_fluxes = fluxes[0], fluxes[1:]
    n = noise_fluxes.size
    if n < 2:
        raise ValueError(f"only {n} noise aperture(s) at this separation; the S/N is undefined")
    std = noise_fluxes.std(ddof=1)
    value = (signal - noise_fluxes.mean()) / (std * np.sqrt(1 + 1 / n))
    fpf = float(fpf_from_snr(value, n))
    return SnrMeasurement(
        x=x,
        y=y,
        snr=float(value),
        signal=float(signal),
        noise=float(std),
        background=float(noise_fluxes.mean()),
        n_apertures=n,
        fpf=fpf,
        significance=float(significance_from_fpf(fpf)),
    )


def snr_map_mask(frame: np.ndarray, fwhm: float) -> np.ndarray:
    """Pixels where vip's ``snrmap`` computes an S/N: ``fwhm <= r < ny/2 - fwhm/2``, value != 0."""
    ny, nx = frame.shape
    cy, cx = star_centre(frame.shape)
    yy, xx = np.mgrid[:ny, :nx]
    rad = np.hypot(xx - cx, yy - cy)
    width = min(ny, nx) / 2 - 1.5 * fwhm
    return (rad >= fwhm) & (rad < fwhm + width) & (frame != 0) & np.isfinite(frame)


def _nan_rings(frame: np.ndarray, fwhm: float) -> np.ndarray | None:
    """Separations (integer px bins) whose aperture ring touches a NaN pixel."""
    nan = ~np.isfinite(frame)
    if not nan.any():
        return None
    cy, cx = star_centre(frame.shape)
    yy, xx = np.nonzero(nan)
    radii = np.hypot(yy - cy, xx - cx)
    reach = fwhm / 2.0 + 1.0
    top = int(np.ceil(np.hypot(*frame.shape))) + 2
    bad = np.zeros(top + 1, bool)
    for r in np.unique(np.floor(radii)):
        lo, hi = int(max(np.floor(r - reach), 0)), int(min(np.ceil(r + 1 + reach), top))
        bad[lo : hi + 1] = True
    return bad


@blas_single_thread
def snr_map(frame, fwhm: float, tolerance: float = 2e-4, oversampling: int = OVERSAMPLING) -> np.ndarray:
    """S/N map (Mawet 2014 at every pixel), equal to ``vip_hci.metrics.snrmap`` (exact mode).

    Parameters
    ----------
    frame : ndarray, (y, x)
        Post-processed image; NaN pixels (e.g. skipped annuli) make the S/N of
        every pixel whose apertures touch them NaN.
    fwhm : float
        FWHM in pixels.
    tolerance : float
        Pixels whose interpolated S/N may be off by more than this are
        recomputed with exact photometry (set 0 for all-exact).
    oversampling : int
        Sub-pixel sampling of the tabulated aperture flux.

    Returns
    -------
    ndarray, (y, x)
        0 outside ``fwhm <= r < ny/2 - fwhm/2`` (as vip), NaN near NaN pixels.
    """
    frame = check_frame(frame)
    fwhm = check_positive(fwhm, "fwhm")
    ny, nx = frame.shape
    cy, cx = star_centre(frame.shape)
    radius = fwhm / 2.0
    mask = snr_map_mask(frame, fwhm)
    out = np.zeros(frame.shape)
    if not mask.any():
        return out
    K = int(oversampling)
    clean = np.nan_to_num(frame, nan=0.0)
    grid = aperture_sum_grid(clean, radius, K)
    coeffs = ndimage.spline_filter(grid, order=3)
    py, px = np.nonzero(mask)
    dx, dy = (px - cx).astype(float), (py - cy).astype(float)
    sep = np.hypot(dx, dy)
    step = 2 * np.arcsin(fwhm / 2.0 / sep)
    number = np.floor(2 * np.pi / step).astype(int)
    signal = grid[py * K, px * K]
    redo_idx, redo_n = [], []
    for n in np.unique(number):
        sel = np.nonzero(number == n)[0]
        k = np.arange(1, n)
        a = -np.outer(step[sel], k)
        c, s = np.cos(a), np.sin(a)
        X = cx + c * dx[sel, None] - s * dy[sel, None]
        Y = cy + s * dx[sel, None] + c * dy[sel, None]
        coords = [Y.ravel() * K, X.ravel() * K]
        F = ndimage.map_coordinates(coeffs, coords, order=3, prefilter=False, mode="constant").reshape(X.shape)
        n2 = n - 1
        mu = F.mean(axis=1)
        sd = F.std(axis=1, ddof=1)
        corr = np.sqrt(1 + 1 / n2)
        with np.errstate(divide="ignore", invalid="ignore"):
            value = (signal[sel] - mu) / (sd * corr)
        out[py[sel], px[sel]] = value
        if tolerance > 0:
            F1 = ndimage.map_coordinates(grid, coords, order=1, prefilter=False, mode="constant").reshape(X.shape)
            err = np.abs(F - F1)
            with np.errstate(divide="ignore", invalid="ignore"):
                slope = (
                    1.0 / (n2 * sd * corr)[:, None]
                    + np.abs(value)[:, None] * np.abs(F - mu[:, None]) / ((n2 - 1) * sd**2)[:, None]
                )
                bound = _ERROR_SCALE * np.sqrt(((err * slope) ** 2).sum(axis=1))
            bad = ~(bound <= tolerance)
        else:
            bad = np.ones(sel.size, bool)
        if bad.any():
            redo_idx.append(sel[bad])
            redo_n.append(np.full(bad.sum(), n))
    if redo_idx:
        idx = np.concatenate(redo_idx)
        ns = np.concatenate(redo_n)
        # all noise apertures of all flagged pixels in one exact photometry call
        counts = ns - 1
        owner = np.repeat(np.arange(idx.size), counts)
        k = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + 1
        a = -k * step[idx][owner]
        c, s = np.cos(a), np.sin(a)
        X = cx + c * dx[idx][owner] - s * dy[idx][owner]
        Y = cy + s * dx[idx][owner] + c * dy[idx][owner]
        F = aperture_sums(clean, X, Y, radius)
        starts = np.cumsum(counts) - counts
        total = np.add.reduceat(F, starts)
        mean = total / counts
        var = np.add.reduceat((F - mean[owner]) ** 2, starts) / (counts - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            value = (signal[idx] - mean) / (np.sqrt(var) * np.sqrt(1 + 1 / counts))
        out[py[idx], px[idx]] = value
    bad_rings = _nan_rings(frame, fwhm)
    if bad_rings is not None:
        rho = np.hypot(*np.mgrid[-cy : ny - cy, -cx : nx - cx])
        touched = bad_rings[np.clip(np.floor(rho).astype(int), 0, bad_rings.size - 1)]
        out[touched & (out != 0)] = np.nan
        out[~np.isfinite(frame)] = np.nan
    return out
