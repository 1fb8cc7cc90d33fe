"""Detection limits: the 5-sigma contrast curve (vip-hci's ``contrast_curve`` algorithm, fast).

Same procedure and parameters as ``vip_hci.metrics.contrast_curve`` so the two
agree (``tests/test_postproc_contrast.py``):

1. the cube is processed without fake companions; the noise at each
   separation is the standard deviation (ddof 0) of the fluxes in 1xFWHM
   apertures along the circle (``noise_per_annulus``, 1-px radial steps from
   1 FWHM), the mean residual level is ignored (as vip does);
2. the throughput: fake companions of flux ``fc_snr x noise`` are injected
   every ``fc_rad_sep`` radial samples along ``nbranch`` branches, in
   ``fc_rad_sep`` interleaved patterns; each pattern is processed with the same
   algorithm and the throughput is the ratio of the 1xFWHM-aperture flux
   recovered in ``(processed with - processed without)`` to the flux injected
   (``throughput``); it is interpolated with a quadratic spline;
3. the noise curve is smoothed (Savitzky-Golay, order 2, window ~2 FWHM) and
   ``contrast = sigma_corr x noise / throughput / star_flux``, where for the
   small-sample correction (Mawet et al. 2014) ``sigma_corr = t.ppf(Φ(sigma), n - 1)
   sqrt(1 + 1/n)`` with ``n = floor(2π r / FWHM)`` resolution elements
   (``student=True``); values outside (0, 1] are set to 1 like vip.

It is fast because every processing is our fast PCA (or annular PCA, or cADI)
and the injections and photometry are vectorised.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import stats
from scipy.interpolate import InterpolatedUnivariateSpline
from scipy.signal import savgol_filter

from reduction.conventions import star_centre

from ._checks import check_angles, check_cube, check_positive, check_psf
from ._threads import blas_single_thread
from .inject import inject_companions, inject_in_frame
from .photometry import aperture_sums
from .psf import crop_centre
from .results import ContrastCurve

Algorithm = Callable[[np.ndarray, np.ndarray], np.ndarray]


def noise_per_annulus(
    frame: np.ndarray,
    separation: float,
    fwhm: float,
    init_rad: float | None = None,
    wedge: tuple[float, float] = (0, 360),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise (std, ddof 0) and mean of 1xFWHM-aperture fluxes on circles (vip's ``noise_per_annulus``).

    Returns
    -------
    noise, mean, radii : ndarray
    """
    frame = np.asarray(frame, dtype=float)
    if init_rad is None:
        init_rad = fwhm
    cy, cx = star_centre(frame.shape)
    n_annuli = int(np.floor((cy - init_rad) / separation)) - 1
    angular_range = wedge[1] - wedge[0]
    radii, xs_all, ys_all, counts = [], [], [], []
    for i in range(n_annuli):
        rad = float(init_rad + separation * i)
        npoints = (np.deg2rad(angular_range) * rad) / fwhm
        step = angular_range / npoints
        k = np.arange(int(npoints))
        ang = np.deg2rad(step * k + wedge[0])
        xs_all.append(cx + rad * np.cos(ang))
        ys_all.append(cy + rad * np.sin(ang))
        counts.append(k.size)
        radii.append(rad)
    if not radii:
        return np.array([]), np.array([]), np.array([])
    xs, ys = np.concatenate(xs_all), np.concatenate(ys_all)
    fluxes = aperture_sums(np.nan_to_num(frame, nan=0.0), xs, ys, fwhm / 2)
    nan = ~np.isfinite(frame)
    if nan.any():  # apertures touching NaN pixels (e.g. a skipped annulus) have no flux
        fluxes[aperture_sums(nan.astype(float), xs, ys, fwhm / 2) > 0] = np.nan
    splits = np.cumsum(counts)[:-1]
    groups = np.split(fluxes, splits)
    noise = np.array([g.std() for g in groups])
    mean = np.array([g.mean() for g in groups])
    return noise, mean, np.array(radii)


def student_sigma(sigma: float, radii, fwhm: float) -> np.ndarray:
    """The small-sample threshold of ``sigma`` at ``radii`` (Mawet et al. 2014): ``t.ppf(Φ(sigma), n - 1)
    sqrt(1 + 1/n)`` with ``n = floor(2π r / FWHM)`` resolution elements."""
    n_res = np.floor(np.asarray(radii, dtype=float) / fwhm * 2 * np.pi)
    return stats.t.ppf(stats.norm.cdf(sigma), n_res - 1) * np.sqrt(1 + 1 / n_res)


