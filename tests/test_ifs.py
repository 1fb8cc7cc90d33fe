"""IFS raw pre-processing (spectra positions, wavelengths, extraction) against the simulator's truth."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from reduction.instruments import SphereIfs
from reduction.preprocess import PreprocessingError, preprocess_observation
from reduction.preprocess.ifs import IfsCalibrationError, locate_spectra
from reduction.simulator import ifs as simulated_ifs
from reduction.simulator import simulate_archive

from .simulated import observation_files


@pytest.fixture(scope="module")
def ifs_observation(tmp_path_factory):
    """One night with noise and aberrations; a 1024-px IFS window holds the waffle spots."""
    root = tmp_path_factory.mktemp("ifs") / "archive"
    simulate_archive(root, nights=1, seed=5, window=512, ifs_window=1024)
    truth = json.loads((root / "truth.json").read_text())
    entry = next(e for e in truth["observations"] if e["instrument"] == "SPHERE-IFS")
    files = observation_files(root, truth, entry)
    return root, truth, entry, files, preprocess_observation(files)


def test_cube_has_the_instrument_channels_and_pixel_scale(ifs_observation):
    _root, _truth, entry, _files_, result = ifs_observation
    assert result.cube.ndim == 4 and result.cube.shape[0] == SphereIfs.n_channels == 39
    assert result.wavelengths_um == tuple(entry["wavelengths_um"])  # the same floats as the truth
    assert result.pixel_scale_arcsec == pytest.approx(entry["pixel_scale_arcsec"])
    assert np.all(np.isfinite(result.cube))
    assert result.psf is not None and result.psf.shape[0] == 39 and len(result.star_flux) == 39
    # diffraction: the PSF widens with λ (FWHM ∝ λ within 10 %)
    fwhm = np.array(result.fwhm_px)
    ratio = (fwhm[-1] / fwhm[0]) / (result.wavelengths_um[-1] / result.wavelengths_um[0])
    assert 0.9 < ratio < 1.1
    assert not any("waffle" in p for p in result.problems), result.problems


def test_wavelength_solution_matches_the_simulated_dispersion(ifs_observation):
    _root, _truth, entry, _files_, result = ifs_observation
    solution = result.calibrations["ifs_wavelength_solution"]
    step_nm = (entry["wavelengths_um"][1] - entry["wavelengths_um"][0]) * 1e3  # one channel per row
    assert solution["dispersion_nm_per_px"] == pytest.approx(step_nm, rel=2e-3)
    assert solution["line_rms_nm"] < 0.1 * step_nm
    assert solution["n_lenslets_unsolved"] <= 0.01 * solution["n_lenslets_solved"]
    positions = result.calibrations["ifs_spectra_positions"]
    assert positions["pitch_px"] == pytest.approx([simulated_ifs.LENSLET_PITCH_PX] * 2, abs=0.01)
    assert positions["rotation_deg"] == pytest.approx(math.degrees(simulated_ifs.LATTICE_ROTATION_RAD), abs=0.05)
    assert {"ifs_spectra_positions", "ifs_wavelength_solution"} <= set(result.reduced_calibrations)


def test_star_centre_matches_truth_to_0p1_cube_pixel(ifs_observation):
    _root, _truth, entry, _files_, result = ifs_observation
    found = np.array(result.centres_file_xy[0])
    true = np.array(entry["star_centre_file_xy"][0])
    # detector px -> lenslets -> cube pixels of 7.46 mas
    error_cube_px = (
        np.hypot(*(found - true))
        / simulated_ifs.LENSLET_PITCH_PX
        * SphereIfs.lenslet_scale_mas.value
        / SphereIfs.pixel_scale_mas.value
    )
    assert error_cube_px < 0.1


def test_angles_and_rejections_match_truth(ifs_observation):
    _root, truth, entry, _files_, result = ifs_observation
    expected = np.concatenate([truth["files"][n]["frame_derotation_deg"] for n in entry["files"]["science"]])
    ours = np.array([f.derotation_deg for f in result.frames])
    assert np.max(np.abs(ours - expected)) < 0.01
    degraded = {(d["file"], d["frame"]) for d in entry["degraded_frames"]}
    assert {(f.file, f.index) for f in result.frames if not f.accepted} == degraded
    assert result.cube.shape[1] == len(result.frames) - len(degraded)


def test_missing_ifs_calibrations_are_said(ifs_observation):
    _root, _truth, _entry, files, _result = ifs_observation
    with pytest.raises(PreprocessingError, match="SPECPOS"):
        preprocess_observation(dataclasses.replace(files, specpos=()))
    with pytest.raises(PreprocessingError, match="LAMP,WAVE"):
        preprocess_observation(dataclasses.replace(files, wave=()))
    # without CENTER frames the centre falls back to the halo, said loudly
    bare = preprocess_observation(dataclasses.replace(files, center=()))
    assert any("no OBJECT,CENTER" in p for p in bare.problems)
    assert any("coronagraphic residual core" in p for p in bare.problems)


def test_a_frame_without_the_lenslet_lattice_is_refused():
    rng = np.random.default_rng(1)
    with pytest.raises(IfsCalibrationError):
        locate_spectra(rng.normal(size=(256, 256)).astype(np.float32))
    # spectra on a hexagonal-like lattice (every other row shifted by half a pitch) do not fit
    image = np.zeros((512, 512), dtype=np.float32)
    for j, y in enumerate(range(40, 480, 45)):
        for x in np.arange(10 + (j % 2) * 7.0, 500, 14.0):
            image[y - 19 : y + 20, int(x)] = 100.0
    with pytest.raises(IfsCalibrationError):
        locate_spectra(image)
