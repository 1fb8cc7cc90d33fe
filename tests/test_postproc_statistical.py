"""ANDROMEDA and PACO (vip-hci) as post-processing algorithms: their detection maps on the real NACO cube."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reduction.postproc import inject_companions
from reduction.postproc.pipeline import (
    CharacterisationParameters,
    PostprocessParameters,
    PostprocessStep,
    PsfSubtractionParameters,
    subtract_psf,
)

from .test_postproc_data import FAKE, PIXEL_SCALE, STARPHOT, naco_prepared, require_naco


def _position(r: float, theta: float, size: int) -> tuple[float, float]:
    c = size // 2
    return c + r * math.cos(math.radians(theta)), c + r * math.sin(math.radians(theta))


def _run(algorithm: str, cube, angles, psf):
    params = PostprocessParameters(
        subtraction=PsfSubtractionParameters(algorithm=algorithm),
        characterisation=CharacterisationParameters(n_injections=0),
        max_characterised=0,  # the maps are what is tested here
    )
    return PostprocessStep()(params, cube=cube, angles=angles, psf=psf, pixel_scale=PIXEL_SCALE, star_flux=STARPHOT)


def _found(result, xy, tolerance=1.0):
    return [
        c.candidate
        for c in result.characterised
        if math.hypot(c.candidate.x - xy[0], c.candidate.y - xy[1]) <= tolerance
    ]


@pytest.mark.slow
def test_andromeda_finds_beta_pic_b_and_an_injected_fake_within_a_pixel():
    require_naco()
    cube, angles, npsf = naco_prepared()
    cube = inject_companions(cube, npsf.psf, angles, FAKE["flux"], FAKE["r"], FAKE["theta"])
    result = _run("andromeda", cube, angles, npsf.psf)
    b = _found(result, (62.0, 62.0))
    fake = _found(result, _position(FAKE["r"], FAKE["theta"], cube.shape[-1]))
    assert b and b[0].snr >= 5, [(c.candidate.x, c.candidate.y, c.candidate.snr) for c in result.characterised]
    assert fake and fake[0].snr >= 5
    # its limits come from its own flux-uncertainty map: finite, decreasing outwards on average
    curve = result.contrast
    assert np.all(np.isfinite(curve.contrast)) and curve.contrast[:5].mean() > curve.contrast[-5:].mean()
    assert result.subtraction.algorithm == "andromeda" and "Cantalloube" in result.subtraction.notes[0]


@pytest.mark.slow
def test_paco_finds_beta_pic_b_and_an_injected_fake_within_a_pixel():
    """FastPACO on a 45-px crop: b and a fake, and a unit-variance map."""
    require_naco()
    cube, angles, npsf = naco_prepared()
    crop = cube[:, 50 - 22 : 50 + 23, 50 - 22 : 50 + 23]
    crop = inject_companions(crop, npsf.psf, angles, 400.0, 13.0, 240.0)
    result = _run("paco", crop, angles, npsf.psf)
    assert _found(result, (22 + 12.0, 22 + 12.0)), [(c.candidate.x, c.candidate.y) for c in result.characterised]
    assert _found(result, _position(13.0, 240.0, crop.shape[-1]))
    values = result.detection.snr_map[np.isfinite(result.detection.snr_map)]
    # PACO's S/N is Gaussian with unit variance under its model: most of the field is noise
    assert 0.7 < np.median(np.abs(values - np.median(values))) * 1.4826 < 1.4


def test_statistical_algorithms_give_maps_not_residual_images():
    with pytest.raises(ValueError, match="gives a detection map"):
        subtract_psf(np.zeros((4, 11, 11)), np.zeros(4), PsfSubtractionParameters(algorithm="paco"))


@pytest.mark.slow
def test_a_second_algorithm_confirms_candidates_and_gives_its_own_limit():
    """``confirm_with='andromeda'`` beside PCA on the real cube: b and a fake are found by both algorithms."""
    from reduction.postproc.tables import detections_table

    require_naco()
    cube, angles, npsf = naco_prepared()
    cube = inject_companions(cube, npsf.psf, angles, FAKE["flux"], FAKE["r"], FAKE["theta"])
    params = PostprocessParameters(
        subtraction=PsfSubtractionParameters(ncomp=20),
        characterisation=CharacterisationParameters(n_injections=0),
        confirm_with="andromeda",
    )
    result = PostprocessStep()(
        params, cube=cube, angles=angles, psf=npsf.psf, pixel_scale=PIXEL_SCALE, star_flux=STARPHOT
    )
    for xy in ((62.0, 62.0), _position(FAKE["r"], FAKE["theta"], cube.shape[-1])):
        found = [c for c in result.characterised if math.hypot(c.candidate.x - xy[0], c.candidate.y - xy[1]) <= 1.0]
        assert found and found[0].found_by == ("pca", "andromeda"), [
            (c.candidate.x, c.candidate.y, c.found_by) for c in result.characterised
        ]
    # every candidate says who found it; what PCA did not find comes after PCA's own, found by ANDROMEDA only
    labels = [c.found_by for c in result.characterised]
    assert all(labels) and all("pca" in f for f in labels[: len(result.detection.candidates)])
    assert all(f == ("andromeda",) for f in labels[len(result.detection.candidates) :])
    # those are flagged for a person, not fitted (their position and S/N are ANDROMEDA's)
    extra = result.characterised[len(result.detection.candidates) :]
    assert all(c.negfc is None and "not fitted" in c.note for c in extra)
    # ANDROMEDA's own limit, from its flux-uncertainty map, beside PCA's
    (other,) = result.others
    assert other.algorithm == "andromeda" and np.isfinite(other.contrast.contrast).any()
    table = detections_table(result, PIXEL_SCALE, STARPHOT)
    assert set(table["found_by"]) >= {"pca+andromeda"}


def test_confirm_with_is_checked():
    with pytest.raises(ValueError, match="unknown algorithm"):
        PostprocessParameters(confirm_with="andromeda,bogus")
    with pytest.raises(ValueError, match="the main algorithm"):
        PostprocessParameters(confirm_with="pca")
    with pytest.raises(ValueError, match="twice"):
        PostprocessParameters(confirm_with="andromeda, andromeda")
    assert PostprocessParameters(confirm_with=" andromeda , paco").other_algorithms == ("andromeda", "paco")
