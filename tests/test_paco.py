"""HC-DC's vectorised FastPACO against vip-hci's own, on the real NACO beta Pic cube.

vip-hci's ``FastPACO`` is the reference (``reduction/postproc/paco.py`` says why it was rewritten): with
exact sub-pixel shifts the rewrite must give its maps to rounding; with the default grid of shifted
models, within what a shift of at most half a grid step can change.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings

import numpy as np
import pytest

from reduction.postproc import inject_companions
from reduction.postproc.paco import fast_paco, patch_offsets
from reduction.postproc.statistical import StatisticalParameters, paco_maps

from .test_postproc_data import PIXEL_SCALE, naco_prepared, require_naco


@pytest.fixture(scope="module")
def naco_even_crop():
    """A 28-px crop centred on the star (even: vip-hci's own geometry is right there), every 2nd frame."""
    require_naco()
    cube, angles, npsf = naco_prepared()
    c = cube.shape[-1] // 2
    crop = cube[::2, c - 14 : c + 14, c - 14 : c + 14]
    return crop, angles[::2], npsf


def vip_fast_paco(cube, angles, psf, fwhm):
    from vip_hci.invprob import FastPACO

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paco = FastPACO(
            cube=cube, angles=angles, psf=np.asarray(psf, float), fwhm=fwhm * PIXEL_SCALE, pixscale=PIXEL_SCALE
        )
        paco.run(cpu=1)
    return paco


def test_the_patch_is_vip_hcis():
    from vip_hci.invprob.paco import create_boolean_circular_mask

    for radius in (2, 3, 4, 6):
        mask = create_boolean_circular_mask((31, 31), radius=radius, center=(15, 15))
        rows, cols = np.nonzero(mask)
        dy, dx = patch_offsets(radius)
        assert np.array_equal(rows - 15, dy) and np.array_equal(cols - 15, dx)


@pytest.mark.slow
def test_exact_shifts_give_vip_hcis_maps(naco_even_crop):
    cube, angles, npsf = naco_even_crop
    reference = vip_fast_paco(cube, angles, npsf.psf, npsf.fwhm)
    ours = fast_paco(cube, angles, npsf.psf, npsf.fwhm * PIXEL_SCALE / PIXEL_SCALE, psf_grid=0)
    finite = np.isfinite(reference.snr)
    assert np.array_equal(finite, np.isfinite(ours.snr)) and finite.sum() > 100
    # rounding only: the sums run in another order
    np.testing.assert_allclose(ours.snr[finite], reference.snr[finite], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours.flux[finite], reference.flux[finite], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours.flux_std[finite], reference.std[finite], rtol=1e-9)


@pytest.mark.slow
def test_the_grid_of_shifted_models_is_within_half_a_step(naco_even_crop):
    """Nearest of 100 steps per pixel: a model at most 0.005 px from its place.

    A shift of d px changes the model by about d * |grad h| / |h| ~ d * 2.4 / FWHM (a Gaussian core),
    ~0.3 % here, and the S/N of a noise pixel (unit variance) by as much of a sigma: 0.02 is allowed.
    """
    cube, angles, npsf = naco_even_crop
    exact = fast_paco(cube, angles, npsf.psf, npsf.fwhm, psf_grid=0)
    grid = fast_paco(cube, angles, npsf.psf, npsf.fwhm, psf_grid=100)
    finite = np.isfinite(exact.snr)
    assert np.array_equal(finite, np.isfinite(grid.snr))
    assert np.nanmax(np.abs(grid.snr - exact.snr)) < 0.02
    strong = finite & (np.abs(exact.snr) > 3)
    assert np.all(np.abs(grid.flux[strong] / exact.flux[strong] - 1) < 0.005)
    # and without sub-pixel shifts (which vip-hci's run() cannot do: it ignores the option) it differs
    centred = fast_paco(cube, angles, npsf.psf, npsf.fwhm, subpixel_psf=False)
    assert np.nanmax(np.abs(centred.snr - exact.snr)) > 0.1


@pytest.mark.slow
def test_odd_frames_are_rotated_about_the_star():
    """Fakes in an odd 45-px crop are found where they were put (the frame is padded to even).

    vip-hci alone rotates an odd frame about the corner of its central pixel, half a pixel diagonally
    from the star: on these three fakes its S/N peaks are 0.53-0.95 px from the truth (0.72 on average)
    against 0.16-0.30 px here (``bench/bench_paco.py``). At S/N 8.5-9.6 a fit of a 4.6-px FWHM peak is
    good to about FWHM / (2 S/N) ~ 0.25 px, so the mean of three must be under 0.35 px.
    """
    from reduction.postproc.detection import subpixel_peak

    require_naco()
    cube, angles, npsf = naco_prepared()
    errors = []
    for theta in (240.0, 200.0, 120.0):
        crop = inject_companions(cube[:, 50 - 22 : 50 + 23, 50 - 22 : 50 + 23], npsf.psf, angles, 400.0, 13.0, theta)
        truth = (22 + 13 * math.cos(math.radians(theta)), 22 + 13 * math.sin(math.radians(theta)))
        maps = paco_maps(crop, angles, npsf.psf, npsf.fwhm, PIXEL_SCALE, StatisticalParameters())
        yy, xx = np.mgrid[0:45, 0:45]
        snr = np.where((np.hypot(xx - truth[0], yy - truth[1]) < 3) & np.isfinite(maps.snr), maps.snr, -np.inf)
        peak = np.unravel_index(np.argmax(snr), snr.shape)
        assert snr[peak] > 8
        y, x = subpixel_peak(maps.snr, peak, npsf.fwhm)
        errors.append(math.hypot(x - truth[0], y - truth[1]))
    assert np.mean(errors) < 0.35 and max(errors) < 0.5, errors


def test_bad_inputs_are_refused():
    psf = np.ones((9, 9))
    with pytest.raises(ValueError, match="square frames"):
        fast_paco(np.zeros((4, 20, 21)), np.zeros(4), psf, 3.0)
    with pytest.raises(ValueError, match="one angle per frame"):
        fast_paco(np.zeros((4, 20, 20)), np.zeros(3), psf, 3.0)
    with pytest.raises(ValueError, match="at least 3 frames"):
        fast_paco(np.zeros((2, 20, 20)), np.zeros(2), psf, 3.0)
    with pytest.raises(ValueError, match="gives none"):
        fast_paco(np.zeros((4, 20, 20)), np.zeros(4), psf, 0.8)
    with pytest.raises(ValueError, match="at least 7 pixels"):
        fast_paco(np.zeros((4, 20, 20)), np.zeros(4), np.ones((5, 5)), 3.0)
    with pytest.raises(ValueError, match="psf_grid"):
        StatisticalParameters(paco_psf_grid=-1)
    with pytest.raises(ValueError, match="paco_engine"):
        StatisticalParameters(paco_engine="fortran")


def test_a_constant_region_gives_nan_where_it_is_used_not_an_error():
    """A zeroed region (a mask) has no covariance to invert: the pixels that use it are NaN, the rest not."""
    rng = np.random.default_rng(3)
    cube = rng.normal(size=(8, 24, 24))
    cube[:, 4:8, 4:8] = 0.0
    yy, xx = np.mgrid[-6:7, -6:7]
    psf = np.exp(-(xx**2 + yy**2) / (2 * 1.3**2))
    maps = fast_paco(cube, np.linspace(0, 20, 8), psf, 3.0, psf_grid=10)
    finite = np.isfinite(maps.snr)
    assert finite.sum() > 20 and not finite.all()
    clean = fast_paco(rng.normal(size=(8, 24, 24)), np.linspace(0, 20, 8), psf, 3.0, psf_grid=10)
    assert np.isfinite(clean.snr).sum() > finite.sum()
