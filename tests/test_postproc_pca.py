"""PSF subtraction: full-frame PCA-ADI, cADI, RDI and ASDI.

Tolerances: the published S/N of β Pic b with full-frame PCA, 20 PCs (11.06,
SOURCES.md) within 15 %; agreement with vip-hci run in the same process on
the same data for the model (residual cube) and the S/N.
"""

from __future__ import annotations

import numpy as np
import pytest

from reduction.conventions import star_centre
from reduction.postproc import cadi, inject_companions, pca_adi, pca_asdi, pca_rdi, snr
from reduction.postproc.pca import pca_residuals

from .test_postproc_data import PUBLISHED_SNR_PCA20, naco_prepared, require_naco


def synthetic_cube(nt=40, size=61, seed=0, speckle_amp=5.0, noise=1.0):
    """Quasi-static speckles (fixed in the pupil frame, slowly varying) plus white noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = star_centre((size, size))
    rho = np.hypot(yy - cy, xx - cx)
    from scipy import ndimage

    base = ndimage.gaussian_filter(rng.normal(size=(size, size)), 1.5) * speckle_amp * np.exp(-rho / 25)
    drift = ndimage.gaussian_filter(rng.normal(size=(size, size)), 1.5) * speckle_amp * 0.2 * np.exp(-rho / 25)
    t = np.linspace(-1, 1, nt)[:, None, None]
    cube = base[None] + t * drift[None] + rng.normal(size=(nt, size, size)) * noise
    return cube


def gaussian_psf(size=15, fwhm=4.0):
    yy, xx = np.mgrid[:size, :size]
    c = size // 2
    psf = np.exp(-((xx - c) ** 2 + (yy - c) ** 2) / (2 * (fwhm / 2.3548) ** 2))
    from reduction.postproc import aperture_sums

    return psf / aperture_sums(psf, [c], [c], fwhm / 2)[0]


@pytest.mark.slow
def test_naco_pca20_snr_matches_published_and_vip():
    require_naco()
    vip = pytest.importorskip("vip_hci")
    cube, angles, npsf = naco_prepared()
    ours = pca_adi(cube, angles, ncomp=20)
    s = snr(ours.residuals, (62, 62), npsf.fwhm).snr
    assert s == pytest.approx(PUBLISHED_SNR_PCA20, rel=0.15)
    theirs = vip.psfsub.pca(cube, angles, ncomp=20, verbose=False, full_output=True)
    # the same model: identical non-derotated residuals
    np.testing.assert_allclose(pca_residuals(cube, 20), theirs[3], atol=1e-8 * np.abs(theirs[3]).max())
    s_vip = vip.metrics.snr(theirs[0], (62, 62), npsf.fwhm)
    assert s == pytest.approx(s_vip, rel=0.05)  # the speed criterion's "equal S/N"
    np.testing.assert_allclose(ours.residuals, theirs[0], atol=0.02 * np.abs(theirs[0]).max())


def test_pca_recovers_an_injected_companion():
    cube = synthetic_cube()
    angles = np.linspace(-30, 50, cube.shape[0])
    psf = gaussian_psf()
    with_fc = inject_companions(cube, psf, angles, 40.0, 15.0, 120.0)
    res = pca_adi(with_fc, angles, ncomp=3)
    cy, cx = star_centre(res.residuals.shape)
    x, y = cx + 15 * np.cos(np.deg2rad(120)), cy + 15 * np.sin(np.deg2rad(120))
    assert snr(res.residuals, (x, y), 4.0).snr > 5
    assert abs(snr(pca_adi(cube, angles, ncomp=3).residuals, (x, y), 4.0).snr) < 5
    assert res.residual_cube.shape == cube.shape and res.algorithm == "pca"


def test_cadi_subtracts_the_static_pattern():
    cube = synthetic_cube(speckle_amp=20.0)
    angles = np.linspace(-30, 50, cube.shape[0])
    res = cadi(cube, angles)
    assert np.std(res.residuals) < 0.2 * np.std(cube.mean(axis=0))
    psf = gaussian_psf()
    with_fc = inject_companions(cube, psf, angles, 40.0, 18.0, 30.0)
    cy, cx = star_centre(cube.shape[-2:])
    xy = (cx + 18 * np.cos(np.deg2rad(30)), cy + 18 * np.sin(np.deg2rad(30)))
    assert snr(cadi(with_fc, angles).residuals, xy, 4.0).snr > 5


def test_rdi_uses_the_reference_library():
    """Speckles shared with other stars' frames: RDI removes them without any rotation."""
    science = synthetic_cube(seed=1)
    reference = synthetic_cube(seed=1, nt=30)[::-1] + np.random.default_rng(9).normal(size=(30, 61, 61))
    angles = np.zeros(science.shape[0])  # no field rotation: ADI alone cannot work
    psf = gaussian_psf()
    with_fc = inject_companions(science, psf, angles, 30.0, 14.0, 200.0)
    cy, cx = star_centre(science.shape[-2:])
    xy = (cx + 14 * np.cos(np.deg2rad(200)), cy + 14 * np.sin(np.deg2rad(200)))
    rdi = pca_rdi(with_fc, angles, reference, ncomp=3)
    assert snr(rdi.residuals, xy, 4.0).snr > 5
    assert rdi.parameters["n_reference"] == 30
    adi = pca_adi(with_fc, angles, ncomp=3)
    assert snr(adi.residuals, xy, 4.0).snr < 3  # self-subtracted without rotation


