"""S/N (Mawet et al. 2014) of one position and the fast S/N map, against vip-hci's exact functions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, stats

from reduction.postproc import pca_adi, snr, snr_map
from reduction.postproc.snr import aperture_centres, fpf_from_snr, n_apertures, snr_threshold_for_significance

from .test_postproc_data import naco_prepared, require_naco


def correlated_noise(shape, seed=0, smooth=1.2):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.normal(size=shape), smooth)


def test_snr_equals_vip_snr():
    vip_metrics = pytest.importorskip("vip_hci.metrics")
    frame = correlated_noise((61, 61), seed=1)
    frame[20:23, 40:43] += 0.5
    for xy in [(41.0, 21.0), (41.3, 21.6), (12.0, 30.0), (30.0, 37.5)]:
        ours = snr(frame, xy, 4.2)
        assert ours.snr == pytest.approx(vip_metrics.snr(frame, xy, 4.2), abs=1e-9)
    ours = snr(frame, (41.0, 21.0), 4.2, exclude_negative_lobes=True)
    theirs = vip_metrics.snr(frame, (41.0, 21.0), 4.2, exclude_negative_lobes=True)
    assert ours.snr == pytest.approx(theirs, abs=1e-9)


def test_aperture_layout_and_fpf():
    xs, ys = aperture_centres((51, 51), 35.0, 25.0, 4.0)
    assert len(xs) == n_apertures(10.0, 4.0) == int(np.floor(np.pi / np.arcsin(0.2)))
    sep = np.hypot(xs - 25, ys - 25)
    np.testing.assert_allclose(sep, 10.0)
    gaps = np.hypot(np.diff(xs), np.diff(ys))
    assert np.all(gaps >= 4.0 - 1e-9)  # non-overlapping 1xFWHM apertures
    m = snr(np.random.default_rng(0).normal(size=(51, 51)), (35.0, 25.0), 4.0)
    assert m.fpf == pytest.approx(stats.t.sf(m.snr, m.n_apertures - 1))
    assert fpf_from_snr(5.0, 6) > fpf_from_snr(5.0, 60)  # small samples: fewer apertures, larger FPF
    # the S/N needed for 5 sigma grows towards the star (Mawet et al. 2014, Fig. 5)
    thresholds = snr_threshold_for_significance(5.0, np.array([1, 2, 5, 10]) * 4.0, 4.0)
    assert np.all(np.diff(thresholds) < 0) and thresholds[-1] > 5.0
    with pytest.raises(ValueError, match="too close to the star"):
        snr(np.zeros((51, 51)), (26.0, 25.0), 4.0)


def test_snr_map_equals_vip_exact_map_on_noise():
    vip_metrics = pytest.importorskip("vip_hci.metrics")
    frame = correlated_noise((45, 45), seed=3, smooth=0.8)
    frame[30, 12] += 2.0
    theirs = vip_metrics.snrmap(frame, 4.0, nproc=1, verbose=False)
    ours = snr_map(frame, 4.0)
    assert np.max(np.abs(ours - theirs)) <= 1e-3
    np.testing.assert_array_equal(ours == 0, theirs == 0)  # same pixels computed


@pytest.mark.slow
def test_snr_map_equals_vip_exact_map_on_naco_residuals():
    require_naco()
    vip_metrics = pytest.importorskip("vip_hci.metrics")
    cube, angles, npsf = naco_prepared()
    frame = pca_adi(cube, angles, 20).residuals[20:81, 20:81]  # 61x61 around the star (vip: ~10 s)
    theirs = vip_metrics.snrmap(frame, npsf.fwhm, nproc=1, verbose=False)
    ours = snr_map(frame, npsf.fwhm)
    assert np.max(np.abs(ours - theirs)) <= 1e-3
    exact = snr_map(frame, npsf.fwhm, tolerance=0)  # all pixels with exact photometry
    assert np.max(np.abs(exact - theirs)) <= 1e-9


def test_snr_map_marks_pixels_next_to_nan():
    frame = correlated_noise((41, 41), seed=4)
    rho = np.hypot(*np.mgrid[-20:21, -20:21])
    frame[rho < 6] = np.nan  # e.g. a skipped inner annulus
    out = snr_map(frame, 4.0)
    assert np.all(np.isnan(out[(rho >= 4) & (rho < 6)]))
    assert np.all(np.isnan(out[(rho >= 6) & (rho < 7)]))  # apertures reach into the NaNs
    assert np.all(np.isfinite(out[(rho > 10) & (rho < 15)]))
