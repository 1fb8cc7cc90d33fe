"""The inputs and the comparison of the IDL ANDROMEDA reference maps of the NACO beta Pic cube.

``../shared/data/naco_betapic/andromeda_idl_reference.npz`` was made in July 2018 by the IDL ANDROMEDA
(Cantalloube) for vip-hci's own test (``tests/test_andromeda.py`` at vip-hci 60e733a8, removed in
March 2019 by 9e8fcd37). Its inputs, rebuilt here from the same data (SOURCES.md there):

* the cube: frames ``[0:100, 0:100]`` of the 101-pixel cube (vip-hci's ``cube_crop_frames(size=100,
  force=True)`` of 2018); ANDROMEDA takes the star at ``((n - 1) / 2, (n - 1) / 2)``, between pixels;
* the parallactic angles as stored (float32: IDL's FLOAT);
* the PSF as vip-hci's ``normalize_psf(size=38, force_odd=False)`` of 2018 made it: crop to 38 pixels,
  re-centre at (18.5, 18.5) (2018's centre of an even frame) by Gaussian fits and OpenCV Lanczos-4
  shifts, and divide by the flux in a 1xFWHM aperture (FWHM from a Gaussian fit of the raw PSF);
* oversampling 1, no high-pass filter, ``min_sep`` 0.3, no optimisation of the pair subtraction, no
  S/N smoothing, homogeneous variance, and the inner working angle ANDROMEDA then chooses itself
  (0.5 lambda/D: the first it tries that gives frame pairs).

vip-hci >= 1.0 takes the star of an even frame at ``n / 2`` and shifts every even frame and PSF by
half a pixel (FFT) before the algorithm; :func:`vip_centre_shift_skipped` hands the algorithm IDL's
inputs as they are.
"""

from __future__ import annotations

import contextlib
import importlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from .conftest import reference_data_dir

#: vip-hci's tolerances in its 2018 comparison (``aarc``: atol as given, rtol 1e-5 for all)
TOLERANCES = {
    "contrast": 1e-2,
    "snr": 1e-4,
    "snr_norm": 1e-4,
    "stdcontrast": 1e-6,
    "stdcontrast_norm": 1e-6,
    "likelihood": 1e-4,
}
RTOL = 1e-5
#: ANDROMEDA's grid of sub-pixel PSF shifts (its ``precision``, default 50)
SUBPIXEL_STEPS = 50


def reference_folder() -> Path:
    root = reference_data_dir()
    folder = root / "naco_betapic" if root else None
    if folder is None or not (folder / "andromeda_idl_reference.npz").is_file():
        where = folder or "no reference data folder"
        pytest.skip(f"the IDL ANDROMEDA reference is absent ({where}; set HCDC_REFERENCE_DATA)")
    return folder


@dataclass(frozen=True)
class IdlInputs:
    cube: np.ndarray  # (61, 100, 100), the star taken at (49.5, 49.5)
    angles: np.ndarray  # parallactic angles, degrees, as IDL took them
    psf: np.ndarray  # (38, 38), centred at (18.5, 18.5), 1xFWHM-aperture flux 1
    reference: dict  # map name (vip-hci's: contrast, snr, ...) -> the IDL map


def idl_inputs() -> IdlInputs:
    from astropy.io import fits

    folder = reference_folder()
    npz = np.load(folder / "andromeda_idl_reference.npz")
    reference = {name: np.asarray(npz[f"andromeda_{name}_1"], dtype=float) for name in TOLERANCES}
    cube = fits.getdata(folder / "naco_betapic_cube.fits").astype(float)[:, :100, :100]
    angles = fits.getdata(folder / "naco_betapic_pa.fits").astype(float).ravel()
    psf = vip2018_normalized_psf(fits.getdata(folder / "naco_betapic_psf.fits"), size=38)
    return IdlInputs(cube, angles, psf, reference)


