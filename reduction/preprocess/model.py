"""What pre-processing takes and gives: the observation's files, the parameters, the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..steps import StepParameters


class PreprocessingError(ValueError):
    """The observation cannot be pre-processed at all (the reason says why)."""


@dataclass(frozen=True)
class ObservationFiles:
    """Raw inputs of one observation, as the catalog's calibration links give them.

    DIT-keyed mappings use DITs rounded to 0.01 s.
    """

    instrument: str
    filter: str
    science: tuple[Path, ...]
    center: tuple[Path, ...] = ()
    flux: tuple[Path, ...] = ()
    skies: Mapping[float, tuple[Path, ...]] = field(default_factory=dict)
    backgrounds: Mapping[float, tuple[Path, ...]] = field(default_factory=dict)
    darks: Mapping[float, tuple[Path, ...]] = field(default_factory=dict)
    flats: tuple[Path, ...] = ()
    #: IFS only: SPECPOS,LAMP (spectra positions) and LAMP,WAVE (wavelength calibration) files.
    specpos: tuple[Path, ...] = ()
    wave: tuple[Path, ...] = ()

    def all_paths(self) -> list[Path]:
        paths = [*self.science, *self.center, *self.flux, *self.flats, *self.specpos, *self.wave]
        for mapping in (self.skies, self.backgrounds, self.darks):
            for group in mapping.values():
                paths.extend(group)
        return paths


@dataclass(frozen=True)
class PreprocessParameters(StepParameters):
    """Parameters of the pre-processing of one IRDIS DBI observation.

    Attributes
    ----------
    crop_px : int
        Side of the centred science frames (odd, so the star is on a pixel centre).
    psf_crop_px : int
        Side of the PSF image (odd).
    bad_pixel_box : int
        Neighbourhood for bad-pixel replacement.
    reject_sigma : float
        Frames whose halo flux deviates from the sequence median by more than this many
        robust sigmas *and* by more than ``reject_min_fraction`` are rejected.
    reject_min_fraction : float
        Smallest relative halo-flux deviation that can reject a frame.
    halo_inner_lod : float
        Inner radius (λ/D) of the annulus where the halo flux is measured.
    halo_outer_lod : float
        Outer radius (λ/D) of the annulus where the halo flux is measured.
    centre_search_px : float
        How far from the header's coronagraph position the waffle pattern is searched.
    header_centre_uncertainty_px : float
        Star-centre uncertainty (per axis, px) counted when the centre comes from the header's
        coronagraph position (SEQ CORO XC/YC) because the waffle spots were not found; at least 1 px.
    """

    crop_px: int = 201
    psf_crop_px: int = 31
    bad_pixel_box: int = 5
    reject_sigma: float = 5.0
    reject_min_fraction: float = 0.15
    halo_inner_lod: float = 3.0
    halo_outer_lod: float = 10.0
    centre_search_px: float = 40.0
    header_centre_uncertainty_px: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        self._at_least(header_centre_uncertainty_px=1.0)
        for name in ("crop_px", "psf_crop_px"):
            if getattr(self, name) % 2 == 0 or getattr(self, name) < 11:
                raise ValueError(f"{name} must be odd and >= 11")


@dataclass(frozen=True)
class FrameQuality:
    file: str
    index: int
    time_utc: str
    parang_deg: float
    derotation_deg: float
    halo_flux: float
    accepted: bool
    reason: str | None


@dataclass(frozen=True)
class ReducedCalibration:
    """A master calibration made for (and reusable by) observations that match it."""

    kind: str  #: master_background, master_dark, master_flat, bad_pixel_map, master_sky
    image: np.ndarray
    dit_s: float | None
    quality: dict[str, Any]
    input_sha256: tuple[str, ...]
    date_obs: str | None  #: first input's DATE-OBS


@dataclass(frozen=True)
class CalibratedObservation:
    """The result of pre-processing one observation (see the module docstring)."""

    cube: np.ndarray  #: (λ, t, y, x) float32, accepted frames only
    derotation_deg: np.ndarray  #: (t,) vip-hci convention
    parallactic_deg: np.ndarray  #: (t,)
    wavelengths_um: tuple[float, ...]
    psf: np.ndarray | None  #: (λ, y, x), flux in a 1-FWHM-diameter aperture = 1
    fwhm_px: tuple[float, ...] | None
    star_flux: tuple[float, ...] | None  #: per λ: star flux (1-FWHM aperture) in science-frame ADU
    centres_file_xy: tuple[tuple[float, float], ...] | None  #: per λ, in the files' data arrays
    centres_detector_xy: tuple[tuple[float, float], ...] | None
    frames: tuple[FrameQuality, ...]
    calibrations: dict[str, dict[str, Any]]  #: name -> quality numbers
    reduced_calibrations: dict[str, ReducedCalibration]
    pixel_scale_arcsec: float
    problems: tuple[str, ...]
    inputs: tuple[dict[str, str], ...]  #: path + sha256 of every raw file used
    #: how the star centre was found: ``waffle`` (CENTER frames), ``centre-from-header`` (SEQ CORO XC/YC),
    #: ``coronagraph-core`` (IFS: the dark core of the science frames)
    centre_status: str = "waffle"
    #: per λ: 1-sigma uncertainty of the star centre, per axis, in pixels of the cube
    centre_uncertainty_px: tuple[float, ...] | None = None
    #: per λ: relative 1-sigma uncertainty of ``star_flux`` (:class:`~.photometry.PsfPhotometry`)
    star_flux_rel_err: tuple[float, ...] | None = None

    @property
    def n_rejected(self) -> int:
        return sum(1 for f in self.frames if not f.accepted)
