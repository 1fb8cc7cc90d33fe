"""Negative tests: wrong inputs give clear errors (TypeError for kinds/dimensions, ValueError for values)."""

from __future__ import annotations

import numpy as np
import pytest

from reduction.postproc import (
    cadi,
    characterise,
    contrast_curve,
    detect_candidates,
    inject_companions,
    negfc_fit,
    normalize_psf,
    pca_adi,
    pca_annular,
    pca_asdi,
    pca_rdi,
    snr,
    snr_map,
)
from reduction.postproc.pipeline import (
    DetectionParameters,
    PostprocessParameters,
    PsfSubtractionParameters,
    postprocess,
)

RNG = np.random.default_rng(0)
CUBE = RNG.normal(size=(10, 31, 31))
ANGLES = np.linspace(0, 45, 10)
YY, XX = np.mgrid[:9, :9]
PSF = np.exp(-((XX - 4) ** 2 + (YY - 4) ** 2) / (2 * 1.6**2))


def algo(c, a):
    return pca_adi(c, a, 2).residuals


ADI_CALLS = {
    "pca": lambda c, a: pca_adi(c, a, 2),
    "annular": lambda c, a: pca_annular(c, a, 4.0, 2),
    "cadi": lambda c, a: cadi(c, a),
    "rdi": lambda c, a: pca_rdi(c, a, CUBE, 2),
    "inject": lambda c, a: inject_companions(c, PSF, a, 1.0, 8.0, 30.0),
    "contrast": lambda c, a: contrast_curve(c, a, PSF, 4.0, algo),
    "negfc": lambda c, a: negfc_fit(c, a, PSF, 4.0, (25.0, 15.0)),
    "postprocess": lambda c, a: postprocess(c, a, PSF, 0.01),
}


@pytest.mark.parametrize("name", sorted(ADI_CALLS))
def test_mismatched_angle_count(name):
    with pytest.raises(ValueError, match="9 values but the cube has 10 frames"):
        ADI_CALLS[name](CUBE, ANGLES[:9])


@pytest.mark.parametrize("name", sorted(ADI_CALLS))
def test_nans_in_cube(name):
    cube = CUBE.copy()
    cube[3, 5, 7] = np.nan
    with pytest.raises(ValueError, match=r"cube contains 1 non-finite value\(s\).*\(3, 5, 7\)"):
        ADI_CALLS[name](cube, ANGLES)


@pytest.mark.parametrize("name", sorted(ADI_CALLS))
def test_nans_in_angles(name):
    angles = ANGLES.copy()
    angles[2] = np.nan
    with pytest.raises(ValueError, match="angles contains 1 non-finite"):
        ADI_CALLS[name](CUBE, angles)


@pytest.mark.parametrize("name", sorted(ADI_CALLS))
@pytest.mark.parametrize("shape", [(31, 31), (2, 10, 31, 31)])
def test_wrong_dimensionality(name, shape):
    with pytest.raises(TypeError, match=r"cube must be a 3-D array \(t, y, x\), got \d-D"):
        ADI_CALLS[name](np.zeros(shape), ANGLES)


def test_2d_angles_are_accepted_like_vip():
    res = pca_adi(CUBE, ANGLES[:, None], 2)  # naco_betapic_pa.fits is (61, 1)
    assert res.residuals.shape == (31, 31)
    with pytest.raises(TypeError, match="1-D vector"):
        pca_adi(CUBE, np.zeros((5, 2)), 2)


def test_psf_larger_than_frame():
    big = np.ones((41, 41))
    for call in (
        lambda: inject_companions(CUBE, big, ANGLES, 1.0, 8.0, 0.0),
        lambda: contrast_curve(CUBE, ANGLES, big, 4.0, algo),
        lambda: negfc_fit(CUBE, ANGLES, big, 4.0, (25.0, 15.0)),
        lambda: postprocess(CUBE, ANGLES, big, 0.01),
    ):
        with pytest.raises(ValueError, match=r"psf \(41x41 px\) is larger than the frames \(31x31 px\)"):
            call()


def test_bad_psf_and_parameters():
    with pytest.raises(ValueError, match="all zeros"):
        inject_companions(CUBE, np.zeros((9, 9)), ANGLES, 1.0, 8.0, 0.0)
    with pytest.raises(TypeError, match="psf must be a 2-D"):
        inject_companions(CUBE, np.ones(9), ANGLES, 1.0, 8.0, 0.0)
    with pytest.raises(ValueError, match="non-finite"):
        normalize_psf(np.full((9, 9), np.nan))
    with pytest.raises(ValueError, match="ncomp=11 is larger than the 10 frames"):
        pca_adi(CUBE, ANGLES, 11)
    with pytest.raises(TypeError, match="ncomp must be an integer"):
        pca_adi(CUBE, ANGLES, 2.5)
    with pytest.raises(ValueError, match="ncomp must be >= 1"):
        pca_adi(CUBE, ANGLES, 0)
    with pytest.raises(ValueError, match="collapse_mode"):
        pca_adi(CUBE, ANGLES, 2, collapse_mode="max")
    with pytest.raises(ValueError, match="fwhm must be > 0"):
        pca_annular(CUBE, ANGLES, -1.0, 2)
    with pytest.raises(ValueError, match="at or beyond the frame edge"):
        inject_companions(CUBE, PSF, ANGLES, 1.0, 16.0, 0.0)
    with pytest.raises(ValueError, match="reference frames are"):
        pca_rdi(CUBE, ANGLES, np.zeros((5, 21, 21)) + 1, 2)
    with pytest.raises(ValueError, match="within 1 FWHM"):
        negfc_fit(CUBE, ANGLES, PSF, 4.0, (16.0, 15.0))
    with pytest.raises(ValueError, match="algorithm must be one of"):
        PsfSubtractionParameters(algorithm="loci")
    with pytest.raises(ValueError, match="threshold_on"):
        DetectionParameters(threshold_on="sigma")
    with pytest.raises(TypeError, match="unknown parameter"):
        PostprocessParameters.from_dict({"recentre": True})


def test_bad_frames_for_detection():
    with pytest.raises(TypeError, match="frame must be a 2-D image"):
        snr_map(CUBE, 4.0)
    with pytest.raises(TypeError, match="frame must be a 2-D image"):
        detect_candidates(CUBE, 4.0)
    with pytest.raises(ValueError, match="fwhm must be > 0"):
        snr(CUBE[0], (25.0, 15.0), 0.0)
    with pytest.raises(TypeError, match="numeric array"):
        snr_map("frame.fits", 4.0)


def test_asdi_inputs():
    cube4 = RNG.normal(size=(3, 10, 31, 31))
    with pytest.raises(ValueError, match="2 wavelengths for a cube with 3 channels"):
        pca_asdi(cube4, ANGLES, [1.0, 1.1], 1)
    with pytest.raises(TypeError, match=r"4-D array \(λ, t, y, x\)"):
        pca_asdi(CUBE, ANGLES, [1.0, 1.1, 1.2], 1)
    with pytest.raises(ValueError, match="wavelengths must be > 0"):
        pca_asdi(cube4, ANGLES, [1.0, -1.1, 1.2], 1)
    with pytest.raises(ValueError, match="mode must be one of"):
        pca_asdi(cube4, ANGLES, [1.0, 1.1, 1.2], 1, mode="triple")


def test_characterise_checks_like_negfc_fit():
    with pytest.raises(ValueError, match="fmerit must be one of"):
        characterise(CUBE, ANGLES, PSF, 4.0, (25.0, 15.0), fmerit="l1")