@blas_single_thread
def throughput(
    cube: np.ndarray,
    angles: np.ndarray,
    psf: np.ndarray,
    fwhm: float,
    algorithm: Algorithm,
    *,
    nbranch: int = 1,
    theta: float = 0.0,
    inner_rad: int = 1,
    fc_rad_sep: int = 3,
    noise_sep: float = 1.0,
    fc_snr: float = 100.0,
    frame_nofc: np.ndarray | None = None,
) -> dict:
    """Algorithm throughput with injected fake companions (vip's ``throughput``).

    Returns
    -------
    dict
        ``throughput`` (nbranch, nrad), ``noise``, ``radii``, ``frame_nofc``.
    """
    nt, ny, nx = cube.shape
    maxfcsep = int((ny / 2.0) / fwhm) - 1
    if fc_rad_sep < 3 or fc_rad_sep > maxfcsep:
        raise ValueError(f"fc_rad_sep must lie between 3 and {maxfcsep}, got {fc_rad_sep}")
    if frame_nofc is None:
        frame_nofc = algorithm(cube, angles)
    noise, _, radii = noise_per_annulus(frame_nofc, separation=noise_sep, fwhm=fwhm)
    noise, radii = noise[inner_rad - 1 :], radii[inner_rad - 1 :]
    finite = np.isfinite(noise) & (noise > 0)
    if not finite.all():  # separations without residuals (skipped annuli): no throughput there
        noise, radii = noise[finite], radii[finite]
    if radii.size < fc_rad_sep:
        raise ValueError("too few separations with a measurable noise for the throughput")
    cy, cx = star_centre((ny, nx))
    branch_step = 360.0 / nbranch
    thru = np.zeros((nbranch, radii.size))
    for br in range(nbranch):
        ang = br * branch_step + theta
        for irad in range(fc_rad_sep):
            radvec = radii[irad::fc_rad_sep]
            cube_fc = cube.copy()
            fc_map = np.full((ny, nx), 1e-6)
            fcy, fcx = [], []
            for i, rad in enumerate(radvec):
                flux = fc_snr * noise[irad + i * fc_rad_sep]
                cube_fc = inject_companions(cube_fc, psf, angles, flux, float(rad), ang, copy=False)
                y = cy + rad * np.sin(np.deg2rad(ang))
                x = cx + rad * np.cos(np.deg2rad(ang))
                fc_map = inject_in_frame(fc_map, psf, y, x, flux)
                fcy.append(y)
                fcx.append(x)
            frame_fc = algorithm(cube_fc, angles)
            injected = aperture_sums(fc_map, np.array(fcx), np.array(fcy), fwhm / 2)
            recovered = aperture_sums(
                np.nan_to_num(frame_fc - frame_nofc, nan=0.0), np.array(fcx), np.array(fcy), fwhm / 2
            )
            ratio = recovered / injected
            ratio[ratio < 0] = 0
            thru[br, irad::fc_rad_sep] = ratio
    return {"throughput": thru, "noise": noise, "radii": radii, "frame_nofc": frame_nofc}


