"""Derotation, shifts, injection and aperture photometry against vip-hci and photutils."""

from __future__ import annotations

import numpy as np
import pytest

from reduction.conventions import sky_to_derotated_xy, star_centre
from reduction.postproc import aperture_sums, derotate, inject_companions
from reduction.postproc.geometry import vip_fft_shift
from reduction.postproc.inject import companion_positions
from reduction.postproc.photometry import aperture_sum_grid


def gaussian_image(shape, x, y, sigma=2.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))


@pytest.mark.parametrize("shape", [(61, 61), (60, 60)])
def test_derotation_equals_vip_cube_derotate(shape):
    """Same geometry and method as vip's default ('vip-fft'): equal to a small fraction of the signal."""
    vip_preproc = pytest.importorskip("vip_hci.preproc")
    cy, cx = star_centre(shape)
    angles = np.array([-80.0, -14.3, 0.0, 23.0, 46.0, 91.0, 178.0])
    cube = np.array([gaussian_image(shape, cx + 14.0, cy + 5.0, 1.8) for _ in angles])
    ours = derotate(cube, angles)
    theirs = vip_preproc.cube_derotate(cube, angles)
    np.testing.assert_allclose(ours, theirs, atol=2e-3)  # peak 1: 0.2 % of the peak
    spline = derotate(cube, angles, method="spline")
    np.testing.assert_allclose(spline, theirs, atol=2e-2)


def test_derotation_puts_north_up():
    """A source at sky PA θ lands at PA θ in the derotated image, whatever the frame's angle."""
    shape = (81, 81)
    centre = star_centre(shape)
    sep, pa = 20.0, 130.0
    angles = np.array([-30.0, 10.0, 75.0])
    cube = np.zeros((3,) + shape)
    for i, a in enumerate(angles):
        from reduction.conventions import sky_to_frame_xy

        x, y = sky_to_frame_xy(sep, pa, a, centre)
        cube[i] = gaussian_image(shape, float(x), float(y))
    out = derotate(cube, angles)
    x0, y0 = sky_to_derotated_xy(sep, pa, centre)
    for frame in out:
        iy, ix = np.unravel_index(np.argmax(frame), frame.shape)
        assert abs(ix - x0) <= 1 and abs(iy - y0) <= 1


def test_vip_fft_shift_equals_vip_frame_shift():
    vip_preproc = pytest.importorskip("vip_hci.preproc")
    rng = np.random.default_rng(3)
    image = rng.normal(size=(21, 21))
    for dy, dx in [(0.3, -0.7), (-0.45, 0.2), (0.0, 0.9), (1.6, -2.3)]:
        expected = vip_preproc.frame_shift(image, dy, dx, imlib="vip-fft")
        np.testing.assert_allclose(vip_fft_shift(image, [dy], [dx])[0], expected, atol=1e-12)


def test_injection_equals_vip_cube_inject_companions():
    """Same positions (vip's theta convention) and the same stamps."""
    fm = pytest.importorskip("vip_hci.fm")
    psf = gaussian_image((15, 15), 7.0, 7.0, 1.9)
    psf /= aperture_sums(psf, [7.0], [7.0], 2.25)[0]
    cube = np.zeros((4, 71, 71))
    angles = np.array([-20.0, 0.0, 33.3, 80.0])
    ours = inject_companions(cube, psf, angles, 3.5, 21.3, 240.0)
    theirs = fm.cube_inject_companions(cube, psf, angles, flevel=3.5, rad_dists=[21.3], theta=240.0)
    np.testing.assert_allclose(ours, theirs, atol=1e-12)
    ys, xs = companion_positions(21.3, 240.0, angles, (71, 71))
    for frame, y, x in zip(ours, ys, xs):
        iy, ix = np.unravel_index(np.argmax(frame), frame.shape)
        assert abs(iy - y) < 1 and abs(ix - x) < 1


def test_exact_aperture_sums_equal_photutils():
    photutils = pytest.importorskip("photutils.aperture")
    rng = np.random.default_rng(7)
    image = rng.normal(size=(50, 60))
    for radius in (0.6, 1.0, 2.3017, 3.5):
        xs, ys = rng.uniform(-2, 62, 400), rng.uniform(-2, 52, 400)
        table = photutils.aperture_photometry(image, photutils.CircularAperture(np.c_[xs, ys], radius), method="exact")
        expected = np.asarray(table["aperture_sum"], dtype=float)
        ok = np.isfinite(expected)  # photutils: NaN for apertures entirely off the image
        np.testing.assert_allclose(aperture_sums(image, xs, ys, radius)[ok], expected[ok], atol=1e-9)


def test_aperture_grid_is_exact_at_its_nodes():
    rng = np.random.default_rng(1)
    image = rng.normal(size=(30, 30))
    grid = aperture_sum_grid(image, 2.2, 4)
    for (i, a), (j, b) in [((10, 1), (12, 3)), ((3, 0), (25, 2)), ((20, 3), (5, 0))]:
        y, x = i + a / 4, j + b / 4
        assert grid[i * 4 + a, j * 4 + b] == pytest.approx(aperture_sums(image, [x], [y], 2.2)[0], abs=1e-10)


@pytest.mark.parametrize("side", [19, 21, 38])
def test_stamp_shifter_equals_the_fft_shift(side):
    """The cached-matrix shift NEGFC uses gives vip_fft_shift's numbers, for every padding layout."""
    from reduction.postproc.geometry import StampShifter

    rng = np.random.default_rng(side)
    image = rng.normal(size=(side, side))
    # sub-pixel shifts of both signs, exact zeros, and shifts beyond one pixel (wider padding)
    dy = np.concatenate([rng.uniform(-1, 1, 40), [0.0, 0.0, 1.0, -1.0], rng.uniform(-3, 3, 8)])
    dx = np.concatenate([rng.uniform(-1, 1, 40), [0.0, 0.5, -1.0, 0.0], rng.uniform(-3, 3, 8)])
    shifter = StampShifter(image)
    expected = vip_fft_shift(image, dy, dx)
    np.testing.assert_allclose(shifter(dy, dx), expected, rtol=0, atol=1e-12 * np.abs(image).max())
    np.testing.assert_allclose(shifter(dy[:3], dx[:3]), expected[:3], rtol=0, atol=1e-12 * np.abs(image).max())
