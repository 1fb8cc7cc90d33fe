"""Master calibrations on synthetic detector frames with known properties."""

from __future__ import annotations

import numpy as np
import pytest

from reduction.calibration import (
    CalibrationError,
    bad_pixel_map,
    correct_bad_pixels,
    master_dark,
    master_flat,
)

RNG = np.random.default_rng(11)
SHAPE = (64, 80)
BIAS, DARK_CURRENT, READ_NOISE = 1000.0, 3.0, 4.0  # ADU, ADU/s, ADU


def darks(dit, n, hot=()):
    frames = BIAS + DARK_CURRENT * dit + RNG.normal(0, READ_NOISE, (n, *SHAPE))
    for y, x in hot:
        frames[:, y, x] += 5000.0
    return frames


def test_master_dark_level_noise_and_hot_pixels():
    hot = [(3, 4), (40, 70), (10, 10)]
    result = master_dark(darks(10.0, 8, hot), 10.0)
    assert result.level_adu == pytest.approx(BIAS + DARK_CURRENT * 10.0, abs=0.5)
    # read noise of one frame, estimated to ~3 % with 8 frames x 5120 pixels
    assert result.read_noise_adu == pytest.approx(READ_NOISE, rel=0.05)
    assert {tuple(p) for p in np.argwhere(result.hot_pixels)} == set(hot)
    longer = master_dark(darks(40.0, 4), 40.0)
    slope = (longer.level_adu - result.level_adu) / 30.0
    assert slope == pytest.approx(DARK_CURRENT, rel=0.02)


def test_master_flat_from_several_dits_recovers_the_response():
    truth = 1 + RNG.normal(0, 0.015, SHAPE)
    truth[5, 5] = 0.05  # dead
    truth[20, 30] = 2.5  # over-responding
    dits = [1.0, 1.0, 2.0, 2.0, 4.0, 4.0]
    lamp = 2000.0  # ADU/s
    frames = np.array([BIAS + DARK_CURRENT * d + lamp * d * truth + RNG.normal(0, READ_NOISE, SHAPE) for d in dits])
    result = master_flat(frames, dits)
    good = ~(result.dead_pixels | result.hot_pixels)
    assert result.dead_pixels[5, 5] and result.hot_pixels[20, 30] and good.sum() == truth.size - 2
    ratio = result.flat[good] / (truth[good] / np.median(truth[good]))
    assert np.std(ratio) < 0.002  # photon + read noise of the fit
    assert result.rms == pytest.approx(0.015, rel=0.1)
    assert result.counts_adu == pytest.approx(BIAS + 4 * DARK_CURRENT + 4 * lamp, rel=0.02)
    with pytest.raises(CalibrationError, match="single DIT needs a dark"):
        master_flat(frames[:2], dits[:2])
    with pytest.raises(CalibrationError, match="5 DITs for 6 frames"):
        master_flat(frames, dits[:5])


def test_bad_pixel_map_and_correction():
    dark = master_dark(darks(10.0, 5, [(7, 7)]), 10.0)
    frames = np.array([1 + 0.0 * RNG.normal(size=SHAPE) for _ in range(4)]) * 1000 * np.arange(1, 5)[:, None, None]
    flat_truth = np.ones(SHAPE)
    flat_truth[30, 40] = 0.0
    flat = master_flat(frames * flat_truth + BIAS, [1, 2, 3, 4])
    bpm = bad_pixel_map([dark], flat)
    assert bpm.mask[7, 7] and bpm.mask[30, 40] and bpm.n_hot == 1 and bpm.n_dead == 1
    image = np.fromfunction(lambda y, x: 3 * x + 2 * y, SHAPE)
    broken = image.copy()
    broken[bpm.mask] = 1e6
    fixed = correct_bad_pixels(broken, bpm.mask)
    assert np.allclose(fixed[bpm.mask], image[bpm.mask], atol=1e-9)  # a plane: the median is exact
    cube = np.stack([broken, broken * 2])
    assert np.allclose(correct_bad_pixels(cube, bpm.mask)[1][bpm.mask], 2 * image[bpm.mask])


def test_wrong_shapes_are_refused():
    with pytest.raises(CalibrationError, match="expected frames"):
        master_dark(np.zeros((2, 2, 3, 4)), 1.0)


@pytest.mark.parametrize("n", range(1, 10))
def test_stack_median_equals_numpy(n):
    """The fast per-pixel median (networks for n <= 4, a sort above) is numpy's median, NaN included."""
    from reduction.calibration import stack_median

    rng = np.random.default_rng(n)
    stack = rng.integers(0, 65535, size=(n, 40, 50)).astype(np.float32)
    np.testing.assert_allclose(stack_median(stack), np.median(stack.astype(float), axis=0), rtol=1e-6)
    if n == 1:
        return  # a NaN pixel of a single frame has no median
    stack[0, 3, 4] = np.nan
    np.testing.assert_allclose(stack_median(stack), np.nanmedian(stack.astype(float), axis=0), rtol=1e-6)
