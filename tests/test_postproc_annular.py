"""Annular PCA-ADI with a rotation threshold, on the NACO β Pic cube and on synthetic data.

Published (SOURCES.md): annular PCA, ncomp=15, asize=4, delta_rot=0.5 gives
S/N 8.817 for β Pic b; the issue asks for S/N >= 5. vip-hci 2.1.1 raises in
the innermost annulus (too few frames beyond the rotation threshold); here it
is skipped with a logged reason.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from reduction.postproc import pca_annular, snr
from reduction.postproc.annular import annuli_geometry, library_indices, pa_threshold

from .test_postproc_data import PUBLISHED_SNR_ANNULAR15, naco_prepared, require_naco


@pytest.mark.slow
def test_naco_annular_pca_detects_b_and_skips_the_inner_annulus(caplog):
    require_naco()
    cube, angles, npsf = naco_prepared()
    with caplog.at_level(logging.WARNING, logger="reduction.postproc.annular"):
        res = pca_annular(cube, angles, npsf.fwhm, ncomp=15, asize=4, delta_rot=0.5)
    s = snr(np.nan_to_num(res.residuals), (62, 62), npsf.fwhm).snr
    assert s >= 5
    assert s == pytest.approx(PUBLISHED_SNR_ANNULAR15, rel=0.15)
    skipped = res.skipped_annuli
    assert [a.index for a in skipped] == [0]
    assert "rotation threshold" in skipped[0].reason and "skipped" in skipped[0].reason
    assert any("annulus 0" in r.getMessage() for r in caplog.records)
    rho = np.hypot(*np.mgrid[-50:51, -50:51])
    assert np.all(np.isnan(res.residuals[rho < 4]))
    assert np.all(np.isfinite(res.residuals[(rho >= 4) & (rho < 44)]))


def test_vip_raises_where_we_skip():
    """The condition we skip on is the one vip-hci 2.1.1 raises on (library smaller than min_frames_lib)."""
    vip_psfsub = pytest.importorskip("vip_hci.psfsub")
    rng = np.random.default_rng(0)
    cube = rng.normal(size=(20, 31, 31))
    angles = np.linspace(0, 30, 20)
    with pytest.raises(RuntimeError, match="Too few frames"):
        vip_psfsub.pca_annular(cube, angles, fwhm=4, ncomp=3, asize=4, delta_rot=1.0, verbose=False)
    res = pca_annular(cube, angles, 4.0, ncomp=3, asize=4, delta_rot=1.0)
    assert res.skipped_annuli and res.skipped_annuli[0].index == 0
    assert np.isfinite(res.residuals[15, 29])


def test_geometry_and_library_follow_vip():
    assert pa_threshold(18.0, 4.6, 0.5) == pytest.approx(np.rad2deg(2 * np.arctan(0.5 * 4.6 / 36)))
    annuli = annuli_geometry((101, 101), 0, 4)
    assert len(annuli) == 12 and annuli[0] == (0.0, 4.0) and annuli[-1] == (43.0, 47.0)
    angles = np.linspace(0, 60, 31)  # 2 deg steps
    lib = library_indices(angles, 15, 10.0, 200)
    assert set(lib) == set(range(0, 11)) | set(range(20, 31))
    assert library_indices(angles, 15, 10.0, 4).size == 4  # truncated to the closest in angle
    assert library_indices(angles, 3, 0.0, 200).size == 31


def test_annular_equals_vip_on_a_synthetic_cube():
    """Same per-annulus model as vip (no skipped annulus when radius_int clears the centre)."""
    vip_psfsub = pytest.importorskip("vip_hci.psfsub")
    rng = np.random.default_rng(4)
    from scipy import ndimage

    pattern = ndimage.gaussian_filter(rng.normal(size=(41, 41)), 1.5) * 5
    cube = pattern[None] + rng.normal(size=(24, 41, 41))
    angles = np.linspace(-20, 60, 24)
    ours = pca_annular(cube, angles, 4.0, ncomp=4, asize=5, delta_rot=0.5, radius_int=4)
    theirs = vip_psfsub.pca_annular(
        cube, angles, fwhm=4, ncomp=4, asize=5, delta_rot=0.5, radius_int=4, verbose=False, full_output=True
    )
    np.testing.assert_allclose(ours.residual_cube, theirs[1], atol=0.03 * np.abs(theirs[1]).max())
    np.testing.assert_allclose(ours.residuals, theirs[2], atol=0.03 * np.abs(theirs[1]).max())
