"""Off-axis PSF: FWHM by a 2-D Gaussian fit and vip-style normalisation.

The recipe is the one of the VIP tutorial that the β Pic reference numbers come
from: the FWHM is the mean of the x and y FWHM of a 2-D Gaussian fitted (with
the Levenberg-Marquardt fitter of ``vip_hci.var.fit_2dgaussian``) to the
central 9x9 pixels; the PSF is cropped to an odd size, re-centred if its
centroid is off the central pixel, and divided by its flux in a circular
aperture of diameter 1 FWHM (vip's ``normalize_psf``).
"""

from __future__ import annotations

import warnings

import numpy as np
from astropy.modeling import fitting, models
from astropy.stats import gaussian_fwhm_to_sigma, gaussian_sigma_to_fwhm

from reduction.conventions import star_centre

from ._checks import as_float_array, check_finite, check_positive
from .geometry import vip_fft_shift
from .photometry import aperture_sums
from .results import NormalizedPsf


def _fitter():
    # vip-hci uses LevMarLSQFitter; keep it while astropy has it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if hasattr(fitting, "LevMarLSQFitter"):
            return fitting.LevMarLSQFitter()
        return fitting.LMLSQFitter()  # pragma: no cover


def fit_gaussian(
    image: np.ndarray,
    centre_yx: tuple[float, float] | None = None,
    cropsize: int = 9,
    negative: bool = False,
    fwhm_guess: float = 4.0,
) -> dict[str, float]:
    """Fit a rotated 2-D Gaussian to a small box of ``image`` (``vip_hci.var.fit_2dgaussian``).

    Parameters
    ----------
    image : ndarray, (y, x)
    centre_yx : tuple, optional
        Centre of the box (default: the central pixel ``(ny // 2, nx // 2)``).
    cropsize : int
        Box side in pixels (odd recommended).
    negative : bool
        Fit a negative Gaussian (a dark hole, e.g. a vortex-coronagraph centre).
    fwhm_guess : float
        Starting FWHM (vip's ``fwhmx = fwhmy``).

    Returns
    -------
    dict
        ``y``, ``x`` (position in ``image``), ``fwhm_y``, ``fwhm_x``, ``fwhm``
        (their mean), ``amplitude``, ``theta_deg``.
    """
    image = as_float_array(image, "image")
    if centre_yx is None:
        centre_yx = star_centre(image.shape)
    wing = (cropsize - 1) / 2
    y0, x0 = max(int(centre_yx[0] - wing), 0), max(int(centre_yx[1] - wing), 0)
    sub = image[y0 : int(centre_yx[0] + wing + 1), x0 : int(centre_yx[1] + wing + 1)]
    if negative:
        sub = -sub + np.abs(np.min(-sub))
    yy, xx = np.indices(sub.shape)
    total = sub.sum()
    if total != 0 and np.isfinite(total):  # photutils' centroid_com, as vip
        ycom, xcom = (sub * yy).sum() / total, (sub * xx).sum() / total
    else:
        ycom, xcom = (sub.shape[0] - 1) / 2, (sub.shape[1] - 1) / 2
    model = models.Gaussian2D(
        amplitude=float(np.ptp(sub)),
        x_mean=xcom,
        y_mean=ycom,
        x_stddev=fwhm_guess * gaussian_fwhm_to_sigma,
        y_stddev=fwhm_guess * gaussian_fwhm_to_sigma,
        theta=0.0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = _fitter()(model, xx, yy, sub)
    fwhm_y = abs(float(fit.y_stddev.value)) * gaussian_sigma_to_fwhm
    fwhm_x = abs(float(fit.x_stddev.value)) * gaussian_sigma_to_fwhm
    return {
        "y": float(fit.y_mean.value) + y0,
        "x": float(fit.x_mean.value) + x0,
        "fwhm_y": fwhm_y,
        "fwhm_x": fwhm_x,
        "fwhm": 0.5 * (fwhm_x + fwhm_y),
        "amplitude": float(fit.amplitude.value),
        "theta_deg": float(np.rad2deg(fit.theta.value)),
    }


def crop_centre(image: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` x ``size`` box centred on the central pixel (vip's ``frame_crop``)."""
    cy, cx = star_centre(image.shape)
    half = size // 2
    if cy - half < 0 or cx - half < 0 or cy + half + size % 2 > image.shape[0] or cx + half + size % 2 > image.shape[1]:
        raise ValueError(f"cannot crop {size}x{size} px from an image of {image.shape}")
    return image[..., cy - half : cy + half + size % 2, cx - half : cx + half + size % 2].copy()


def normalize_psf(psf, fwhm: float | None = None, size: int | None = 19, cropsize: int = 9) -> NormalizedPsf:
    """Crop, centre and normalise an off-axis PSF (vip's ``normalize_psf``).

    Parameters
    ----------
    psf : ndarray, (y, x)
        The off-axis PSF, roughly centred (within ~2 px).
    fwhm : float, optional
        FWHM in pixels; fitted (2-D Gaussian on the central ``cropsize`` pixels) when None.
    size : int or None
        Side of the cropped PSF; forced odd; None keeps the input size (made odd).
    cropsize : int
        Box for the FWHM fit.

    Returns
    -------
    NormalizedPsf
    """
    psf = as_float_array(psf, "psf")
    if psf.ndim != 2:
        raise TypeError(f"psf must be a 2-D image, got shape {psf.shape}")
    check_finite(psf, "psf")
    fwhm_x = fwhm_y = float("nan")
    if fwhm is None:
        fit = fit_gaussian(psf, cropsize=cropsize)
        fwhm_x, fwhm_y, fwhm = fit["fwhm_x"], fit["fwhm_y"], fit["fwhm"]
        if not np.isfinite(fwhm) or fwhm <= 0.5 or fwhm > min(psf.shape):
            raise ValueError(f"the Gaussian fit of the PSF failed (FWHM {fwhm}); give the FWHM explicitly")
    fwhm = check_positive(fwhm, "fwhm")
    if size is None:
        size = min(psf.shape)
    size = int(size)
    if size % 2 == 0:
        size += 1
    size = min(size, min(psf.shape) - (1 - min(psf.shape) % 2))
    array = crop_centre(psf, size) if size < min(psf.shape) else psf.copy()
    # re-centre like vip: only when the centroid is off in both axes by > 0.01 px
    cy, cx = star_centre(array.shape)
    positive = np.clip(array, 0, None)
    total = positive.sum()
    if total > 0:
        yy, xx = np.indices(array.shape)
        ycom, xcom = (positive * yy).sum() / total, (positive * xx).sum() / total
        if abs(ycom - cy) > 1e-2 and abs(xcom - cx) > 1e-2:
            for _ in range(3):
                fit = fit_gaussian(array, cropsize=array.shape[0])
                dy, dx = cy - fit["y"], cx - fit["x"]
                if not (np.isfinite(dy) and np.isfinite(dx)) or max(abs(dy), abs(dx)) > 3:
                    break
                array = vip_fft_shift(array, [dy], [dx])[0]
    flux = float(aperture_sums(array, np.array([cx]), np.array([cy]), fwhm / 2.0)[0])
    if not np.isfinite(flux) or flux <= 0:
        raise ValueError(f"the PSF has no positive flux in a 1xFWHM aperture (flux {flux})")
    scale = flux if (flux > 1.1 or flux < 0.9) else 1.0
    return NormalizedPsf(
        psf=array / scale,
        fwhm=float(fwhm),
        fwhm_x=float(fwhm_x),
        fwhm_y=float(fwhm_y),
        aperture_flux=flux,
        scale=float(scale),
    )
