"""Characterisation by negative fake companion: the tutorial's fake companion and β Pic b.

Published (SOURCES.md, VIP tutorial): a fake companion of flux 400 at r = 30.5 px,
θ = 240° (vip convention) in the re-centred cube; NEGFC simplex (30.622, 240.133,
371.5); MCMC r 30.67 [-0.28, +0.13], θ 239.999 [-0.16, +0.19], f 386.1 [-30, +28].
The planet-free cube was made with b at (16.583 px, 44.721°, 700).
"""

from __future__ import annotations

import numpy as np
import pytest

from reduction.conventions import star_centre
from reduction.postproc import characterise, inject_companions, negfc_fit, remove_companion, snr

from .test_postproc_data import (B_FLUX, B_SEPARATION_PX, B_THETA_DEG, FAKE, FAKE_MCMC, naco_prepared,
                                 require_naco)


def fake_companion_cube():
    cube, angles, npsf = naco_prepared()
    return inject_companions(cube, npsf.psf, angles, FAKE["flux"], FAKE["r"], FAKE["theta"]), angles, npsf


def within(value, published):
    centre, minus, plus = published
    return centre - minus <= value <= centre + plus


@pytest.mark.slow
def test_fake_companion_recovered_within_published_errors():
    require_naco()
    cube, angles, npsf = fake_companion_cube()
    cy, cx = star_centre(cube.shape[-2:])
    start = (34.75, 23.59)                      # SOURCES.md: where the fake lands (xy)
    assert np.hypot(start[0] - cx - FAKE["r"] * np.cos(np.deg2rad(FAKE["theta"])),
                    start[1] - cy - FAKE["r"] * np.sin(np.deg2rad(FAKE["theta"]))) < 0.01
    result = characterise(cube, angles, npsf.psf, npsf.fwhm, start, ncomp=15, n_injections=5)
    assert within(result.separation_px, FAKE_MCMC["r"])
    assert within(result.theta_deg, FAKE_MCMC["theta"])
    assert within(result.flux, FAKE_MCMC["flux"])
    assert result.success and result.pa_deg == pytest.approx((result.theta_deg - 90) % 360)
    unc = result.uncertainty
    assert unc is not None and unc.n_injections == 5
    # same order as the published MCMC intervals (r ~0.2 px, θ ~0.2°, f ~30)
    assert 0 < unc.total[0] < 1.0 and 0 < unc.total[1] < 1.0 and 0 < unc.total[2] < 100
    assert all(np.isfinite(unc.speckle)) and all(np.isfinite(unc.fit))
    # the truth is within 3 sigma of the fit
    assert abs(result.separation_px - FAKE["r"]) < 3 * unc.total[0]
    assert abs(result.flux - FAKE["flux"]) < 3 * unc.total[2]


@pytest.mark.slow
def test_beta_pic_b_negfc_and_planet_free_cube():
    require_naco()
    cube, angles, npsf = naco_prepared()
    result = negfc_fit(cube, angles, npsf.psf, npsf.fwhm, (61.8, 61.6), ncomp=20)
    assert result.separation_px == pytest.approx(B_SEPARATION_PX, abs=0.3)     # the 16.6 ± 0.3 px
    assert result.theta_deg == pytest.approx(B_THETA_DEG, abs=np.rad2deg(0.3 / B_SEPARATION_PX))
    assert result.flux == pytest.approx(B_FLUX, rel=0.1)
    free = remove_companion(cube, angles, npsf.psf, result)
    from reduction.postproc import pca_adi

    assert snr(pca_adi(free, angles, 20).residuals, (62, 62), npsf.fwhm).snr < 3


def test_negfc_on_synthetic_data_is_unbiased():
    """Known truth, moderate S/N: the fit lands within a few tenths of a pixel and ~10 % in flux."""
    rng = np.random.default_rng(11)
    from scipy import ndimage

    size, nt = 61, 30
    pattern = ndimage.gaussian_filter(rng.normal(size=(size, size)), 1.7) * 10
    cube = pattern[None] + ndimage.gaussian_filter(rng.normal(size=(nt, size, size)), (0, 1.2, 1.2))
    angles = np.linspace(-35, 45, nt)
    yy, xx = np.mgrid[:15, :15]
    psf = np.exp(-((xx - 7) ** 2 + (yy - 7) ** 2) / (2 * (4 / 2.3548) ** 2))
    from reduction.postproc import aperture_sums

    psf /= aperture_sums(psf, [7], [7], 2.0)[0]
    cube = inject_companions(cube, psf, angles, 25.0, 17.0, 130.0)
    cy, cx = star_centre((size, size))
    start = (cx + 17.4 * np.cos(np.deg2rad(131.0)), cy + 17.4 * np.sin(np.deg2rad(131.0)))
    result = negfc_fit(cube, angles, psf, 4.0, start, ncomp=5)
    assert result.separation_px == pytest.approx(17.0, abs=0.3)
    assert result.theta_deg == pytest.approx(130.0, abs=1.0)
    assert result.flux == pytest.approx(25.0, rel=0.15)
