"""Characterisation by negative fake companion (NEGFC) fitting.

A negative copy of the PSF, of flux ``f`` at ``(r, theta)``, is injected in
the cube; PCA is run in an annulus around the candidate (vip's
``pca_annulus``); and a figure of merit of the residuals in an aperture around
the candidate is minimised with the Nelder-Mead simplex (Marois et al. 2010;
Lagrange et al. 2010; Wertz et al. 2017; vip's ``firstguess``):

``sum``     ``Σ |I_j|`` (Wertz et al. 2017; the default),
``stddev``  standard deviation of the ``I_j``,
``chi2``    ``Σ (I_j - μ)² / σ²`` with ``μ``, ``σ`` of the annulus away from the
            candidate (vip's ``mu_sigma``).

The flux is searched between 0 and its 3-sigma upper limit from photometry of
the cube itself (no PSF subtraction, so nothing hides the companion). Far above
the true flux, the negative companion dominates the annulus, the principal
components absorb it, and the figure of merit has spurious minima that can be
deeper than the true one.

Fast path: the annulus matrix of the cube is extracted once, the companion
enters linearly, and the derotation of the residuals at the aperture pixels is
a precomputed cubic-convolution gather, so one evaluation costs a ``(t, t)``
eigen-decomposition and a few small products (milliseconds).

Uncertainties (1 sigma), reported per term:

* speckle noise: fake companions of the fitted flux are injected at the same
  separation and other angles in the cube cleaned of the companion, each is
  fitted the same way, and the standard deviation of the offsets is the error
  (Wertz et al. 2017; vip's ``speckle_noise_uncertainty``);
* fit: from the curvature of the Gaussian ``chi2`` at the optimum,
  ``Cov = 2 H⁻¹``.

The same injections measure the estimator's bias at the companion's separation and flux (NEGFC with PCA in
an annulus tends to place a companion outwards and fit it fainter): their mean offset is subtracted from
the fit (``bias_correction``), and the speckle term grows by ``sqrt(1 + 1/n)`` for the bias's own error.

The speckle term is the scale of the error to expect, not just the injections' sample standard
deviation ``s``: with ``n`` injections, the next fit's offset divided by ``s sqrt(1 + 1/n)`` follows
Student's t with ``n - 1`` degrees of freedom (Gaussian noise), whose standard deviation is
``sqrt((n - 1) / (n - 3))`` (1.11 for 12 injections). The term is multiplied by that factor
(:func:`predictive_factor`); without it, the few injections that happened to scatter little gave
pulls of 3-5 sigma (NACO separations: pull standard deviation 1.26, robust 0.91).

The fit and speckle terms are **not independent**: the injections are fitted in the same noise, so their
spread already holds what the chi² curvature measures (and more: the curvature ignores the residuals'
spatial correlation; alone it gave pulls 1.4-2.4 times too wide). Adding them in quadrature counted the
noise twice (pulls of 0.77). The measurement error is the larger of the two
(:func:`measurement_error`); the systematic terms of :mod:`reduction.postproc.budget` add to it in
quadrature. Both choices were checked by the pulls of injected fakes (``bench/bench_uncertainties.py``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from reduction.conventions import star_centre

from ._checks import check_angles, check_cube, check_ncomp, check_positive, check_psf
from ._threads import blas_single_thread
from .budget import measurement_error
from .geometry import StampShifter, _keys_weights, derotate, derotated_source_coordinates, polar_grid
from .inject import _stamps_at, companion_positions, inject_companions
from .pca import principal_components, project_out, project_out_columns, temporal_basis
from .results import NegfcResult, Uncertainty, theta_to_pa

log = logging.getLogger(__name__)

FMERITS = ("sum", "stddev", "chi2")
#: the simplex stops when its vertices agree within ``xatol`` and their figures of merit within this fraction
#: of the starting one. The absolute 1e-9 used before made it polish the merit far below any measurable change:
#: on NACO beta Pic b, 700 evaluations instead of ~250, for a change of 0.003 px, 0.002 deg and 0.1 % of the
#: flux (the 1-sigma errors are 0.07 px, 0.17 deg and 5 %)
FATOL_RELATIVE = 1e-5
#: restarts of the simplex (see :func:`negfc_fit`): at most this many; when its end point is more than
#: ``RECENTRE_PX`` from the aperture's centre (the aperture is moved there), or when the flux grid run at
#: the end point finds a figure of merit lower by the fraction ``REGRID_GAIN``
MAX_REFITS = 3
RECENTRE_PX = 0.5
REGRID_GAIN = 0.02
#: a companion whose flux in the raw cube (halo subtracted) exceeds this many times the scatter of that
#: photometry around its annulus is "bright": its fit starts from a position grid (:func:`_bright_start`) at
#: that flux, the grid spanning +-``BRIGHT_GRID_HALF`` FWHM (whole steps) in steps of ``BRIGHT_GRID_STEP`` FWHM
BRIGHT_RAW_SNR = 3.0
BRIGHT_GRID_HALF = 0.4
BRIGHT_GRID_STEP = 1.0 / 16.0
METHODS = ("pca", "cadi")


def _polar(x: float, y: float, shape) -> tuple[float, float]:
    cy, cx = star_centre(shape)
    return float(np.hypot(x - cx, y - cy)), float(np.mod(np.rad2deg(np.arctan2(y - cy, x - cx)), 360.0))


def _cartesian(r: float, theta: float, shape) -> tuple[float, float]:
    cy, cx = star_centre(shape)
    return cx + r * np.cos(np.deg2rad(theta)), cy + r * np.sin(np.deg2rad(theta))


@dataclass
class _Model:
    """PSF subtraction in an annulus, evaluated only at the aperture pixels."""

    cube: np.ndarray
    angles: np.ndarray
    psf: np.ndarray
    fwhm: float
    ncomp: int
    r0: float
    theta0: float
    annulus_width: float
    aperture_radius: float
    method: str = "pca"
    collapse: str = "median"

    def __post_init__(self) -> None:
        nt, ny, nx = self.cube.shape
        rho, _ = polar_grid((ny, nx))
        half = self.annulus_width * self.fwhm / 2.0
        inner, outer = int(self.r0 - half), int(self.r0 + half)
        self.inner, self.outer = max(inner, 0), outer
        self.annulus = (rho >= self.inner) & (rho < self.outer)
        if not self.annulus.any():
            raise ValueError("empty annulus for NEGFC")
        self.index_map = -np.ones((ny, nx), dtype=np.intp)
        self.ann_y, self.ann_x = np.nonzero(self.annulus)
        self.index_map[self.ann_y, self.ann_x] = np.arange(self.ann_y.size)
        self.matrix0 = self.cube[:, self.ann_y, self.ann_x]
        x0, y0 = _cartesian(self.r0, self.theta0, (ny, nx))
        yy, xx = np.mgrid[:ny, :nx]
        aperture = ((yy - y0) ** 2 + (xx - x0) ** 2 < (self.aperture_radius * self.fwhm) ** 2) & self.annulus
        if aperture.sum() < 4:
            raise ValueError("the NEGFC aperture holds fewer than 4 pixels; increase aperture_radius")
        self.ap_y, self.ap_x = np.nonzero(aperture)
        # derotation of the residuals at the aperture pixels: 4x4 cubic-convolution gathers
        sy, sx = derotated_source_coordinates(self.ap_y, self.ap_x, self.angles, (ny, nx))
        iy, ix = np.floor(sy).astype(np.intp), np.floor(sx).astype(np.intp)
        wy, wx = _keys_weights(sy - iy), _keys_weights(sx - ix)
        taps_idx = np.empty((nt, self.ap_y.size, 16), dtype=np.intp)
        taps_w = np.empty((nt, self.ap_y.size, 16))
        k = 0
        for a in range(4):
            for b in range(4):
                py, px = iy - 1 + a, ix - 1 + b
                inside = (py >= 0) & (py < ny) & (px >= 0) & (px < nx)
                idx = np.where(inside, self.index_map[np.clip(py, 0, ny - 1), np.clip(px, 0, nx - 1)], -1)
                taps_idx[:, :, k] = idx
                taps_w[:, :, k] = np.where(idx >= 0, wy[a] * wx[b], 0.0)
                k += 1
        taps_idx = np.where(taps_idx >= 0, taps_idx, 0)
        self.taps_w = taps_w
        # only the annulus pixels the gather reads are needed: the residuals are computed there alone,
        # and the gather is one np.take of flat indices into that (t, |needed|) matrix
        self.needed, local = np.unique(taps_idx, return_inverse=True)
        local = local.reshape(taps_idx.shape)
        self.flat_taps = (np.arange(nt)[:, None, None] * self.needed.size + local).reshape(nt, -1)
        self.shifter = StampShifter(self.psf)
        self.evaluations = 0

    def companion_entries(self, r: float, theta: float) -> tuple[np.ndarray, np.ndarray]:
        """Unit-flux companion on the annulus pixels: flat indices into the ``(t, P)`` matrix and values."""
        nt, ny, nx = self.cube.shape
        ys, xs = companion_positions(r, theta, self.angles, (ny, nx))
        stamps, y0, x0 = _stamps_at(self.psf, ys, xs, 1.0, (ny, nx), shifter=self.shifter)
        idx = self._annulus_index(y0, x0, stamps.shape[-2:])
        keep = idx >= 0
        flat = (np.arange(nt)[:, None, None] * self.ann_y.size + idx)[keep]
        return flat, stamps[keep]

    def _annulus_index(self, y0: np.ndarray, x0: np.ndarray, stamp_shape: tuple[int, int]) -> np.ndarray:
        """Column in the annulus matrix of every pixel of stamps with corners ``(y0, x0)``; -1 outside."""
        ny, nx = self.cube.shape[-2:]
        sy, sx = stamp_shape
        py = y0[:, None, None] + np.arange(sy)[None, :, None]
        px = x0[:, None, None] + np.arange(sx)[None, None, :]
        inside = (py >= 0) & (py < ny) & (px >= 0) & (px < nx)
        return np.where(inside, self.index_map[np.clip(py, 0, ny - 1), np.clip(px, 0, nx - 1)], -1)

    def companion_matrix(self, r: float, theta: float) -> np.ndarray:
        """Unit-flux companion restricted to the annulus pixels, ``(t, P)``."""
        flat, values = self.companion_entries(r, theta)
        out = np.zeros(self.matrix0.shape)
        out.ravel()[flat] = values
        return out

    def with_companion(self, r: float, theta: float, flux: float, base: np.ndarray | None = None) -> np.ndarray:
        """``base - flux x companion`` (``base``: the cube's annulus matrix), touching only the stamps' pixels."""
        matrix = (self.matrix0 if base is None else base).copy()
        if flux != 0:
            flat, values = self.companion_entries(r, theta)
            matrix.ravel()[flat] -= flux * values  # one stamp per frame: no index repeats
        return matrix

    def raw_flux(self, r: float, theta: float) -> float:
        """Flux of a companion at ``(r, theta)`` fitted to the cube itself, with no PSF subtraction.

        Least squares of the unit companion against each frame (no
        background: the star halo and speckles there count as companion), the
        median over the frames.
        """
        comp = self.companion_matrix(r, theta)
        norm = (comp**2).sum(axis=1)
        ok = norm > 0
        if not ok.any():
            return float("nan")
        return float(np.median((comp * self.matrix0).sum(axis=1)[ok] / norm[ok]))

    def raw_fluxes(self, r: float, thetas) -> np.ndarray:
        """:meth:`raw_flux` at several polar angles of one separation, in one batch of PSF shifts.

        The same numbers (to rounding) as calling :meth:`raw_flux` at each angle: the stamps of every
        (position, frame) are shifted in one :class:`StampShifter` call, which is what a ceiling's
        photometry around the annulus costs (it was a fifth of a campaign's post-processing, one call
        per position).
        """
        nt, ny, nx = self.cube.shape
        thetas = np.atleast_1d(np.asarray(thetas, dtype=float))
        ys, xs = companion_positions(r, thetas[:, None], self.angles, (ny, nx))  # (n, t)
        stamps, y0, x0 = _stamps_at(self.psf, ys.ravel(), xs.ravel(), 1.0, (ny, nx), shifter=self.shifter)
        idx = self._annulus_index(y0, x0, stamps.shape[-2:])
        keep = idx >= 0
        frames = np.tile(np.arange(nt), thetas.size)
        values = np.where(keep, stamps, 0.0)
        data = np.where(keep, self.matrix0[frames[:, None, None], np.clip(idx, 0, None)], 0.0)
        norm = (values**2).sum(axis=(1, 2))
        amplitude = np.full(norm.shape, np.nan)
        ok = norm > 0
        amplitude[ok] = (values * data).sum(axis=(1, 2))[ok] / norm[ok]
        amplitude = amplitude.reshape(thetas.size, nt)
        out = np.full(thetas.size, np.nan)
        for k in range(thetas.size):
            row = amplitude[k][np.isfinite(amplitude[k])]
            if row.size:
                out[k] = np.median(row)
        return out

    def raw_photometry(self, r: float, theta: float) -> tuple[float, float]:
        """Flux of a companion at ``(r, theta)`` from the cube alone, and that photometry's scatter.

        Photometry of the raw cube with a background annulus: the :meth:`raw_flux` at the companion minus
        its mean at the other positions of the same separation at least 2 FWHM away (the star halo), and
        its standard deviation there (the speckles). Without PSF subtraction, nothing hides part of the
        companion. ``(nan, nan)`` with fewer than three background positions.
        """
        n = int(2 * np.pi * r / self.fwhm)
        others = theta + 360.0 * np.arange(1, n) / n
        # positions at least 2 FWHM (chord) away from the companion
        chord = 2 * r * np.abs(np.sin(np.deg2rad(others - theta) / 2))
        fluxes = self.raw_fluxes(r, np.concatenate([[theta], others[chord >= 2 * self.fwhm]]))
        here, background = fluxes[0], fluxes[1:]
        background = background[np.isfinite(background)]
        if background.size < 3 or not np.isfinite(here):
            return float("nan"), float("nan")
        return float(here - background.mean()), float(background.std(ddof=1))

    def residual_values(self, r: float, theta: float, flux: float, matrix0: np.ndarray | None = None) -> np.ndarray:
        """Collapsed derotated residuals at the aperture pixels with a companion of ``-flux`` removed."""
        self.evaluations += 1
        matrix = self.with_companion(r, theta, flux, matrix0)
        if self.method == "pca":
            vecs, _ = temporal_basis(matrix, self.ncomp)
            residuals = project_out_columns(matrix, vecs, self.needed)
        else:
            picked = matrix[:, self.needed]
            residuals = picked - np.median(picked, axis=0, keepdims=True)
        nt, n_ap = self.taps_w.shape[:2]
        gathered = np.take(residuals, self.flat_taps).reshape(nt, n_ap, 16)
        values = np.einsum("tak,tak->ta", gathered, self.taps_w)  # derotated residuals (t, n_ap)
        if self.collapse == "median":
            return np.median(values, axis=0)
        return values.mean(axis=0)

    def background(self, r: float, theta: float, flux: float) -> tuple[float, float]:
        """Mean and std of the collapsed residuals in the annulus away from the aperture."""
        nt, ny, nx = self.cube.shape
        matrix = self.matrix0 - flux * self.companion_matrix(r, theta)
        if self.method == "pca":
            residuals = project_out(matrix, principal_components(matrix, self.ncomp))
        else:
            residuals = matrix - np.median(matrix, axis=0, keepdims=True)
        frames = np.zeros((nt, ny, nx))
        frames[:, self.ann_y, self.ann_x] = residuals
        # spline: no Fourier ringing from the annulus edges into the annulus
        final = np.median(derotate(frames, self.angles, method="spline"), axis=0)
        x0, y0 = _cartesian(self.r0, self.theta0, (ny, nx))
        yy, xx = np.mgrid[:ny, :nx]
        away = self.annulus & ((yy - y0) ** 2 + (xx - x0) ** 2 >= (2 * self.aperture_radius * self.fwhm) ** 2)
        vals = final[away]
        return float(vals.mean()), float(vals.std())


def _merit(values: np.ndarray, fmerit: str, mu_sigma: tuple[float, float] | None, npar: int = 3) -> float:
    ddf = max(values.size - npar, 1)
    if fmerit == "sum":
        return float(np.abs(values).sum() / ddf)
    if fmerit == "stddev":
        return float(values.std() * values.size / ddf)
    mu, sigma = mu_sigma
    return float(((values - mu) ** 2).sum() / sigma**2 / ddf)


def _fit(
    model: _Model,
    r0: float,
    theta0: float,
    f0: float,
    fmerit: str,
    mu_sigma,
    xatol: float,
    maxfev: int,
    f_max: float = np.inf,
) -> tuple[tuple[float, float, float], float, int, bool]:
    """Nelder-Mead on (dr [px], r·dθ [px], df / (0.1 f0)), with the flux kept within ``[0, f_max]``."""
    fscale = max(abs(f0) * 0.1, 1e-12)
    deg_per_px = np.rad2deg(1.0 / max(r0, 1e-6))

    def params(u):
        return r0 + u[0], theta0 + u[1] * deg_per_px, f0 + u[2] * fscale

    def objective(u):
        r, th, f = params(u)
        if r <= 0.5 * model.fwhm or f < 0 or f > f_max:
            return 1e30
        return _merit(model.residual_values(r, th, f), fmerit, mu_sigma)

    simplex = np.array([[0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 1.0]], dtype=float)
    start = model.evaluations
    res = minimize(
        objective,
        np.zeros(3),
        method="Nelder-Mead",
        options={
            "initial_simplex": simplex,
            "xatol": xatol,
            "fatol": FATOL_RELATIVE * abs(objective(np.zeros(3))) + 1e-12,
            "maxfev": maxfev,
        },
    )
    return params(res.x), float(res.fun), model.evaluations - start, bool(res.success)


def _flux_ceiling(raw: tuple[float, float]) -> float:
    """3-sigma upper limit of a companion's flux from the cube alone: the flux of
    :meth:`_Model.raw_photometry` plus three times its scatter (infinite when unknown)."""
    flux, scatter = raw
    if not np.isfinite(flux):
        return float("inf")
    return float(flux + 3.0 * scatter)


def _first_flux(
    model: _Model, r: float, theta: float, fmerit: str, mu_sigma, f_guess: float, f_max: float = np.inf
) -> tuple[float, float]:
    """Grid search of the flux at fixed position (vip's ``firstguess_from_coord``, whole grid).

    vip stops at the fourth increase of the figure of merit; the whole grid is
    cheap here and avoids stopping in a shallow local minimum. The grid runs
    from 0.3 ``f_guess`` to ``f_max`` (:func:`_flux_ceiling`; 100
    ``f_guess`` when unknown), not further: there the negative companion
    dominates the annulus, the principal components absorb it, and the figure
    of merit falls again, below its true minimum for the simulated β Pic b in
    IRDIS K2 (~30 000 instead of ~1 700, a contrast 20 times too high). Steps
    of 5 %: the minimum of a bright companion, which the PCA otherwise
    absorbs, is only ~10 % wide.

    Returns ``(flux, figure of merit)`` at the grid's minimum.
    """
    scale = max(f_guess, 1e-12)
    low = 0.3 * scale
    high = max(f_max if np.isfinite(f_max) else 100 * scale, low)
    n = int(np.clip(np.ceil(np.log(high / low) / np.log(1.05)), 1, 250)) + 1
    fluxes = np.geomspace(low, high, n)
    values = [_merit(model.residual_values(r, theta, f), fmerit, mu_sigma) for f in fluxes]
    best = int(np.argmin(values))
    return float(fluxes[best]), float(values[best])


def _bright_start(
    model: _Model, r0: float, theta0: float, fmerit: str, mu_sigma, raw: tuple[float, float]
) -> tuple[float, float, float, float]:
    """Start of a bright companion's fit: the best point of a position grid at its raw-cube flux.

    A flux grid at a fixed position (:func:`_first_flux`) needs that position to be right to a small
    fraction of a pixel when the companion is bright: the principal components of the annulus then hold
    the companion itself unless nearly all of it is removed, so the figure of merit has a well only
    ~0.3 px and ~10 % wide around the truth and is flat or higher everywhere else. A simulated IRDIS fake
    of flux 22 650 at 8.4 px (2.6 FWHM, S/N 27) gave its lowest figure of merit at flux ~0 as soon as the
    position was 0.25 px off, and the fit lost the companion (3-6 px away with 2 % of its flux: the
    catastrophic fits of the injection study, ``bench/bench_uncertainties.py``). A bright companion's flux
    is known to ~10 % from the raw cube (:meth:`_Model.raw_photometry`), so the figure of merit is
    evaluated at that flux on a grid of positions fine enough to fall in the well, in the same aperture
    as the flux grid, so that the two starts compare.

    ``raw`` is :meth:`_Model.raw_photometry` at ``(r0, theta0)`` (the flux ceiling's photometry, made once).

    Returns ``(r, theta, flux, figure of merit)``; the merit is infinite for a companion not bright
    in the raw cube (below ``BRIGHT_RAW_SNR`` times its photometry's scatter), where no grid is run.
    """
    flux, scatter = raw
    if not (np.isfinite(flux) and scatter > 0 and flux > BRIGHT_RAW_SNR * scatter):
        return r0, theta0, float("nan"), float("inf")
    x0, y0 = _cartesian(r0, theta0, model.cube.shape[-2:])
    half_steps = int(round(BRIGHT_GRID_HALF / BRIGHT_GRID_STEP))
    offsets = np.arange(-half_steps, half_steps + 1) * BRIGHT_GRID_STEP * model.fwhm  # symmetric, the start included
    best = (r0, theta0, float(flux), float("inf"))
    for dy in offsets:
        for dx in offsets:
            r, theta = _polar(x0 + dx, y0 + dy, model.cube.shape[-2:])
            if r <= 0.5 * model.fwhm:
                continue
            value = _merit(model.residual_values(r, theta, flux), fmerit, mu_sigma)
            if value < best[3]:
                best = (r, theta, float(flux), value)
    return best


@blas_single_thread
def negfc_fit(
    cube,
    angles,
    psf,
    fwhm: float,
    xy: tuple[float, float],
    *,
    ncomp: int = 1,
    annulus_width: float = 3.0,
    aperture_radius: float = 1.5,
    fmerit: str = "sum",
    method: str = "pca",
    collapse_mode: str = "median",
    flux_guess: float | None = None,
    xatol: float = 1e-3,
    maxfev: int = 600,
) -> NegfcResult:
    """Fit the position and flux of a companion by NEGFC (simplex).

    Parameters
    ----------
    cube : ndarray, (t, y, x)
        Centred ADI cube.
    angles : ndarray, (t,)
        Derotation angles (vip-hci convention).
    psf : ndarray
        Normalised PSF (flux 1 in a 1xFWHM aperture).
    fwhm : float
        FWHM in pixels.
    xy : tuple of float
        First guess ``(x, y)`` in the final image (e.g. a detection).
    ncomp : int
        Principal components of the annulus PCA.
    annulus_width : float
        Width of the PCA annulus, in FWHM.
    aperture_radius : float
        Radius of the aperture of the figure of merit, in FWHM.
    fmerit : {'sum', 'stddev', 'chi2'}
    method : {'pca', 'cadi'}
        PSF model in the annulus.
    collapse_mode : {'median', 'mean'}
    flux_guess : float, optional
        Starting flux; a grid search from the aperture flux when None. The
        fitted flux stays below a ceiling from photometry of the cube (or
        ``flux_guess``, if larger).
    xatol : float
        Simplex tolerance (pixels; flux in units of 10 % of the start).
    maxfev : int

    Returns
    -------
    NegfcResult
        Without uncertainties (see :func:`negfc_uncertainty` and :func:`characterise`).
    """
    cube = check_cube(cube)
    angles = check_angles(angles, cube.shape[0])
    psf = check_psf(psf, cube.shape[-2:])
    fwhm = check_positive(fwhm, "fwhm")
    if fmerit not in FMERITS:
        raise ValueError(f"fmerit must be one of {FMERITS}, got {fmerit!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "pca":
        ncomp = check_ncomp(ncomp, cube.shape[0])
    r0, theta0 = _polar(float(xy[0]), float(xy[1]), cube.shape[-2:])
    if r0 <= fwhm:
        raise ValueError(f"the candidate is {r0:.1f} px from the star, within 1 FWHM: NEGFC is not reliable there")

    def model_at(r: float, theta: float):
        model = _Model(cube, angles, psf, fwhm, ncomp, r, theta, annulus_width, aperture_radius, method, collapse_mode)
        mu_sigma = model.background(r, theta, 0.0) if fmerit == "chi2" else None
        return model, mu_sigma, model.raw_photometry(r, theta)

    model, mu_sigma, raw = model_at(r0, theta0)
    f_max = _flux_ceiling(raw)
    evaluations = 0
    if flux_guess is None:
        values = model.residual_values(r0, theta0, 0.0)
        f_guess = max(float(np.abs(values).max()) * np.pi * (fwhm / 2) ** 2 / 2, 1e-6)
        start_flux, start_value = _first_flux(model, r0, theta0, fmerit, mu_sigma, f_guess, f_max)
        f_max = max(f_max, start_flux)  # the grid starts at 0.3 f_guess, which a low ceiling may not reach
        r1, theta1, bright_flux, bright_value = _bright_start(model, r0, theta0, fmerit, mu_sigma, raw)
        if bright_value < start_value:
            r0, theta0, start_flux = r1, theta1, bright_flux
            f_max = max(f_max, start_flux)
        regrid = True
    else:
        f_guess = start_flux = float(flux_guess)
        f_max = max(f_max, start_flux)  # a given start above the ceiling is kept reachable
        regrid = False
    (r, theta, flux), value, _, ok = _fit(model, r0, theta0, start_flux, fmerit, mu_sigma, xatol, maxfev, f_max)
    # The figure of merit is read in an aperture around the start, and the flux grid ran there: a start
    # up to a pixel from the companion (a detection's peak) can leave the simplex in a basin of partial
    # subtraction (a bright fake in the real NACO cube: 304 for 484, merit 0.69 against 0.32 at the
    # truth; a simulated IRDIS one: 166 for 1505, 2.4 px off). So the aperture is re-centred where the
    # simplex ended, the flux grid run again there (when no flux was given), and the simplex restarted,
    # until the aperture no longer moves and the grid finds no deeper minimum.
    for _ in range(MAX_REFITS):
        moved = math.hypot(
            *np.subtract(_cartesian(r, theta, cube.shape[-2:]), _cartesian(model.r0, model.theta0, cube.shape[-2:]))
        )
        if moved > RECENTRE_PX:
            evaluations += model.evaluations
            model, mu_sigma, raw = model_at(r, theta)
            f_max = max(_flux_ceiling(raw), f_max if not regrid else 0.0, flux)
            value = _merit(model.residual_values(r, theta, flux), fmerit, mu_sigma)
        start_flux = flux
        if regrid:
            grid_flux, grid_value = _first_flux(model, r, theta, fmerit, mu_sigma, f_guess, f_max)
            if grid_value < value * (1.0 - REGRID_GAIN):
                start_flux = grid_flux
                f_max = max(f_max, grid_flux)
        if moved <= RECENTRE_PX and start_flux == flux:
            break
        (r, theta, flux), value, _, ok = _fit(model, r, theta, start_flux, fmerit, mu_sigma, xatol, maxfev, f_max)
    evaluations += model.evaluations
    theta = float(np.mod(theta, 360.0))
    x, y = _cartesian(r, theta, cube.shape[-2:])
    return NegfcResult(
        x=float(x),
        y=float(y),
        separation_px=float(r),
        theta_deg=theta,
        pa_deg=theta_to_pa(theta),
        flux=float(flux),
        figure_of_merit=value,
        n_evaluations=evaluations,
        success=ok,
    )


def remove_companion(cube, angles, psf, result: NegfcResult) -> np.ndarray:
    """The cube with the fitted companion subtracted (vip's ``cube_planet_free``)."""
    return inject_companions(cube, psf, angles, -result.flux, result.separation_px, result.theta_deg)


@blas_single_thread
def fit_uncertainty(
    cube,
    angles,
    psf,
    fwhm: float,
    result: NegfcResult,
    *,
    ncomp: int = 1,
    annulus_width: float = 3.0,
    aperture_radius: float = 1.5,
    method: str = "pca",
    collapse_mode: str = "median",
) -> tuple[float, float, float]:
    """Fit term: curvature of the Gaussian chi² at the optimum (``Cov = 2 H⁻¹``)."""
    cube = check_cube(cube)
    model = _Model(
        cube,
        angles,
        psf,
        fwhm,
        ncomp,
        result.separation_px,
        result.theta_deg,
        annulus_width,
        aperture_radius,
        method,
        collapse_mode,
    )
    mu, sigma = model.background(result.separation_px, result.theta_deg, result.flux)
    if not sigma > 0:
        return (float("nan"),) * 3
    p0 = np.array([result.separation_px, result.theta_deg, result.flux])
    steps = np.array([0.1, np.rad2deg(0.1 / result.separation_px), max(abs(result.flux) * 0.02, 1e-9)])

    def chi2(p):
        values = model.residual_values(p[0], p[1], p[2])
        return float(((values - mu) ** 2).sum() / sigma**2)

    f0 = chi2(p0)
    hess = np.zeros((3, 3))
    for a in range(3):
        ea = np.eye(3)[a] * steps[a]
        hess[a, a] = (chi2(p0 + ea) - 2 * f0 + chi2(p0 - ea)) / steps[a] ** 2
        for b in range(a + 1, 3):
            eb = np.eye(3)[b] * steps[b]
            value = (chi2(p0 + ea + eb) - chi2(p0 + ea - eb) - chi2(p0 - ea + eb) + chi2(p0 - ea - eb)) / (
                4 * steps[a] * steps[b]
            )
            hess[a, b] = hess[b, a] = value
    try:
        cov = 2.0 * np.linalg.inv(hess)
    except np.linalg.LinAlgError:
        return (float("nan"),) * 3
    # no inflation by the pixels per resolution element: with it this term came out 2.8 times too large in the
    # injection-recovery study (bench/bench_uncertainties.py, simulated IRDIS: robust pull width 0.42)
    var = np.diag(cov)
    return tuple(float(np.sqrt(v)) if v > 0 else float("nan") for v in var)


@blas_single_thread
def speckle_uncertainty(
    cube_free,
    angles,
    psf,
    fwhm: float,
    result: NegfcResult,
    *,
    n_injections: int = 12,
    ncomp: int = 1,
    annulus_width: float = 3.0,
    aperture_radius: float = 1.5,
    fmerit: str = "sum",
    method: str = "pca",
    collapse_mode: str = "median",
    xatol: float = 1e-3,
) -> tuple[tuple[float, float, float], tuple[float, float, float], int]:
    """Speckle-noise term by injection and recovery at the same separation (Wertz et al. 2017).

    Returns ``(std, mean offset, number of injections used)``, each over
    ``(separation px, theta deg, flux)``.
    """
    r, theta, flux = result.separation_px, result.theta_deg, result.flux
    offsets = []
    for k in range(1, n_injections + 1):
        th = float(np.mod(theta + 360.0 * k / (n_injections + 1), 360.0))
        injected = inject_companions(cube_free, psf, angles, flux, r, th)
        x, y = _cartesian(r, th, injected.shape[-2:])
        fit = negfc_fit(
            injected,
            angles,
            psf,
            fwhm,
            (x, y),
            ncomp=ncomp,
            annulus_width=annulus_width,
            aperture_radius=aperture_radius,
            fmerit=fmerit,
            method=method,
            collapse_mode=collapse_mode,
            flux_guess=flux,
            xatol=xatol,
        )
        dth = (fit.theta_deg - th + 180.0) % 360.0 - 180.0
        offsets.append((fit.separation_px - r, dth, fit.flux - flux))
    offsets = np.array(offsets)
    std = tuple(float(v) for v in offsets.std(axis=0, ddof=1))
    mean = tuple(float(v) for v in offsets.mean(axis=0))
    return std, mean, len(offsets)


def predictive_factor(n: int) -> float:
    """Scale from the sample standard deviation of ``n`` injections to the error to expect.

    The standard deviation of Student's t with ``n - 1`` degrees of freedom, ``sqrt((n - 1) / (n - 3))``;
    it has none below ``n = 4``, where the factor makes ``±σ`` hold 68.3 % of that t distribution instead.
    """
    from scipy import stats

    if n < 2:
        return float("nan")
    if n >= 4:
        return float(math.sqrt((n - 1) / (n - 3)))
    return float(stats.t.ppf(stats.norm.cdf(1.0), n - 1))


def _unbiased(result: NegfcResult, bias: tuple[float, float, float], shape) -> NegfcResult:
    """``result`` minus the mean offset the injections found (separation px, theta deg, flux)."""
    r = result.separation_px - bias[0]
    theta = float(np.mod(result.theta_deg - bias[1], 360.0))
    x, y = _cartesian(r, theta, shape)
    return dataclasses.replace(
        result,
        x=float(x),
        y=float(y),
        separation_px=float(r),
        theta_deg=theta,
        pa_deg=theta_to_pa(theta),
        flux=float(result.flux - bias[2]),
    )


@blas_single_thread
def characterise(
    cube,
    angles,
    psf,
    fwhm: float,
    xy: tuple[float, float],
    *,
    ncomp: int = 1,
    annulus_width: float = 3.0,
    aperture_radius: float = 1.5,
    fmerit: str = "sum",
    method: str = "pca",
    collapse_mode: str = "median",
    n_injections: int = 12,
    xatol: float = 1e-3,
    bias_correction: bool = True,
) -> NegfcResult:
    """NEGFC fit with its speckle-noise and fit uncertainties.

    See :func:`negfc_fit` for the parameters; ``n_injections`` fake companions
    give the speckle term (0 skips it) and, with ``bias_correction`` and at least
    three of them, the bias subtracted from the fit (see the module docstring).

    Returns
    -------
    NegfcResult
        With ``uncertainty`` set.
    """
    kwargs = dict(
        ncomp=ncomp,
        annulus_width=annulus_width,
        aperture_radius=aperture_radius,
        method=method,
        collapse_mode=collapse_mode,
    )
    result = negfc_fit(cube, angles, psf, fwhm, xy, fmerit=fmerit, xatol=xatol, **kwargs)
    fit_term = fit_uncertainty(cube, angles, psf, fwhm, result, **kwargs)
    if n_injections > 1:
        free = remove_companion(cube, angles, psf, result)
        speckle, bias, n = speckle_uncertainty(
            free,
            angles,
            psf,
            fwhm,
            result,
            n_injections=n_injections,
            fmerit=fmerit,
            xatol=xatol,
            **kwargs,
        )
        if bias_correction and n >= 3:
            result = _unbiased(result, bias, cube.shape[-2:])
            speckle = tuple(float(v * np.sqrt(1 + 1 / n)) for v in speckle)
        speckle = tuple(float(v * predictive_factor(n)) for v in speckle)
    else:
        speckle, bias, n = (np.nan, np.nan, np.nan), (0.0, 0.0, 0.0), 0
    total = tuple(measurement_error(f, s) for f, s in zip(fit_term, speckle))
    return result.with_uncertainty(
        Uncertainty(speckle=speckle, fit=fit_term, total=total, speckle_bias=bias, n_injections=n)
    )
