"""Detection limits on the NACO β Pic planet-free cube (tutorial: PCA 19 PCs, starphot 764939.6, 5 sigma)."""

from __future__ import annotations

import numpy as np
import pytest

from reduction.conventions import star_centre
from reduction.postproc import contrast_curve, inject_companions, noise_per_annulus, pca_adi, snr

from .test_postproc_data import PIXEL_SCALE, STARPHOT, naco_planet_free, naco_prepared, require_naco

NCOMP = 19


def algorithm(cube, angles):
    return pca_adi(cube, angles, NCOMP).residuals


@pytest.fixture(scope="module")
def naco_curve():
    require_naco()
    _, angles, npsf = naco_prepared()
    free = naco_planet_free()
    return (
        free,
        angles,
        npsf,
        contrast_curve(free, angles, npsf.psf, npsf.fwhm, algorithm, star_flux=STARPHOT, pixel_scale=PIXEL_SCALE),
    )


def test_noise_per_annulus_equals_vip():
    vip_metrics = pytest.importorskip("vip_hci.metrics")
    frame = np.random.default_rng(2).normal(size=(61, 61))
    ours = noise_per_annulus(frame, 1.0, 4.2)
    theirs = vip_metrics.noise_per_annulus(frame, 1.0, 4.2)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_contrast_curve_agrees_with_vip(naco_curve):
    """Same algorithm (PCA, 19 PCs) and parameters: within 20 % from 2 to 15 FWHM (the frame ends at ~10)."""
    vip = pytest.importorskip("vip_hci")
    free, angles, npsf, ours = naco_curve
    table = vip.metrics.contrast_curve(
        free,
        angles,
        npsf.psf,
        npsf.fwhm,
        PIXEL_SCALE,
        STARPHOT,
        vip.psfsub.pca,
        ncomp=NCOMP,
        plot=False,
        verbose=False,
        nproc=1,
    )
    np.testing.assert_allclose(ours.separation_px, table["distance"].to_numpy())
    sel = (ours.separation_px >= 2 * npsf.fwhm) & (ours.separation_px <= 15 * npsf.fwhm)
    assert sel.sum() > 30
    ratio = ours.contrast[sel] / table["sensitivity_student"].to_numpy()[sel]
    assert np.all(np.abs(ratio - 1) <= 0.20), ratio
    np.testing.assert_allclose(ours.separation_arcsec, ours.separation_px * PIXEL_SCALE)


@pytest.mark.slow
def test_contrast_curve_is_monotone_beyond_two_fwhm(naco_curve):
    """Non-increasing beyond 2 FWHM, up to the statistical error of the noise estimate at each separation.

    The noise is a standard deviation of n = 2πr/FWHM aperture fluxes; its relative
    1-sigma error is 1/sqrt(2(n-1)), so a rise smaller than that is not a feature.
    """
    _, _, npsf, curve = naco_curve
    sel = curve.separation_px >= 2 * npsf.fwhm
    c = curve.contrast[sel]
    n = np.floor(2 * np.pi * curve.separation_px[sel] / npsf.fwhm)
    allowed = 1.0 / np.sqrt(2 * (n[1:] - 1))
    rises = c[1:] / c[:-1] - 1
    assert np.all(rises <= allowed), rises
    assert c[-1] < 0.1 * c[0]  # and it really decreases
    assert np.all(curve.throughput[sel] > 0) and np.all(curve.throughput[sel] < 1.2)


@pytest.mark.slow
def test_fake_companions_at_the_5_sigma_limit_are_recovered(naco_curve):
    """Injected at the 5-sigma contrast at three separations: S/N >= 5 in at least two."""
    free, angles, npsf, curve = naco_curve
    fwhm = npsf.fwhm
    recovered = 0
    cy, cx = star_centre(free.shape[-2:])
    for sep_fwhm, theta in [(3.0, 100.0), (5.0, 200.0), (8.0, 300.0)]:
        sep = sep_fwhm * fwhm
        flux = float(np.interp(sep, curve.separation_px, curve.contrast)) * STARPHOT
        cube = inject_companions(free, npsf.psf, angles, flux, sep, theta)
        x, y = cx + sep * np.cos(np.deg2rad(theta)), cy + sep * np.sin(np.deg2rad(theta))
        recovered += snr(algorithm(cube, angles), (x, y), fwhm).snr >= 5
    assert recovered >= 2


def test_contrast_curve_without_star_flux_gives_flux_limits():
    rng = np.random.default_rng(0)
    cube = rng.normal(size=(20, 41, 41))
    angles = np.linspace(0, 90, 20)
    yy, xx = np.mgrid[:11, :11]
    psf = np.exp(-((xx - 5) ** 2 + (yy - 5) ** 2) / (2 * 1.7**2))
    curve = contrast_curve(cube, angles, psf, 4.0, lambda c, a: pca_adi(c, a, 3).residuals)
    assert curve.contrast is None and curve.separation_arcsec is None
    good = np.isfinite(curve.flux_limit)
    assert good.sum() > 5 and np.all(curve.flux_limit[good] > 0)
