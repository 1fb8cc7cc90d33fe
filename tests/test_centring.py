"""Star centre from waffle spots, on the real SPHERE satellite-spot frame (VIP test data)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from scipy import ndimage

from reduction.centring import CentringError, WaffleCentringParameters, find_waffle_centre

# SOURCES.md: star centred at (75, 75); spots at (41,109),(109,109),(41,41),(109,41): 34 px per axis
SPOT_SEPARATION = 34 * np.sqrt(2)


@pytest.fixture(scope="module")
def frame(reference_data):
    path = reference_data / "sphere_irdis_satspots" / "SPHERE_satspots_centered.fits"
    if not path.exists():
        pytest.skip(f"{path} missing")
    return fits.getdata(path).astype(float)


def shifted(frame, dx, dy):
    return np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(frame), (dy, dx))).real


def params(**kw):
    return WaffleCentringParameters(spot_separation_px=SPOT_SEPARATION, **kw)


def test_centre_of_the_unshifted_frame(frame):
    result = find_waffle_centre(frame, (75.0, 75.0), params())
    # the published centre is an integer pixel; we expect it within a fraction of a pixel
    assert result.centre_xy == pytest.approx((75.0, 75.0), abs=0.5)
    assert result.asymmetry_px < 0.5
    assert result.spot_separation_px == pytest.approx(SPOT_SEPARATION, abs=1.0)


def test_random_subpixel_shifts_are_recovered_to_0p1px(frame):
    rng = np.random.default_rng(2024)
    reference = find_waffle_centre(frame, (75.0, 75.0), params()).centre_xy
    errors = []
    for _ in range(12):
        dx, dy = rng.uniform(-1.0, 1.0, 2)
        # the guess is off by up to 2 px, as SEQ CORO XC/YC is
        guess = (75.0 + rng.uniform(-2, 2), 75.0 + rng.uniform(-2, 2))
        result = find_waffle_centre(shifted(frame, dx, dy), guess, params())
        errors.append(np.hypot(result.centre_xy[0] - reference[0] - dx, result.centre_xy[1] - reference[1] - dy))
    assert max(errors) < 0.1, errors


def test_hot_pixels_near_the_spots_do_not_move_the_centre(frame):
    rng = np.random.default_rng(7)
    reference = find_waffle_centre(frame, (75.0, 75.0), params()).centre_xy
    for trial in range(6):
        dx, dy = rng.uniform(-1.0, 1.0, 2)
        image = shifted(frame, dx, dy)
        peak = image.max()
        for sx, sy in [(41, 109), (109, 109), (41, 41), (109, 41)]:
            for _ in range(3):  # three hot pixels within 4 px of every spot, some brighter than the star
                hx, hy = sx + rng.integers(-4, 5), sy + rng.integers(-4, 5)
                image[hy, hx] += rng.uniform(0.5, 2.0) * peak
        image[60, 60] = np.nan
        result = find_waffle_centre(image, (75.0, 75.0), params())
        error = np.hypot(result.centre_xy[0] - reference[0] - dx, result.centre_xy[1] - reference[1] - dy)
        assert error < 0.1, (trial, error)
        assert result.n_masked_pixels >= 1


def test_faint_spots_in_noise(frame):
    """Spots 5x fainter relative to the halo and noise still give the centre to 0.1 px."""
    rng = np.random.default_rng(3)
    reference = find_waffle_centre(frame, (75.0, 75.0), params()).centre_xy
    background = np.median(frame)
    faint = background + (frame - background) / 5.0
    faint = faint + rng.normal(0, 0.02 * (np.max(faint) - background) / 5, frame.shape)
    dx, dy = 0.37, -0.61
    result = find_waffle_centre(shifted(faint, dx, dy), (75.5, 74.5), params())
    assert np.hypot(result.centre_xy[0] - reference[0] - dx, result.centre_xy[1] - reference[1] - dy) < 0.1


def test_no_spots_is_a_clear_error(frame):
    flat = np.full_like(frame, 100.0) + np.random.default_rng(0).normal(0, 1, frame.shape)
    with pytest.raises(CentringError):
        find_waffle_centre(flat, (75.0, 75.0), params(max_asymmetry_px=0.5))
    with pytest.raises(CentringError, match="outside the frame|edge"):
        find_waffle_centre(frame, (140.0, 140.0), params())
    with pytest.raises(ValueError, match="orientation"):
        params(orientation="*")
