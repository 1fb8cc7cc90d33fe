"""The knobs of the simulator, in one frozen dataclass."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date
from typing import Any


@dataclass(frozen=True)
class SimulationParameters:
    """Everything that decides what :func:`simulate_archive` writes.

    The archive is a pure function of these values (same parameters, same
    bytes). ``nights`` counts *all* nights: when ``archival_date`` is set and
    ``nights >= 2`` the first night is an archival one on that date (before the
    June 2021 keyword rename, public programme) and the others are consecutive
    nights from ``start_date``.
    """

    nights: int = 3
    seed: int = 0
    #: IRDIS window size per band (pixels); None = full 1024 x 2048 read-out.
    window: int | None = None
    #: IFS window; None = ``min(2048, 2 * window)`` (full 2048 x 2048 when ``window`` is None):
    #: IFS spectra need ~14 px per 12 mas lenslet, so the IFS needs a bigger window than IRDIS.
    ifs_window: int | None = None
    start_date: date = date(2026, 6, 1)
    archival_date: date | None = date(2016, 6, 5)
    #: NDIT of the OBJECT (science) cubes.
    frames_per_cube: int = 4
    #: OBJECT files per observation.
    science_files_per_ob: int = 6
    #: NDIT of CENTER, FLUX and SKY files.
    aux_ndit: int = 2
    #: NDIT of calibration files.
    calib_ndit: int = 2
    #: Files per dark/background calibration template.
    calib_files_per_sequence: int = 2
    #: Time over which the OBJECT files of an observation are spread (minutes).
    science_span_min: float = 60.0
    #: Simulate the IFS arm (IRDIFS observations and IFS calibrations).
    ifs: bool = True
    #: Limit the number of observing blocks per night (None = all slots).
    obs_per_night: int | None = None
    #: Write valid FITS with the right headers and shapes but no physics
    #: (bias level only): fast archives of many small files for ingest benchmarks.
    headers_only: bool = False
    #: Photon, read and dark noise (False = noiseless expectation, for tests).
    noise: bool = True
    #: Static aberrations, AO residuals and jitter (False = perfect optics).
    aberrations: bool = True
    #: Insert deliberately degraded frames (AO loop open, clouds).
    degraded_frames: bool = True
    #: Independent AO residual screens averaged per frame (long exposure).
    ao_realisations: int = 3
    #: Largest region (pixels) in which the PSF is computed in full-frame mode.
    psf_box: int = 512
    #: BLAS threads used by the matrix Fourier transforms (None = library default).
    blas_threads: int | None = 1

    def __post_init__(self):
        if self.nights < 1:
            raise ValueError("nights must be >= 1")
        if self.frames_per_cube < 1 or self.aux_ndit < 1 or self.calib_ndit < 1:
            raise ValueError("NDIT values must be >= 1")
        if self.science_files_per_ob < 1:
            raise ValueError("science_files_per_ob must be >= 1")
        if self.window is not None and not 16 <= self.window <= 1024:
            raise ValueError("window must be between 16 and 1024 pixels (or None)")

    @property
    def effective_ifs_window(self) -> int | None:
        if self.ifs_window is not None:
            return self.ifs_window
        return None if self.window is None else min(2048, 2 * self.window)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, date):
                out[key] = value.isoformat()
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SimulationParameters":
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in values.items():
            if key not in names:
                continue
            if key in ("start_date", "archival_date") and isinstance(value, str):
                value = date.fromisoformat(value)
            kwargs[key] = value
        return cls(**kwargs)