def _gaussian_fit(image: np.ndarray):
    """vip-hci 2018's ``fit_2dgaussian``: astropy's Levenberg-Marquardt from the centre of mass, FWHM 4."""
    from astropy.modeling import fitting, models
    from astropy.stats import gaussian_fwhm_to_sigma
    from photutils.centroids import centroid_com

    xcom, ycom = centroid_com(image)
    model = models.Gaussian2D(
        amplitude=np.ptp(image),
        x_mean=xcom,
        y_mean=ycom,
        x_stddev=4 * gaussian_fwhm_to_sigma,
        y_stddev=4 * gaussian_fwhm_to_sigma,
        theta=0,
    )
    yy, xx = np.indices(image.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fitting.LevMarLSQFitter()(model, xx, yy, image)


def _centre_2018(image: np.ndarray) -> float:
    """vip-hci's centre of a frame before 1.0: ``n / 2 - 0.5`` (square frames)."""
    return image.shape[0] / 2 - 0.5


def _crop_2018(image: np.ndarray, size: int) -> np.ndarray:
    c = _centre_2018(image)
    wing = size // 2 if size % 2 else size / 2 - 0.5
    return image[int(c - wing) : int(c + wing + 1), int(c - wing) : int(c + wing + 1)].copy()


def _shift_lanczos4(image: np.ndarray, dy: float, dx: float) -> np.ndarray:
    import cv2

    frame = np.asarray(image, dtype=np.float32)
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(
        frame, matrix, frame.shape[::-1], flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REFLECT
    ).astype(float)


def vip2018_normalized_psf(psf: np.ndarray, size: int) -> np.ndarray:
    """The PSF as vip-hci's ``normalize_psf(fwhm='fit', size, force_odd=False)`` made it in 2018."""
    from astropy.stats import gaussian_sigma_to_fwhm
    from photutils.aperture import CircularAperture, aperture_photometry
    from photutils.centroids import centroid_com

    raw = np.asarray(psf, dtype=float)
    fit = _gaussian_fit(raw)
    fwhm = gaussian_sigma_to_fwhm * (fit.x_stddev.value + fit.y_stddev.value) / 2
    out = _crop_2018(raw, size)
    c = _centre_2018(out)
    xcom, ycom = centroid_com(out)
    if abs(ycom - c) > 1e-2 and abs(xcom - c) > 1e-2:  # 2018: recentred unless one axis already is
        # the first shift is measured on the crop and applied to the whole PSF, as 2018 did
        fit = _gaussian_fit(out)
        out = _crop_2018(_shift_lanczos4(raw, c - fit.y_mean.value, c - fit.x_mean.value), size)
        for _ in range(2):
            fit = _gaussian_fit(out)
            out = _shift_lanczos4(out, c - fit.y_mean.value, c - fit.x_mean.value)
    flux = float(aperture_photometry(out, CircularAperture((c, c), fwhm / 2), method="exact")["aperture_sum"][0])
    return out / flux if not 0.9 <= flux <= 1.1 else out


@contextlib.contextmanager
def vip_centre_shift_skipped():
    """vip-hci's ANDROMEDA without its half-pixel shift of even frames: the algorithm gets its inputs as given."""
    module = importlib.import_module("vip_hci.invprob.andromeda")
    original = module.subpixel_shift
    module.subpixel_shift = lambda image, *_shift: np.asarray(image, dtype=float)
    try:
        yield
    finally:
        module.subpixel_shift = original


def andromeda_idl_maps(inputs: IdlInputs) -> dict[str, np.ndarray]:
    """HC-DC's ANDROMEDA (:func:`reduction.postproc.statistical.andromeda_maps`) with the IDL run's inputs."""
    from reduction.postproc.statistical import StatisticalParameters, andromeda_maps

    params = StatisticalParameters(
        andromeda_oversampling=1.0,
        andromeda_filtering_fraction=1.0,
        andromeda_min_sep=0.3,
        andromeda_opt_method="no",
        andromeda_nsmooth_snr=0,
        andromeda_iwa=0.5,
    )
    # vip-hci >= 1.0 takes derotation angles and negates them for ANDROMEDA, which takes parallactic ones
    maps = andromeda_maps(inputs.cube, -inputs.angles, inputs.psf, 2.0, params)  # fwhm 2: 1 lambda/D at oversampling 1
    return {
        "contrast": maps.flux,
        "snr": maps.other_maps["snr"],
        "snr_norm": maps.snr,
        "stdcontrast": maps.other_maps["stdcontrast"],
        "stdcontrast_norm": maps.flux_std,
        "likelihood": maps.other_maps["likelihood"],
    }


def compared_pixels(reference: np.ndarray, inner_px: float) -> np.ndarray:
    """Where a map is compared: where the IDL map is defined, outside ``inner_px`` of the star."""
    n = reference.shape[0]
    yy, xx = np.indices(reference.shape)
    return (np.hypot(yy - (n - 1) / 2, xx - (n - 1) / 2) >= inner_px) & (reference != 0)


def within_tolerance(name: str, ours: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return np.abs(ours - reference) <= TOLERANCES[name] + RTOL * np.abs(reference)


def rounding_margin(angles: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Per pixel, in pixels: how near any frame's model position comes to a rounding boundary of ANDROMEDA.

    The model of a planet at a pixel is the PSF shifted to its position in each frame, taken from a grid of
    :data:`SUBPIXEL_STEPS` shifts per pixel: the position is split into whole pixels (floor) and a rounded
    number of steps. Where a position lies within a few float32 roundings of a boundary of either (IDL
    computes in float32, vip-hci in float64), the two implementations can take neighbouring models.
    """
    n = shape[0]
    yy, xx = np.indices(shape, dtype=float)
    x0, y0 = xx - (n / 2 - 0.5), yy - (n / 2 - 0.5)
    margin = np.full(shape, np.inf)
    for angle in np.deg2rad(angles):
        for position in (x0 * np.cos(angle) - y0 * np.sin(angle), y0 * np.cos(angle) + x0 * np.sin(angle)):
            to_pixel = np.abs(position - np.round(position))
            steps = (position - np.floor(position)) * SUBPIXEL_STEPS
            to_step = np.abs(steps - np.floor(steps) - 0.5) / SUBPIXEL_STEPS
            margin = np.minimum(margin, np.minimum(to_pixel, to_step))
    return margin
