"""Post-processing of spectral cubes ``(λ, t, y, x)`` (SPHERE IFS): ASDI, spectral vetting, spectra, limits.

1. **ASDI** (:func:`reduction.postproc.sdi.channel_residuals`): every frame's channels are magnified by
   ``λ_max / λ`` about the star (:func:`reduction.conventions.star_centre`) so the speckles line up, a
   PCA over all scaled channels and frames (``"single"``) or a spectral PCA per frame followed by a
   PCA-ADI per channel (``"double"``, SDI+ADI in two steps) removes them, and the residuals are scaled
   back, derotated and combined per channel. The mean of the channel images is the *collapsed*
   residual in which candidates are detected (S/N map, Mawet et al. 2014 small-sample statistics).
2. **Spectral vetting**: in the scaled-back channel images a companion stays at one place, whereas a
   leftover speckle moves outward in proportion to λ. The slope ``d ln r / d ln λ`` of the candidate's
   per-channel centroids is ~0 for a companion and ~1 for a speckle. Self-subtraction moves a
   companion's centroids too (at low field rotation, ASDI eats its inner side in some channels and its
   outer side in others), so a candidate whose slope exceeds ``speckle_slope`` has the same slope
   measured on its own forward model (its fitted spectrum at its place, through the same ASDI); it is
   ``speckle-like`` when its slope exceeds the model's by more than ``speckle_slope`` too.
3. **Throughput and limits**: fake companions with the star's spectrum (a flat contrast) are injected
   along ``nbranch`` branches at every FWHM of separation (three interleaved patterns, so fakes are
   3 FWHM apart) into every channel, with each channel's own PSF, and processed with the same ASDI; the
   recovered 1xFWHM-aperture flux over the injected gives the throughput per channel and for the
   collapsed image, which includes the self-subtraction of the algorithm. The detection limit per
   channel is ``σ_corr × noise_λ(r) / throughput_λ(r) / F★_λ`` (``σ_corr``: Student-t with the
   resolution elements at ``r``, as :mod:`reduction.postproc.contrast`); the collapsed limit is that of
   a companion with a flat contrast spectrum.
4. **Spectra**: every candidate's contrast per channel is fitted with a negative model (each channel's own
   PSF) on the principal components of the cube *minus* the models, where the ASDI is linear and acts on
   each channel alone; the passes (over-relaxed) run until no channel moves by more than a quarter of
   its error, so the self-subtraction of the candidate's own spectrum is accounted for. The error is the
   scatter of the noise apertures at the same separation in that channel (``std × sqrt(1 + 1/n)``).
5. **Position** (``position_fit``): forward-model astrometry once the spectra are fitted: the candidate's
   model through the same projection, shifted to best match the collapsed image (its error per axis
   ``FWHM / (2 S/N)``), or the Gaussian centroid of the image.

The injections share one set for the limits and every candidate (no per-candidate run), so the cost is
``1 + 3 × nbranch`` ASDI runs per cube, two more per pass of the spectra's fit and per move of the
forward-model positions (at most three), and one for the limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy import stats

from reduction.conventions import star_centre
from reduction.steps import Step, StepParameters

from ._checks import as_float_array, check_angles, check_cube, check_positive
from ._threads import blas_single_thread
from .budget import ErrorBudget, Systematics, detection_budget
from .contrast import noise_per_annulus, student_sigma
from .detection import candidate_at, detect_candidates
from .inject import inject_companions, inject_in_frame
from .pca import combine
from .photometry import aperture_sums
from .psf import fit_gaussian, normalize_psf
from .results import Candidate, DetectionResult
from .sdi import MODES, channel_residuals, scale_factors
from .snr import snr, snr_map

SPECKLE_LIKE = "speckle-like"
POSITION_FITS = ("forward-model", "centroid")


@dataclass(frozen=True)
class SpectralParameters(StepParameters):
    """Parameters of the spectral (IFS) post-processing.

    Attributes
    ----------
    mode : {'single', 'double'}
        ASDI with one PCA over every scaled channel and frame, or SDI then ADI (a spectral PCA per frame,
        then a PCA-ADI per channel with ``ncomp_adi`` components).
    ncomp : int
        Principal components of the (first) PCA.
    ncomp_adi : int or None
        ``double`` only: components of the PCA-ADI per channel (None: derotate and combine only).
    collapse : {'median', 'mean'}
        How each channel's derotated residual frames are combined.
    threshold : float
        Detection threshold on the S/N of the collapsed residual.
    max_candidates : int
        At most this many candidates (brightest first).
    nbranch : int
        Branches of fake companions for the throughput (their scatter is the throughput's error).
    fc_snr : float
        S/N of the fake companions in the collapsed image.
    speckle_slope : float
        A candidate whose per-channel radius grows faster than ``λ ** speckle_slope`` times what a
        companion's would (forward-modelled through the same ASDI) is speckle-like (0 for a companion,
        1 for a speckle).
    vetting_snr : float
        Channels where the candidate's S/N reaches this enter its centroid fit (the vetting).
    sigma : float
        Detection limits at this many Gaussian sigma (Student-t corrected).
    spectrum_iterations : int
        At most this many passes of the negative-model fit of the spectra (each two ASDI runs for all
        candidates); the fit stops earlier once no channel moves by more than a quarter of its error.
    position_fit : {'forward-model', 'centroid'}
        The reported position: the shift of the candidate's fitted model through the same ASDI that best
        matches the image (forward-model astrometry), or the Gaussian centroid of the image (also the
        fallback where the model fit fails or no spectrum is fitted).
    """

    mode: str = "single"
    ncomp: int = 10
    ncomp_adi: int | None = None
    collapse: str = "median"
    threshold: float = 5.0
    max_candidates: int = 10
    nbranch: int = 2
    fc_snr: float = 50.0
    speckle_slope: float = 0.5
    vetting_snr: float = 3.0
    sigma: float = 5.0
    spectrum_iterations: int = 12
    position_fit: str = "forward-model"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        if self.position_fit not in POSITION_FITS:
            raise ValueError(f"position_fit must be one of {', '.join(POSITION_FITS)}; got {self.position_fit!r}")
        self._at_least(
            ncomp=1, ncomp_adi=1, threshold=0, max_candidates=1, nbranch=1, fc_snr=1, sigma=1, spectrum_iterations=0
        )


@dataclass(frozen=True)
class CompanionSpectrum:
    """Contrast of one candidate in every channel.

    Attributes
    ----------
    wavelengths_um, contrast, contrast_err, snr : ndarray, (λ,)
        ``contrast`` is the flux ratio to the star (cube units over star flux when no star flux is known).
    """

    wavelengths_um: np.ndarray
    contrast: np.ndarray
    contrast_err: np.ndarray
    snr: np.ndarray


@dataclass(frozen=True)
class SpectralCandidate:
    """A candidate of the collapsed image with its spectrum and spectral vetting.

    Attributes
    ----------
    candidate : Candidate
        Position and S/N in the collapsed residual.
    contrast, contrast_err : float
        Collapsed contrast (mean over channels, throughput-corrected) and its error.
    spectrum : CompanionSpectrum
    radial_slope, radial_slope_err : float
        ``d ln r / d ln λ`` of the per-channel centroids (NaN with fewer than 3 usable channels).
    status : str
        ``candidate`` or ``speckle-like`` (``radial_slope - radial_slope_model`` above the threshold).
    position_err_px : float
        Per-axis position error: ``FWHM / (2 S/N)`` for a forward-model position; for a centroid, the
        scatter of the per-channel centroids over the square root of their number (``FWHM / (2 S/N)``
        with fewer than 3).
    budget : ErrorBudget
    note : str or None
    radial_slope_model : float
        The same slope for a companion at the candidate's place with its fitted spectrum, put through the
        same ASDI: the apparent radial motion that self-subtraction gives a real companion (large at low
        field rotation). Computed only for a candidate whose own slope exceeds ``speckle_slope`` (NaN
        otherwise, and without a spectrum fit).
    position_from : {'forward-model', 'centroid'}
        How the position was measured (``centroid`` also where the forward-model fit failed).
    """

    candidate: Candidate
    contrast: float
    contrast_err: float
    spectrum: CompanionSpectrum
    radial_slope: float
    radial_slope_err: float
    status: str
    position_err_px: float
    budget: ErrorBudget
    note: str | None = None
    radial_slope_model: float = np.nan
    position_from: str = "centroid"


@dataclass(frozen=True)
class SpectralLimits:
    """Detection limits per channel and of the collapsed image.

    Attributes
    ----------
    radii_px : ndarray, (r,)
    contrast : ndarray, (λ, r)
        ``sigma``-sigma contrast per channel.
    collapsed : ndarray, (r,)
        ``sigma``-sigma contrast of the collapsed image (flat-contrast companion).
    throughput : ndarray, (λ + 1, r)
        Per channel, then collapsed.
    noise : ndarray, (λ + 1, r)
    sigma : float
    collapse_weights : ndarray, (λ, r)
        Weight of each channel in the collapsed image at each separation (they sum to 1).
    """

    radii_px: np.ndarray
    contrast: np.ndarray
    collapsed: np.ndarray
    throughput: np.ndarray
    noise: np.ndarray
    sigma: float
    collapse_weights: np.ndarray


@dataclass(frozen=True)
class SpectralResult:
    """Everything the spectral post-processing of one cube gives.

    Attributes
    ----------
    collapsed : ndarray, (y, x)
        Mean of the channel residual images (detection image).
    channels : ndarray, (λ, y, x)
        Derotated, combined ASDI residual of every channel.
    detection : DetectionResult
    candidates : tuple of SpectralCandidate
    limits : SpectralLimits
    wavelengths_um : ndarray
    fwhm : ndarray, (λ,)
        FWHM of every channel's PSF, pixels.
    pixel_scale : float
    star_flux : ndarray or None, (λ,)
    parameters : dict
    spectrum_passes : int
        Passes of the spectra's fit that were run.
    spectrum_converged : bool
        False when ``spectrum_iterations`` passes ended with a channel of some candidate still moving by
        more than a quarter of its error (those candidates say so in their note).
    """

    collapsed: np.ndarray
    channels: np.ndarray
    detection: DetectionResult
    candidates: tuple[SpectralCandidate, ...]
    limits: SpectralLimits
    wavelengths_um: np.ndarray
    fwhm: np.ndarray
    pixel_scale: float
    star_flux: np.ndarray | None
    parameters: dict
    spectrum_passes: int = 0
    spectrum_converged: bool = True


def _process(cube, angles, factors, params: SpectralParameters, basis_from=None) -> np.ndarray:
    """Combined ASDI residual image of every channel, ``(λ, y, x)`` (the components of ``basis_from``)."""
    per_channel = channel_residuals(
        cube, factors, params.ncomp, mode=params.mode, ncomp_adi=params.ncomp_adi, basis_from=basis_from
    )
    return np.stack([combine(frames, angles, params.collapse)[0] for frames in per_channel])


def _branch_angles(nbranch: int, avoid_theta: list[float]) -> np.ndarray:
    """``nbranch`` evenly spaced polar angles turned to stay as far as possible from the candidates."""
    base = np.arange(nbranch) * 360.0 / nbranch
    if not avoid_theta:
        return base
    best, best_gap = 0.0, -1.0
    for offset in np.arange(0.0, 360.0 / nbranch, 5.0):
        gaps = [
            min(abs((a - t + 180) % 360 - 180) for t in avoid_theta) for a in (base + offset) % 360
        ]  # smallest angular distance from any candidate
        if min(gaps) > best_gap:
            best, best_gap = offset, min(gaps)
    return (base + best) % 360


def _throughput(cube, angles, factors, psfs, fwhms, star, frames_nofc, radii, fake_flux, thetas, params):
    """Throughput ``(nbranch, λ, r)`` of the ASDI at ``radii`` per channel, and the runs it came from.

    Each run is ``(branch, radius indices, xs, ys, injected (λ, n), processed channel images)``, from
    which the collapsed image's throughput follows once its weights are known.
    """
    nl, _, ny, nx = cube.shape
    cy, cx = star_centre((ny, nx))
    thru = np.full((len(thetas), nl, radii.size), np.nan)
    runs = []
    for b, theta in enumerate(thetas):
        for pattern in range(3):  # fakes 3 FWHM apart in one cube
            index = np.arange(pattern, radii.size, 3)
            if index.size == 0:
                continue
            cube_fc = cube.copy()
            injected = np.zeros((nl, index.size))
            ys = cy + radii[index] * np.sin(np.deg2rad(theta))
            xs = cx + radii[index] * np.cos(np.deg2rad(theta))
            for j, i in enumerate(index):
                for k in range(nl):
                    flux = fake_flux[i] * star[k]  # a flat contrast
                    inject_companions(cube_fc[k], psfs[k], angles, flux, float(radii[i]), float(theta), copy=False)
                    stamp = inject_in_frame(np.zeros((ny, nx)), psfs[k], ys[j], xs[j], flux)
                    injected[k, j] = aperture_sums(stamp, xs[j : j + 1], ys[j : j + 1], fwhms[k] / 2)[0]
            frames_fc = _process(cube_fc, angles, factors, params)
            for k in range(nl):
                diff = np.nan_to_num(frames_fc[k] - frames_nofc[k])
                thru[b, k, index] = aperture_sums(diff, xs, ys, fwhms[k] / 2) / injected[k]
            runs.append((b, index, xs, ys, injected, frames_fc))
    return np.clip(thru, 0, None), runs


def _collapsed_throughput(runs, frames_nofc, weigh, weight_at, fwhm, shape) -> np.ndarray:
    """Throughput ``(nbranch, r)`` of the collapsed image (``weigh`` collapses; ``weight_at`` (λ, r))."""
    nbranch = max(run[0] for run in runs) + 1
    thru = np.full((nbranch, shape), np.nan)
    collapsed_nofc = weigh(frames_nofc)
    for b, index, xs, ys, injected, frames_fc in runs:
        diff = np.nan_to_num(weigh(frames_fc) - collapsed_nofc)
        thru[b, index] = aperture_sums(diff, xs, ys, fwhm / 2) / (weight_at[:, index] * injected).sum(axis=0)
    return np.clip(thru, 0, None)


def _robust_noise(frame: np.ndarray, radii: np.ndarray, fwhm: float) -> np.ndarray:
    """Scatter of 1xFWHM-aperture fluxes on each circle, 1.4826 x MAD: a companion on the circle does not
    inflate it (the plain scatter counts the companion as noise and would down-weight its best channels)."""
    cy, cx = star_centre(frame.shape)
    out = np.full(radii.size, np.nan)
    image = np.nan_to_num(frame, nan=0.0)
    for i, r in enumerate(radii):
        n = int(np.floor(2 * np.pi * r / fwhm))
        if n < 3:
            continue
        angle = 2 * np.pi * np.arange(n) / n
        fluxes = aperture_sums(image, cx + r * np.cos(angle), cy + r * np.sin(angle), fwhm / 2)
        out[i] = 1.4826 * np.median(np.abs(fluxes - np.median(fluxes)))
    return out


def _interp(radii_from: np.ndarray, values: np.ndarray, radii_to) -> np.ndarray:
    """Linear interpolation along the last axis (constant beyond the ends)."""
    values = np.atleast_2d(values)
    return np.stack([np.interp(radii_to, radii_from, v) for v in values])


def _aperture(frame: np.ndarray, cand: Candidate, fwhm: float) -> tuple[float, float]:
    """Flux in the 1xFWHM aperture at the candidate above the mean of the noise apertures at its separation,
    and its error (the noise apertures' scatter with the small-sample term); both NaN where fewer than two
    noise apertures fit on the circle (no background to measure against)."""
    try:
        m = snr(frame, (cand.x, cand.y), float(fwhm))
    except ValueError:
        return float("nan"), float("nan")
    return float(m.signal - m.background), float(m.noise * np.sqrt(1 + 1 / m.n_apertures))


def _recentred(image: np.ndarray, cand: Candidate, fwhm: float, box: int) -> Candidate:
    """The candidate moved to the 2-D Gaussian centroid of ``image`` near it (kept where the fit fails or
    moves it by more than half a FWHM)."""
    try:
        fit = fit_gaussian(image, centre_yx=(cand.y, cand.x), cropsize=max(box, 5), fwhm_guess=fwhm)
    except Exception:  # a failed fit keeps the detection's position
        return cand
    x, y = fit["x"], fit["y"]
    if not (np.isfinite(x) and np.isfinite(y)) or np.hypot(x - cand.x, y - cand.y) > fwhm / 2:
        return cand
    return candidate_at(
        x, y, star_centre(image.shape), cand.snr, cand.peak_snr, cand.fpf, cand.significance, cand.n_apertures
    )


def _forward_model_position(image: np.ndarray, model: np.ndarray, at: Candidate, fwhm: float) -> tuple[float, float]:
    """Position by forward-model astrometry (Wang et al. 2016, AJ 152, 97, in its simplest form).

    ``model`` is the candidate injected at ``at`` and put through the same projection as ``image``: the
    self-subtraction distorts both alike, where a Gaussian centroid of ``image`` is pulled by it. The
    sub-pixel shift of ``model`` that best matches ``image`` within 1 FWHM of ``at`` (with a free amplitude
    and offset, solved linearly) moves ``at`` to the returned ``(x, y)``; NaN where the fit fails, would
    move it by more than half a FWHM or needs a negative amplitude. The image and model are scaled to unit
    peak first, so that the fit's tolerances do not depend on the cube's units.
    """
    from scipy import ndimage, optimize

    half = int(np.ceil(1.5 * fwhm)) + 3  # the window, the largest shift (FWHM / 2) and the spline's reach
    y0, x0 = int(round(at.y)), int(round(at.x))
    ny, nx = image.shape
    if y0 - half < 0 or x0 - half < 0 or y0 + half >= ny or x0 + half >= nx:
        return float("nan"), float("nan")
    box = (slice(y0 - half, y0 + half + 1), slice(x0 - half, x0 + half + 1))
    data, stamp = image[box], np.nan_to_num(model[box])
    yy, xx = np.indices(data.shape)
    window = (np.hypot(yy - (at.y - y0 + half), xx - (at.x - x0 + half)) <= fwhm) & np.isfinite(data)
    target, model_peak = data[window], float(np.max(np.abs(stamp[window]), initial=0.0))
    data_peak = float(np.max(np.abs(target), initial=0.0))
    if window.sum() < 6 or model_peak == 0 or data_peak == 0:
        return float("nan"), float("nan")
    target, stamp = target / data_peak, stamp / model_peak

    def solve(shift: np.ndarray) -> tuple[np.ndarray, float]:
        moved = ndimage.shift(stamp, shift, order=3, mode="constant")[window]
        design = np.stack([moved, np.ones_like(moved)], axis=1)
        coeffs = np.linalg.lstsq(design, target, rcond=None)[0]
        return coeffs, float(np.sum((target - design @ coeffs) ** 2))

    # a simplex 0.3 px wide: scipy's default around a zero start is 2.5e-4 px, below xatol, and would stop
    fit = optimize.minimize(
        lambda shift: solve(shift)[1],
        np.zeros(2),
        method="Nelder-Mead",
        options={"initial_simplex": [[0, 0], [0.3, 0], [0, 0.3]], "xatol": 1e-3, "fatol": 1e-9},
    )
    dy, dx = fit.x
    if not fit.success or np.hypot(dx, dy) > fwhm / 2 or solve(fit.x)[0][0] <= 0:
        return float("nan"), float("nan")
    return float(at.x + dx), float(at.y + dy)


def _radial_slope(channels, x, y, wavelengths, fwhms, channel_snr, min_snr):
    """``d ln r / d ln λ`` of the candidate's per-channel centroids, its error, and the position error."""
    cy, cx = star_centre(channels.shape[-2:])
    usable = [k for k in range(channels.shape[0]) if channel_snr[k] >= min_snr]
    radii, lams, xs, ys = [], [], [], []
    for k in usable:
        size = int(2 * round(fwhms[k]) + 1) | 1
        try:
            fit = fit_gaussian(channels[k], centre_yx=(y, x), cropsize=max(size, 5), fwhm_guess=float(fwhms[k]))
        except Exception:  # a channel whose fit fails does not vote
            continue
        fx, fy = fit["x"], fit["y"]
        if not (np.isfinite(fx) and np.isfinite(fy)) or np.hypot(fx - x, fy - y) > fwhms[k]:
            continue
        radii.append(np.hypot(fy - cy, fx - cx))
        lams.append(wavelengths[k])
        xs.append(fx)
        ys.append(fy)
    if len(radii) < 3:
        return np.nan, np.nan, np.nan, len(radii)
    fit = stats.linregress(np.log(lams), np.log(radii))
    spread = np.hypot(np.std(xs, ddof=1), np.std(ys, ddof=1)) / np.sqrt(2)
    return float(fit.slope), float(fit.stderr), float(spread / np.sqrt(len(xs))), len(radii)


@blas_single_thread
def postprocess_spectral(
    cube,
    angles,
    psfs,
    wavelengths,
    pixel_scale: float,
    *,
    star_flux=None,
    params: SpectralParameters = SpectralParameters(),
    systematics: Systematics | None = None,
) -> SpectralResult:
    """ASDI, detection, spectral vetting, companion spectra and spectral detection limits of one cube.

    Parameters
    ----------
    cube : ndarray, (λ, t, y, x)
        Spectral ADI cube centred on the star (:func:`reduction.conventions.star_centre`).
    angles : ndarray, (t,)
        Derotation angles (vip-hci convention).
    psfs : ndarray, (λ, s, s)
        Off-axis PSF of every channel.
    wavelengths : ndarray, (λ,)
        Channel wavelengths, micrometres.
    pixel_scale : float
        arcsec per pixel.
    star_flux : ndarray, (λ,), optional
        The star's flux in a 1xFWHM aperture per channel (cube units); gives contrasts.
    params : SpectralParameters
    systematics : Systematics, optional
        The observation's star-centre, calibration and photometric terms of every detection's budget.

    Returns
    -------
    SpectralResult
    """
    cube = check_cube(cube, ndim=(4,))
    nl, nt, ny, nx = cube.shape
    if nl < 3:
        raise ValueError(f"a spectral cube needs at least 3 channels; this one has {nl}")
    angles = check_angles(angles, nt)
    wavelengths = as_float_array(wavelengths, "wavelengths").ravel()
    factors = scale_factors(wavelengths)
    if factors.size != nl:
        raise ValueError(f"{factors.size} wavelengths for a cube with {nl} channels")
    psfs = as_float_array(psfs, "psfs")
    if psfs.ndim != 3 or psfs.shape[0] != nl:
        raise ValueError(f"psfs must be (λ={nl}, y, x), got shape {psfs.shape}")
    pixel_scale = check_positive(pixel_scale, "pixel_scale")
    if star_flux is not None:
        star = as_float_array(star_flux, "star_flux").ravel()
        if star.size != nl or np.any(~np.isfinite(star)) or np.any(star <= 0):
            raise ValueError(f"star_flux must hold {nl} positive values, got {star_flux!r}")
    normalized = [normalize_psf(p) for p in psfs]
    fwhms = np.array([n.fwhm for n in normalized])
    npsfs = [n.psf for n in normalized]
    star_for_contrast = star if star_flux is not None else np.ones(nl)
    fwhm = float(np.mean(fwhms))
    systematics = systematics or Systematics()

    channels = _process(cube, angles, factors, params)
    # noise per channel (1xFWHM apertures of the channel's own FWHM) on one radius grid, from 1 FWHM
    channel_noise = [noise_per_annulus(channels[k], 1.0, float(fwhms[k]), init_rad=fwhm) for k in range(nl)]
    radii = channel_noise[0][2]
    if radii.size < 3:
        raise ValueError(f"the frames ({ny}x{nx} px) are too small for a throughput at FWHM {fwhm:.1f} px")
    channel_sigma = np.stack([n[0] for n in channel_noise])
    # fakes every FWHM from 1.5 FWHM to 1.5 FWHM from the edge (the rescaling loses flux nearer the edge),
    # away from what a plain mean of the channels shows
    # (a small crop, as the demo's 31-35 px IFS cubes, gets one or two: constant beyond them)
    half = min(ny, nx) / 2
    fc_radii = np.arange(1.5 * fwhm, half - 1.5 * fwhm, fwhm)
    if fc_radii.size == 0 and half - fwhm > 1.5 * fwhm:  # a small crop: one radius, 1 FWHM from the edge
        fc_radii = np.array([half - fwhm])
    if fc_radii.size < 1:
        raise ValueError(f"the frames ({ny}x{nx} px) are too small for fake companions at FWHM {fwhm:.1f} px")
    preliminary = detect_candidates(
        channels.mean(axis=0), fwhm, threshold=params.threshold, max_candidates=params.max_candidates
    )
    thetas = _branch_angles(params.nbranch, [c.theta_deg for c in preliminary.candidates])
    mean_sigma = np.interp(fc_radii, radii, np.nanmean(channel_sigma, axis=0))
    fake_flux = params.fc_snr * mean_sigma / np.sqrt(nl) / float(np.mean(star_for_contrast))
    thru_channels, runs = _throughput(
        cube, angles, factors, npsfs, fwhms, star_for_contrast, channels, fc_radii, fake_flux, thetas, params
    )
    thru_channel_r = _interp(fc_radii, np.nanmean(thru_channels, axis=0), radii)
    # the collapse is the matched filter of a flat-contrast companion: each channel weighs its expected
    # signal (star flux x throughput) over its noise variance, at each separation
    with np.errstate(divide="ignore", invalid="ignore"):
        robust = np.stack([_robust_noise(channels[k], radii, float(fwhms[k])) for k in range(nl)])
        raw = star_for_contrast[:, None] * thru_channel_r / robust**2
    raw[~np.isfinite(raw)] = 0.0
    total = raw.sum(axis=0)
    weight_r = np.where(total > 0, raw / np.where(total > 0, total, 1), 1.0 / nl)
    pixel_r = np.hypot(*(np.indices((ny, nx)) - np.array(star_centre((ny, nx)))[:, None, None]))
    weight_map = np.stack([np.interp(pixel_r, radii, w) for w in weight_r])
    weight_map /= weight_map.sum(axis=0)

    def weigh(frames: np.ndarray) -> np.ndarray:
        return (weight_map * frames).sum(axis=0)

    collapsed = weigh(channels)
    smap = snr_map(collapsed, fwhm)
    detection = detect_candidates(
        collapsed, fwhm, snr_map_array=smap, threshold=params.threshold, max_candidates=params.max_candidates
    )
    weight_fc = _interp(radii, weight_r, fc_radii)
    thru_collapsed = _collapsed_throughput(runs, channels, weigh, weight_fc, fwhm, fc_radii.size)
    thru_branches = np.concatenate([thru_channels, thru_collapsed[:, None]], axis=1)
    thru_fc = np.nanmean(thru_branches, axis=0)
    thru_scatter = (
        np.nanstd(thru_branches, axis=0, ddof=1) / np.sqrt(len(thetas)) if len(thetas) > 1 else np.zeros_like(thru_fc)
    )
    thru = _interp(fc_radii, thru_fc, radii)
    # spectra and positions (NEGFC per channel, solved linearly): with the principal components of the
    # cube minus the candidates' current models, the ASDI is linear in the cube and each channel's residual
    # depends on that channel only (rows are projected one by one), so the contrast in channel k is the
    # cube's aperture flux through that projection over the aperture flux of a unit-contrast model through
    # it, and the candidate keeps its shape (no self-subtraction) for its centroid. Each pass leaves less of
    # the companion in its own basis: a fixed-point iteration whose error shrinks by a near-constant factor
    # ρ per pass, so from the second pass the step is stretched by 1 / (1 - ρ) (over-relaxation with ρ
    # measured by least squares over the channels). What was measured on a 5°-rotation IFS sequence, where
    # the spectral diversity alone separates companion and speckles (ρ ~ 0.7-0.85):
    # - the first model is a flat contrast from the collapsed image: a start per channel from the fakes'
    #   throughput (which ignores that self-subtraction depends on the companion's own spectrum) was 5x too
    #   bright in one channel, which then kept most of its error (its basis held it) and set ρ wrongly;
    # - the positions are refined once the model is close (median step under 1σ): recentred on a badly
    #   modelled companion they wandered 0.9 px and slowed the fit;
    # - the passes stop when no channel moves by more than a quarter of its error (4 fixed passes left
    #   errors of 30-150 % in the blue channels, 3-20σ).
    found = list(detection.candidates)
    thru_at = [_interp(fc_radii, thru_fc, [c.separation_px])[:, 0] for c in found]
    spectra = []
    for cand, t in zip(found, thru_at):
        if not params.spectrum_iterations:  # no fit: each channel's flux over the fakes' throughput
            flux = np.array([_aperture(channels[k], cand, fwhms[k])[0] for k in range(nl)])
            spectra.append(np.where(t[:nl] > 0, flux / np.where(t[:nl] > 0, t[:nl], 1), 0.0))
            continue
        w = _interp(radii, weight_r, [cand.separation_px])[:, 0]
        flat = _aperture(collapsed, cand, fwhm)[0] / t[nl] / float(w @ star_for_contrast) if t[nl] > 0 else 0.0
        spectra.append((flat if np.isfinite(flat) else 0.0) * star_for_contrast)  # NaN models would poison the cube
    projected, response = channels, [t[:nl] for t in thru_at]

    def models(amplitudes, which=None, where=None) -> np.ndarray:
        out = np.zeros_like(cube)
        for i, (cand, flux) in enumerate(zip(found if where is None else where, amplitudes)):
            if which is not None and i != which:
                continue
            for k in range(nl):
                inject_companions(out[k], npsfs[k], angles, flux[k], cand.separation_px, cand.theta_deg, copy=False)
        return out

    previous_steps: list[np.ndarray | None] = [None] * len(found)
    # a candidate is settled when its last pass moved no channel by more than a quarter of its error
    settled = np.full(len(found), not params.spectrum_iterations)
    box = int(2 * round(fwhm)) + 1

    def project():
        """The models at ``found``; the cube and unit models on the components of the cube without them."""
        clean = cube - models(spectra)
        projected = _process(cube, angles, factors, params, basis_from=clean)
        unit = _process(models([star_for_contrast] * len(found)), angles, factors, params, basis_from=clean)
        return list(found), clean, projected, unit, weigh(projected)

    passes = 0
    modelled_at = list(found)
    for passes in range(1, (params.spectrum_iterations if found else 0) + 1):
        modelled_at, clean, projected, unit, image = project()  # modelled_at: where this pass's models sit
        for i, cand in enumerate(found):
            measured, noise = np.array([_aperture(projected[k], cand, fwhms[k]) for k in range(nl)]).T
            gain = np.array([_aperture(unit[k], cand, fwhms[k])[0] for k in range(nl)]) / star_for_contrast
            response[i] = gain
            usable = gain > 0
            step = np.where(usable, measured / np.where(usable, gain, 1), 0.0) - spectra[i]
            step = np.where(np.isfinite(step), step, 0.0)  # a channel without a measurable flux keeps its value
            with np.errstate(divide="ignore", invalid="ignore"):
                moved = np.abs(step) / np.where(usable, noise / np.where(usable, gain, 1), np.inf)
            moved = moved[np.isfinite(moved)]
            settled[i] = moved.size == 0 or float(moved.max()) <= 0.25
            relax, previous = 1.0, previous_steps[i]
            if previous is not None and not settled[i]:
                # ρ per candidate (one faint candidate's noise cannot set another's), at most 0.75 (a step
                # stretched 4x at most: at low S/N the ratio is mostly noise)
                norm = float(previous @ previous)
                relax = 1.0 / (1.0 - float(np.clip(step @ previous / norm, 0.0, 0.75))) if norm > 0 else 1.0
            previous_steps[i] = step
            spectra[i] = spectra[i] + relax * step
            if moved.size and float(np.median(moved)) < 1.0:
                # from the detection's position each time: passes cannot add up to a walk away from it
                found[i] = _recentred(image, detection.candidates[i], fwhm, box)
        if settled.all():
            break
    converged = bool(settled.all())
    model_fitted = [False] * len(found)  # positions from the forward model
    unsettled_positions = [False] * len(found)
    if passes and params.position_fit == "forward-model":
        # the last pass's unit models, scaled to each candidate's spectrum, went through the projection
        # that made ``image`` (the same linear projection and weights; the median over frames, the default
        # ``collapse``, makes it only nearly linear): where self-subtraction bends the image of a companion
        # (low field rotation), it bends its model alike. A candidate with another within 3 FWHM has its
        # own model projected alone (one more ASDI run), so that the other's does not enter its window.
        # A model put where the companion is not leaves part of it in the basis, which bends its image
        # more: the models move to the fitted positions and the projection is made again (two ASDI runs),
        # until no candidate moves by more than 0.05 px (at most 3 times)
        def own_model(i: int) -> np.ndarray:
            contrast_i = np.nan_to_num(spectra[i] / star_for_contrast)
            at = modelled_at[i]
            close = any(j != i and np.hypot(c.x - at.x, c.y - at.y) < 3 * fwhm for j, c in enumerate(modelled_at))
            if not close:
                return weigh(unit * contrast_i[:, None, None])
            alone = models([star_for_contrast] * len(found), which=i, where=modelled_at)
            return weigh(_process(alone, angles, factors, params, basis_from=clean) * contrast_i[:, None, None])

        for _ in range(3):
            moved = [0.0] * len(found)
            for i, at in enumerate(modelled_at):
                x, y = _forward_model_position(image, own_model(i), at, fwhm)
                if np.isfinite(x) and np.isfinite(y):  # else it keeps its centroid
                    model_fitted[i] = True
                    c = found[i]
                    found[i] = candidate_at(
                        x, y, star_centre((ny, nx)), c.snr, c.peak_snr, c.fpf, c.significance, c.n_apertures
                    )
                    moved[i] = float(np.hypot(x - at.x, y - at.y))
            unsettled_positions = [m > 0.05 for m in moved]
            if not any(unsettled_positions):
                break
            # every model moves to its candidate's place: a fitted one, or the centroid where the fit failed
            modelled_at, clean, projected, unit, image = project()
    # the errors: the noise apertures of the projected images (the candidate's own aperture is not among them)
    projected_collapsed = weigh(projected)

    # limits: the noise of the ASDI images of the cube without the candidates (a companion in its own
    # annulus would count as noise: at S/N 16 it tripled the annulus' scatter, measured), as vip's
    # contrast curve is run on a companion-free cube
    free = _process(cube - models(spectra), angles, factors, params) if found else channels
    noise = np.stack(
        [noise_per_annulus(free[k], 1.0, float(fwhms[k]), init_rad=fwhm)[0] for k in range(nl)]
        + [noise_per_annulus(weigh(free), 1.0, fwhm, init_rad=fwhm)[0]]
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = student_sigma(params.sigma, radii, fwhm)
        per_star = np.concatenate(
            [np.repeat(star_for_contrast[:, None], radii.size, axis=1), (star_for_contrast @ weight_r)[None]]
        )
        limits = np.clip(factor * noise / thru / per_star, 0, 1)
    limits[~np.isfinite(limits)] = 1.0
    limit = SpectralLimits(
        radii_px=radii,
        contrast=limits[:nl],
        collapsed=limits[nl],
        throughput=thru,
        noise=noise,
        sigma=params.sigma,
        collapse_weights=weight_r,
    )

    candidates = []
    for index, (cand, t, flux, gain) in enumerate(zip(found, thru_at, spectra, response)):  # noqa: B007 - t rebuilt below
        t_err = _interp(fc_radii, thru_scatter, [cand.separation_px])[:, 0]
        if params.spectrum_iterations:  # the channels' response is then computed, not a fakes' average
            t, t_err = np.concatenate([gain, t[nl:]]), np.concatenate([np.zeros(nl), t_err[nl:]])
        # errors: the noise apertures at the candidate's separation in the images without it
        flux_err = np.array(
            [_aperture(projected[k], cand, fwhms[k])[1] for k in range(nl)]
            + [_aperture(projected_collapsed, cand, fwhm)[1]]
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            contrast = flux / star_for_contrast
            noise_term = flux_err[:nl] / t[:nl] / star_for_contrast
            contrast_err = np.hypot(noise_term, contrast * t_err[:nl] / t[:nl])
            channel_snr = contrast / noise_term
            # the collapsed contrast: the channels' contrasts weighted as the collapsed image weighs their
            # fluxes; its error is the collapsed image's noise over the same weighted response
            w = _interp(radii, weight_r, [cand.separation_px])[:, 0] * star_for_contrast
            mean_contrast = float(w @ contrast / w.sum())
            response_c = float(w @ t[:nl] / w.sum()) if params.spectrum_iterations else float(t[nl])
            mean_err = float(np.hypot(flux_err[nl] / response_c / (w.sum()), mean_contrast * t_err[nl] / t[nl]))
        slope, slope_err, pos_err, n_used = _radial_slope(
            channels, cand.x, cand.y, wavelengths, fwhms, channel_snr, params.vetting_snr
        )
        slope_model = np.nan
        if params.spectrum_iterations and np.isfinite(slope) and slope > params.speckle_slope:
            # a companion's own centroids move with λ in the channel images where self-subtraction eats
            # their inner or outer side (at low rotation, slopes of 0.6-0.9 were measured on real
            # companions): the same fit on the part of the channel images that this candidate's model makes
            # (the ASDI of the cube minus that of the cube without the model) says how much. Only a
            # candidate that moves like a speckle is modelled (one ASDI run each): the model can clear it,
            # never flag one that does not move
            own = channels - _process(cube - models(spectra, which=index), angles, factors, params)
            slope_model = _radial_slope(own, cand.x, cand.y, wavelengths, fwhms, channel_snr, params.vetting_snr)[0]
        status, note = "candidate", None
        if np.isfinite(slope) and slope - np.nan_to_num(slope_model) > params.speckle_slope:
            status = SPECKLE_LIKE
            note = (
                f"moves outward with wavelength (d ln r / d ln λ = {slope:.2f} ± {slope_err:.2f}, "
                + (f"{slope_model:.2f} expected of a companion" if np.isfinite(slope_model) else "not modelled")
                + "): a speckle"
            )
        elif not np.isfinite(slope):
            note = f"spectral vetting not possible: {n_used} channel(s) with S/N >= {params.vetting_snr:g}"
        if not settled[index]:
            unconverged = f"spectrum fit not converged in {passes} passes (spectrum_iterations): errors understated"
            note = f"{note}; {unconverged}" if note else unconverged
        if unsettled_positions[index]:
            moving = "forward-model position still moving by more than 0.05 px after 3 re-projections"
            note = f"{note}; {moving}" if note else moving
        # position error per axis: the FWHM over twice the S/N for a forward-model position (RMS pulls
        # 0.99 at 5°, 0.61 without its one speckle-struck companion, and 0.57 at 40° of rotation, 14
        # simulated companions each, bench_spectral: conservative but for speckles under a companion; the
        # channels' centroid scatter, blind to the speckle they share, gave 1.69 at 5°), the centroid
        # scatter for a centroid (or the same FWHM over twice the S/N where the channels give none)
        from_snr = fwhm / (2 * max(cand.snr, 1.0))
        sigma_xy = from_snr if model_fitted[index] or not np.isfinite(pos_err) else pos_err
        r = max(cand.separation_px, 1e-9)
        mean_star = float(np.mean(star_for_contrast))
        fit_terms = (sigma_xy, float(np.rad2deg(sigma_xy / r)), mean_err * mean_star)
        budget = detection_budget(
            r,
            pixel_scale,
            fit_terms,
            (np.nan, np.nan, np.nan),
            mean_contrast if star_flux is not None else np.nan,
            1.0 / mean_star if star_flux is not None else np.nan,
            systematics,
        )
        candidates.append(
            SpectralCandidate(
                candidate=cand,
                contrast=mean_contrast,
                contrast_err=mean_err,
                spectrum=CompanionSpectrum(wavelengths, contrast, contrast_err, channel_snr),
                radial_slope=slope,
                radial_slope_err=slope_err,
                status=status,
                position_err_px=float(sigma_xy),
                budget=budget,
                note=note,
                radial_slope_model=slope_model,
                position_from="forward-model" if model_fitted[index] else "centroid",
            )
        )
    return SpectralResult(
        collapsed=collapsed,
        channels=channels,
        detection=detection,
        candidates=tuple(candidates),
        limits=limit,
        wavelengths_um=wavelengths,
        fwhm=fwhms,
        pixel_scale=pixel_scale,
        star_flux=star if star_flux is not None else None,
        parameters=params.to_dict(),
        spectrum_passes=passes,
        spectrum_converged=converged,
    )


class SpectralPostprocessStep(Step[SpectralParameters, SpectralResult]):
    """The post-processing of one spectral cube (:func:`postprocess_spectral`)."""

    name: ClassVar[str] = "postprocess-spectral"
    #: 2: the spectra fitted to convergence; 3: the vetting against the candidate's forward model;
    #: 4: positions by forward-model astrometry
    version: ClassVar[str] = "4"
    Parameters: ClassVar[type[StepParameters]] = SpectralParameters
    inputs: ClassVar[tuple[str, ...]] = ("cube", "angles", "psfs", "wavelengths", "pixel_scale")
    optional_inputs: ClassVar[tuple[str, ...]] = ("star_flux", "systematics")
    outputs: ClassVar[tuple[str, ...]] = ("collapsed", "channels", "detection", "candidates", "limits")

    def run(self, params: SpectralParameters, **inputs: Any) -> SpectralResult:
        return postprocess_spectral(
            inputs["cube"],
            inputs["angles"],
            inputs["psfs"],
            inputs["wavelengths"],
            inputs["pixel_scale"],
            star_flux=inputs.get("star_flux"),
            params=params,
            systematics=inputs.get("systematics"),
        )
