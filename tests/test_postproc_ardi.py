"""RDI and ARDI with a reference library: frame selection, and the gain over ADI with little rotation.

A synthetic set-up where the physics is known: the science star and the "same night" reference stars share
one quasi-static speckle pattern (the instrument's aberrations), other references have another one (another
night), and the science sequence rotates by 4 degrees only, so ADI subtracts a close companion with itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from reduction.conventions import star_centre
from reduction.postproc import inject_companions, snr
from reduction.postproc.pipeline import (
    PostprocessParameters,
    PsfSubtractionParameters,
    postprocess,
    subtract_psf,
)
from reduction.postproc.rdi import select_reference_frames

SIZE, FWHM = 65, 4.0


def _psf() -> np.ndarray:
    yy, xx = np.indices((21, 21)) - 10
    return np.exp(-(xx**2 + yy**2) / (2 * (FWHM / 2.355) ** 2))


def _speckles(rng) -> np.ndarray:
    """A static halo with speckles of one FWHM (smoothed random field), brighter near the star."""
    cy, cx = star_centre((SIZE, SIZE))
    yy, xx = np.indices((SIZE, SIZE))
    r = np.hypot(yy - cy, xx - cx)
    field = ndimage.gaussian_filter(rng.normal(size=(SIZE, SIZE)), FWHM / 2.355)
    field /= field.std()
    return 200.0 * np.exp(-r / 8.0) * (1.0 + 0.8 * field)


def _cube(pattern, n, rng, noise=1.0) -> np.ndarray:
    """Frames of one star: its pattern with a slowly varying amplitude and white noise."""
    amplitude = 1.0 + 0.02 * rng.normal(size=(n, 1, 1))
    return pattern[None] * amplitude + noise * rng.normal(size=(n, SIZE, SIZE))


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(4)
    tonight, other_night = _speckles(rng), _speckles(rng)
    angles = np.linspace(0.0, 4.0, 30)  # 4 degrees of field rotation
    science = _cube(tonight, 30, rng)
    references = np.concatenate([_cube(other_night, 40, rng), _cube(tonight * 1.7, 40, rng)])
    return science, angles, references


def test_the_frames_of_the_same_speckle_pattern_are_selected_first(setup):
    science, _angles, references = setup
    frames, order = select_reference_frames(science, references, 40, FWHM, 10 * FWHM)
    assert frames.shape == (40, SIZE, SIZE)
    assert set(order.tolist()) == set(range(40, 80))  # the 40 of tonight's pattern, not the other night's
    with pytest.raises(ValueError, match="n_frames"):
        select_reference_frames(science, references, 0, FWHM, 10 * FWHM)


def test_rdi_and_ardi_beat_adi_close_in_with_little_rotation(setup):
    science, angles, references = setup
    r, theta, flux = 2.5 * FWHM, 30.0, 60.0
    cube = inject_companions(science, _psf(), angles, flux, r, theta)
    cy, cx = star_centre((SIZE, SIZE))
    xy = (cx + r * math.cos(math.radians(theta)), cy + r * math.sin(math.radians(theta)))
    library, _ = select_reference_frames(cube, references, 40, FWHM, 10 * FWHM)
    measured = {}
    for algorithm in ("pca", "rdi", "ardi"):
        params = PsfSubtractionParameters(algorithm=algorithm, ncomp=3)
        reference = None if algorithm == "pca" else library
        residuals = subtract_psf(cube, angles, params, fwhm=FWHM, reference_cube=reference).residuals
        measured[algorithm] = snr(np.nan_to_num(residuals), xy, FWHM).snr
    # ADI at 2.5 FWHM with 4 degrees: the companion moves by 0.17 FWHM and is subtracted with itself
    assert measured["rdi"] > 3 * max(measured["pca"], 1.0), measured
    assert measured["ardi"] > 3 * max(measured["pca"], 1.0), measured
    with pytest.raises(ValueError, match="needs a reference library"):
        subtract_psf(cube, angles, PsfSubtractionParameters(algorithm="ardi"), fwhm=FWHM)


def test_the_whole_post_processing_takes_a_library_and_selects_from_it(setup):
    science, angles, references = setup
    cube = inject_companions(science, _psf(), angles, 60.0, 2.5 * FWHM, 30.0)
    params = PostprocessParameters(
        subtraction=PsfSubtractionParameters(algorithm="pca", ncomp=3, n_reference_frames=40),
        confirm_with="ardi",
        max_characterised=0,
    )
    result = postprocess(cube, angles, _psf(), 0.01225, params=params, reference_cube=references)
    (ardi,) = result.others
    assert ardi.algorithm == "ardi"
    found = [c for c in result.characterised if "ardi" in c.found_by]
    assert found and math.hypot(found[0].candidate.separation_px - 2.5 * FWHM, 0) < 1.0

    # ARDI's own limit is deeper than ADI's close in (2-3 FWHM): the gain reported by bench/bench_ardi.py
    def limit_at(curve, lo, hi):
        sep = np.asarray(curve.separation_px)
        close = (sep >= lo * FWHM) & (sep <= hi * FWHM)
        return float(np.nanmedian(np.asarray(curve.flux_limit)[close]))

    assert limit_at(ardi.contrast, 2, 3) < 0.5 * limit_at(result.contrast, 2, 3)


def test_ardi_equals_vip_annular_pca_with_a_reference_cube():
    """ARDI is vip's pca_annular(cube_ref=...): reference frames plus the science frames past the threshold."""
    vip_psfsub = pytest.importorskip("vip_hci.psfsub")
    from reduction.postproc import pca_annular

    rng = np.random.default_rng(5)
    pattern = ndimage.gaussian_filter(rng.normal(size=(41, 41)), 1.5) * 5
    cube = pattern[None] + rng.normal(size=(24, 41, 41))
    reference = 1.3 * pattern[None] + rng.normal(size=(30, 41, 41))
    angles = np.linspace(-5, 25, 24)
    ours = pca_annular(cube, angles, 4.0, ncomp=4, asize=5, delta_rot=0.5, radius_int=4, reference=reference)
    theirs = vip_psfsub.pca_annular(
        cube,
        angles,
        cube_ref=reference,
        fwhm=4,
        ncomp=4,
        asize=5,
        delta_rot=0.5,
        radius_int=4,
        verbose=False,
        full_output=True,
    )
    assert ours.algorithm == "ardi-annular-pca" and not ours.skipped_annuli
    np.testing.assert_allclose(ours.residual_cube, theirs[1], atol=0.03 * np.abs(theirs[1]).max())
    np.testing.assert_allclose(ours.residuals, theirs[2], atol=0.03 * np.abs(theirs[1]).max())
