"""The NACO β Pic reference cube as the post-processing tests use it, and checks of that preparation.

Published numbers (``../shared/data/naco_betapic/SOURCES.md``, VIP tutorial
2019): PSF Gaussian fit FWHM_y 4.733, FWHM_x 4.474 (fwhm 4.6 px), flux in a
1xFWHM aperture 1.227; the cube is re-centred with a negative 2-D Gaussian
fit at xy=(51, 51) in 5x5 px; β Pic b is then at xy=(62, 62).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

REPO = Path(__file__).resolve().parents[1]
PIXEL_SCALE = 0.02719  # arcsec/px, SOURCES.md (vip conf VLT_NACO)
STARPHOT = 764939.6  # tutorial contrast curve
# Published values used as tolerances (SOURCES.md)
PUBLISHED_SNR_PCA20 = 11.06
PUBLISHED_SNR_ANNULAR15 = 8.817
B_SEPARATION_PX = 16.583
B_THETA_DEG = 44.721
B_FLUX = 700.0
FAKE = {"r": 30.5, "theta": 240.0, "flux": 400.0}
FAKE_MCMC = {"r": (30.67, 0.28, 0.13), "theta": (239.999, 0.16, 0.19), "flux": (386.1, 30.0, 28.0)}


def data_dir() -> Path | None:
    env = os.environ.get("HCDC_REFERENCE_DATA")
    base = Path(env) if env else REPO.parent / "shared" / "data"
    folder = base / "naco_betapic"
    return folder if (folder / "naco_betapic_cube.fits").is_file() else None


def require_naco() -> Path:
    folder = data_dir()
    if folder is None:
        pytest.skip(
            "NACO β Pic reference data not found: set HCDC_REFERENCE_DATA or put shared/data/naco_betapic "
            "beside the repository"
        )
    return folder


@functools.lru_cache(maxsize=1)
def _load():
    folder = require_naco()
    cube = fits.getdata(folder / "naco_betapic_cube.fits").astype(float)
    angles = fits.getdata(folder / "naco_betapic_pa.fits").astype(float).ravel()
    psf = fits.getdata(folder / "naco_betapic_psf.fits").astype(float)
    return cube, angles, psf


def naco_raw():
    """``(cube, angles, psf)`` as stored (cube not centred)."""
    cube, angles, psf = _load()
    return cube.copy(), angles.copy(), psf.copy()


@functools.lru_cache(maxsize=1)
def _prepared():
    from reduction.postproc import normalize_psf, recenter_cube

    cube, angles, psf = _load()
    npsf = normalize_psf(psf)  # tutorial: fwhm by Gaussian fit, 19 px, 1xFWHM flux = 1
    centred = recenter_cube(cube, npsf.fwhm, xy=(51, 51), negative=True, subi_size=5)
    return centred.cube, angles, npsf


def naco_prepared():
    """``(centred cube, angles, NormalizedPsf)`` following the tutorial."""
    cube, angles, npsf = _prepared()
    return cube.copy(), angles.copy(), npsf


@functools.lru_cache(maxsize=1)
def _planet_free():
    from reduction.postproc import inject_companions

    cube, angles, npsf = _prepared()
    return inject_companions(cube, npsf.psf, angles, -B_FLUX, B_SEPARATION_PX, B_THETA_DEG)


def naco_planet_free():
    """The tutorial's planet-free cube: b removed with (16.583 px, 44.721 deg, 700)."""
    return _planet_free().copy()


def test_psf_normalisation_matches_the_tutorial():
    require_naco()
    _, _, npsf = naco_prepared()
    assert npsf.fwhm_y == pytest.approx(4.733, abs=0.005)
    assert npsf.fwhm_x == pytest.approx(4.474, abs=0.005)
    assert npsf.fwhm == pytest.approx(4.6, abs=0.01)
    assert npsf.aperture_flux == pytest.approx(1.227, abs=0.005)
    assert npsf.psf.shape == (19, 19)
    from reduction.postproc import aperture_sums

    assert aperture_sums(npsf.psf, [9.0], [9.0], npsf.fwhm / 2)[0] == pytest.approx(1.0, abs=1e-12)


def test_recentring_is_vips_recipe():
    """Same shifts and cube as ``vip_hci.preproc.cube_recenter_2dfit`` with the tutorial's arguments."""
    require_naco()
    vip_preproc = pytest.importorskip("vip_hci.preproc")
    raw, _, _ = naco_raw()
    cube, _, npsf = naco_prepared()
    expected, shy, shx = vip_preproc.cube_recenter_2dfit(
        raw,
        xy=(51, 51),
        fwhm=npsf.fwhm,
        subi_size=5,
        model="gauss",
        negative=True,
        nproc=1,
        full_output=True,
        verbose=False,
        plot=False,
    )
    np.testing.assert_allclose(cube, expected, atol=1e-8 * np.abs(expected).max())
    from reduction.postproc import recenter_cube

    auto = recenter_cube(raw, npsf.fwhm)  # automatic start finds the dark hole
    assert auto.guess_xy == (51.0, 51.0)
    np.testing.assert_allclose(auto.shifts_y, shy, atol=1e-8)
    np.testing.assert_allclose(auto.shifts_x, shx, atol=1e-8)
