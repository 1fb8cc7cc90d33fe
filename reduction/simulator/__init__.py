"""A realistic simulated raw SPHERE archive, with its ground truth beside it.

>>> from reduction.simulator import simulate_archive, load_truth
>>> truth = simulate_archive("/tmp/archive", nights=3, seed=0, window=256)   # doctest: +SKIP
>>> truth = load_truth("/tmp/archive")                                         # doctest: +SKIP

Layout written under ``out_dir``::

    raw/<night>/SPHER.<DATE-OBS>.fits   one file per exposure, NDIT frames, uint16 (BZERO 32768)
    truth.json                          SimulationTruth (see reduction.simulator.truth)
    truth/flat_map.fits                 IRDIS detector truth: FLAT, DARK, BIAS, HOT, DEAD (full detector)
    truth/flat_map_ifs.fits             the same for IFS
    programmes.ecsv                     the programme database export (PIs, co-Is, proprietary months)

What is simulated (modules): the observing plan and calibration plan
(:mod:`~reduction.simulator.schedule`), Fourier optics of the VLT pupil with
quasi-static aberrations, AO residuals, an ideal coronagraph and the waffle
(:mod:`~reduction.simulator.optics`), the detectors (:mod:`~reduction.simulator.detector`),
a simplified IFS (:mod:`~reduction.simulator.ifs`), headers
(:mod:`~reduction.simulator.headers`) and the truth (:mod:`~reduction.simulator.truth`).

Simplifications (deliberate, documented): the IFS pixel content is a crude
lenslet/spectral-trace model; no IRDIS distortion/anamorphism, no Lyot stop,
no differential aberrations between the DBI bands, no detector non-linearity
or persistence; OBJECT files of an observation are spread over
``science_span_min`` with idle time between them (so few frames cover a
realistic field rotation); FLUX frames are taken with the star a few pixels
off the coronagraph (tip-tilt offset), at ``flux_centre_xy`` in the truth.
"""

from __future__ import annotations

from .archive import Renderer, expected_calibrations, simulate_archive, write_programmes_table
from .catalogue import TARGETS, Companion, Programme, Target, build_programmes, eso_period, programme_id
from .detector import Readout, Window, ifs_readout, irdis_readout
from .parameters import SimulationParameters
from .schedule import ArchivePlan, build_plan
from .truth import (
    ASSOCIATION_RULES,
    CalibrationMatch,
    CalibrationSequenceTruth,
    CompanionTruth,
    DegradedFrame,
    DetectorTruth,
    ExpectedCalibrations,
    ExpectedCounts,
    FileTruth,
    NightTruth,
    ObservationTruth,
    ProgrammeTruth,
    SimulationTruth,
    TargetTruth,
    load_truth,
)

__all__ = [
    "ASSOCIATION_RULES",
    "ArchivePlan",
    "CalibrationMatch",
    "CalibrationSequenceTruth",
    "Companion",
    "CompanionTruth",
    "DegradedFrame",
    "DetectorTruth",
    "ExpectedCalibrations",
    "ExpectedCounts",
    "FileTruth",
    "NightTruth",
    "ObservationTruth",
    "Programme",
    "ProgrammeTruth",
    "Readout",
    "Renderer",
    "SimulationParameters",
    "SimulationTruth",
    "TARGETS",
    "Target",
    "TargetTruth",
    "Window",
    "build_plan",
    "build_programmes",
    "eso_period",
    "expected_calibrations",
    "ifs_readout",
    "irdis_readout",
    "load_truth",
    "programme_id",
    "simulate_archive",
    "write_programmes_table",
]