@blas_single_thread
def contrast_curve(
    cube,
    angles,
    psf,
    fwhm: float,
    algorithm: Algorithm,
    *,
    star_flux: float | None = None,
    pixel_scale: float | None = None,
    sigma: float = 5.0,
    nbranch: int = 1,
    theta: float = 0.0,
    inner_rad: int = 1,
    fc_rad_sep: int = 3,
    noise_sep: float = 1.0,
    fc_snr: float = 100.0,
    student: bool = True,
    smooth: bool = True,
    interp_order: int = 2,
    frame_nofc: np.ndarray | None = None,
) -> ContrastCurve:
    """5-sigma (``sigma``) contrast curve with throughput and small-sample correction.

    Parameters
    ----------
    cube : ndarray, (t, y, x)
        Centred ADI cube without the known companions (subtract them first,
        e.g. with :func:`reduction.postproc.negfc.remove_companion`).
    angles : ndarray, (t,)
        Derotation angles (vip-hci convention).
    psf : ndarray
        Off-axis PSF; normalised (and cropped to ~3 FWHM) like vip does.
    fwhm : float
        FWHM in pixels.
    algorithm : callable
        ``algorithm(cube, angles) -> final image``, e.g.
        ``lambda c, a: pca_adi(c, a, 20).residuals``.
    star_flux : float, optional
        Stellar flux in a 1xFWHM aperture, cube units (vip's ``starphot``);
        without it only the flux limits are given.
    pixel_scale : float, optional
        arcsec/px for ``separation_arcsec``.
    sigma, nbranch, theta, inner_rad, fc_rad_sep, noise_sep, fc_snr, student, smooth, interp_order :
        As ``vip_hci.metrics.contrast_curve`` (same defaults).
    frame_nofc : ndarray, optional
        The processed cube if already computed.

    Returns
    -------
    ContrastCurve
    """
    cube = check_cube(cube)
    angles = check_angles(angles, cube.shape[0])
    psf = check_psf(psf, cube.shape[-2:])
    fwhm = check_positive(fwhm, "fwhm")
    if star_flux is not None:
        star_flux = check_positive(star_flux, "star_flux")
    if psf.shape[0] % 2 == 0 or psf.shape[1] % 2 == 0:
        raise ValueError("the PSF must have an odd size (centred on its central pixel)")
    if not isinstance(inner_rad, (int, np.integer)) or inner_rad < 1:
        raise ValueError("inner_rad must be an integer >= 1 (in FWHM)")
    # vip: normalize_psf(psf, fwhm, size=min(round(3 fwhm) made odd, psf size))
    new_size = int(round(3 * fwhm))
    new_size += 1 - new_size % 2
    size = min(new_size, psf.shape[1])
    psf_small = crop_centre(psf, size) if size < psf.shape[1] else psf.copy()
    cyp, cxp = star_centre(psf_small.shape)
    flux1 = float(aperture_sums(psf_small, np.array([cxp]), np.array([cyp]), fwhm / 2)[0])
    if flux1 > 1.1 or flux1 < 0.9:
        psf_small = psf_small / flux1
    res = throughput(
        cube,
        angles,
        psf_small,
        fwhm,
        algorithm,
        nbranch=nbranch,
        theta=theta,
        inner_rad=inner_rad,
        fc_rad_sep=fc_rad_sep,
        noise_sep=noise_sep,
        fc_snr=fc_snr,
        frame_nofc=frame_nofc,
    )
    vector_radd = res["radii"]
    thru_mean = np.nanmean(res["throughput"], axis=0) if res["throughput"].shape[0] > 1 else res["throughput"][0]
    frame_nofc = res["frame_nofc"]
    noise_samp, _, rad_samp = noise_per_annulus(frame_nofc, separation=noise_sep, fwhm=fwhm, init_rad=fwhm)
    radmin = vector_radd.astype(int).min()
    cut1 = np.nonzero(rad_samp.astype(int) == radmin)[0][0]
    noise_samp, rad_samp = noise_samp[cut1:], rad_samp[cut1:]
    radmax_fwhm = int(((cube.shape[-1] - 1) // 2) - fwhm / 2)
    radtmp = min(vector_radd.astype(int).max(), radmax_fwhm)
    while not np.any(rad_samp.astype(int) == radtmp):
        radtmp -= 1
    cut2 = np.nonzero(rad_samp.astype(int) == radtmp)[0][0]
    noise_samp, rad_samp = noise_samp[: cut2 + 1], rad_samp[: cut2 + 1]
    if interp_order is not None:
        thru_interp = InterpolatedUnivariateSpline(vector_radd, thru_mean, k=interp_order)(rad_samp)
    else:
        thru_interp = np.interp(rad_samp, vector_radd, thru_mean)
    if smooth:
        win = min(noise_samp.shape[0] - 2, int(2 * fwhm))
        if win % 2 == 0:
            win += 1
        noise_sm = savgol_filter(noise_samp, polyorder=2, mode="nearest", window_length=win)
    else:
        noise_sm = noise_samp
    if student:
        sigma_corr = student_sigma(sigma, rad_samp, fwhm)
    else:
        sigma_corr = np.full(rad_samp.shape, float(sigma))
    with np.errstate(divide="ignore", invalid="ignore"):
        flux_limit = sigma_corr * noise_sm / thru_interp
        flux_gauss = sigma * noise_sm / thru_interp
    no_throughput = ~(thru_interp > 0)
    flux_limit[no_throughput] = np.inf  # nothing can be detected there (vip sets the contrast to 1)
    flux_gauss[no_throughput] = np.inf

    def to_contrast(values):
        if star_flux is None:
            return None
        out = values / star_flux
        out[(out < 0) | (out > 1) | ~np.isfinite(out)] = 1.0  # as vip
        return out

    params = {
        "sigma": sigma,
        "nbranch": nbranch,
        "theta": theta,
        "inner_rad": inner_rad,
        "fc_rad_sep": fc_rad_sep,
        "noise_sep": noise_sep,
        "fc_snr": fc_snr,
        "student": student,
        "smooth": smooth,
        "interp_order": interp_order,
    }
    return ContrastCurve(
        separation_px=rad_samp,
        separation_arcsec=None if pixel_scale is None else rad_samp * pixel_scale,
        flux_limit=flux_limit,
        contrast=to_contrast(flux_limit.copy()),
        contrast_gaussian=to_contrast(flux_gauss.copy()),
        throughput=thru_interp,
        noise=noise_sm,
        sigma_corrected=sigma_corr,
        throughput_separation_px=vector_radd,
        throughput_measured=thru_mean,
        sigma=float(sigma),
        star_flux=star_flux,
        fwhm=float(fwhm),
        parameters=params,
    )