def test_rdi_equals_vip():
    vip = pytest.importorskip("vip_hci")
    science = synthetic_cube(seed=2, nt=20, size=41)
    reference = synthetic_cube(seed=3, nt=25, size=41)
    angles = np.linspace(0, 40, 20)
    ours = pca_residuals(science, 5, reference=reference)
    theirs = vip.psfsub.pca(science, angles, cube_ref=reference, ncomp=5, verbose=False, full_output=True)[3]
    np.testing.assert_allclose(ours, theirs, atol=1e-8 * np.abs(theirs).max())


def test_asdi_separates_speckles_from_a_companion():
    """Speckles scale with λ, the companion does not move: SDI (no rotation) and ASDI detect it."""
    nl, nt, size = 6, 12, 61
    lam = np.linspace(1.0, 1.6, nl)
    rng = np.random.default_rng(5)
    from scipy import ndimage

    from reduction.postproc.geometry import rescale_frames

    yy, xx = np.mgrid[:size, :size]
    cy, cx = star_centre((size, size))
    rho = np.hypot(yy - cy, xx - cx)
    pattern = ndimage.gaussian_filter(rng.normal(size=(size, size)), 1.3) * 8 * np.exp(-rho / 20)
    cube = np.empty((nl, nt, size, size))
    for k in range(nl):
        frame = rescale_frames(pattern[None], [lam[k] / lam[0]])[0]  # speckles move out with λ
        cube[k] = frame[None] + rng.normal(size=(nt, size, size)) * 0.5
    angles = np.zeros(nt)
    psf = gaussian_psf()
    for k in range(nl):
        cube[k] = inject_companions(cube[k], psf, angles, 6.0, 13.0, 60.0)
    xy = (cx + 13 * np.cos(np.deg2rad(60)), cy + 13 * np.sin(np.deg2rad(60)))
    single = pca_asdi(cube, angles, lam, ncomp=2, mode="single")
    double = pca_asdi(cube, angles, lam, ncomp=1, mode="double")
    assert snr(single.residuals, xy, 4.0).snr > 5
    assert snr(double.residuals, xy, 4.0).snr > 5
    plain = np.median(cube.mean(axis=0), axis=0)  # no speckle subtraction
    assert snr(plain, xy, 4.0).snr < 3


def test_residuals_at_some_columns_equal_the_full_projection():
    """NEGFC computes its PCA residuals only where its aperture reads them: the same numbers."""
    from reduction.postproc.pca import principal_components, project_out, project_out_columns, temporal_basis

    rng = np.random.default_rng(3)
    library = rng.normal(size=(30, 500)) + rng.normal(size=(30, 1)) * rng.normal(size=(1, 500)) * 5
    columns = np.sort(rng.choice(500, 60, replace=False))
    for ncomp in (1, 5, 30):
        full = project_out(library, principal_components(library, ncomp))[:, columns]
        vecs, _ = temporal_basis(library, ncomp)
        np.testing.assert_allclose(project_out_columns(library, vecs, columns), full, atol=1e-9)
