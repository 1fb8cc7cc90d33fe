"""A deliberately simplified SPHERE IFS: spectra of a lenslet array on the detector.

What it is: a square lenslet lattice (pitch 14.1 px on the detector, 12.25 mas
on the sky) rotated by atan(1/3) so that vertical spectra of 39 pixels (one
per spectral channel, wavelength increasing with y) fall between their
neighbours, as on the real IFS. Each lenslet's spectrum is the flux of the
scene on that lenslet at each channel: an analytic coronagraphic PSF (a
residual core, an AO halo and a static speckle field whose pattern scales
with λ), the four waffle spots of CENTER frames at ``10√2·0.97 λ/D``, an
unocculted core for FLUX frames, companions as Gaussians of FWHM λ/D, and the
sky. LAMP,WAVE lights every lenslet with the calibration lasers
(0.9877, 1.1237, 1.3094 µm, and 1.5451 µm in YJH), SPECPOS,LAMP with a flat
continuum, FLAT,LAMP is a uniform detector illumination.

What it is not: there is no real IFS optics (no hexagonal lenslets, no
diffraction by the lenslets, no cross-talk, no distortion). It is enough to
exercise ingest, calibration association and the IFS bookkeeping of the
pipeline, and to see a star and its companions in the raw frames.

Lenslet-space coordinates ``(u, v)`` are in lenslets, the IFS reduced-cube
axes; a companion at sky ``(sep, PA)`` is at
``sky_to_frame_xy(sep/12 mas, PA, α_IFS, (v0, u0))`` with
``α_IFS = PARANG + SphereIfs.derotation_offset_deg()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from reduction.instruments.sphere import SphereIfs

from .detector import Readout

LENSLET_PITCH_PX = math.sqrt(200.0)
LATTICE_ROTATION_RAD = math.atan(1.0 / 3.0)
N_CHANNELS = 39
TRACE_SIGMA_PX = 0.8
#: Lenslet pitch on the sky (mas): 141 lenslets over the 1.73" field. The reduced
#: cubes are resampled to 7.46 mas (SphereIfs.pixel_scale_mas); raw lenslets are coarser.
LENSLET_MAS = SphereIfs.lenslet_scale_mas.value
LASER_LINES_UM = {"OBS_YJ": (0.9877, 1.1237, 1.3094), "OBS_H": (0.9877, 1.1237, 1.3094, 1.5451)}
WAFFLE_RADIUS_LD = 10.0 * math.sqrt(2.0) * 0.97


def channel_wavelengths(mode: str) -> np.ndarray:
    lo, hi = SphereIfs.filters[mode].wavelengths_um
    return np.linspace(lo, hi, N_CHANNELS)


@dataclass
class IfsGeometry:
    """Where each lenslet's spectrum falls in a read-out (full-detector origin ``centre_xy``)."""

    readout: Readout
    centre_xy: tuple[float, float]

    def __post_init__(self):
        ny, nx = self.readout.shape
        w = self.readout.windows[0]
        half = math.hypot(w.nx, w.ny) / LENSLET_PITCH_PX / 2 + 3
        lo, hi = -int(half) - 1, int(half) + 2
        i, j = np.meshgrid(np.arange(lo, hi), np.arange(lo, hi), indexing="xy")
        i = i.ravel()
        j = j.ravel()
        c, s = math.cos(LATTICE_ROTATION_RAD), math.sin(LATTICE_ROTATION_RAD)
        # detector position of each lenslet's spectrum centre, in file pixels
        x = self.centre_xy[0] - w.x0 + LENSLET_PITCH_PX * (c * i - s * j)
        y = self.centre_xy[1] - w.y0 + LENSLET_PITCH_PX * (s * i + c * j)
        keep = (x > -3) & (x < nx + 2) & (y > -N_CHANNELS / 2 - 1) & (y < ny + N_CHANNELS / 2 + 1)
        self.u = i[keep].astype(np.float32)
        self.v = j[keep].astype(np.float32)
        self.x = x[keep]
        self.y = y[keep]
        self.shape = (ny, nx)
        # painting indices: lenslet x channel x 5 columns
        cols = np.rint(self.x)[:, None, None] + np.arange(-2, 3)[None, None, :]
        rows = np.rint(self.y - N_CHANNELS / 2 + 0.5)[:, None, None] + np.arange(N_CHANNELS)[None, :, None]
        weights = np.exp(-0.5 * ((cols - self.x[:, None, None]) / TRACE_SIGMA_PX) ** 2)
        weights /= weights.sum(axis=2, keepdims=True)
        full = (self.x.size, N_CHANNELS, 5)
        weights = np.broadcast_to(weights, full)
        rows = np.broadcast_to(rows, full)
        cols = np.broadcast_to(cols, full)
        inside = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
        self._flat_index = (rows * nx + cols)[inside].astype(np.int64)
        self._weights = weights
        self._inside = inside

    @property
    def n_lenslets(self) -> int:
        return int(self.u.size)

    def paint(self, spectra: np.ndarray) -> np.ndarray:
        """Detector image (ny, nx) from per-lenslet spectra (n_lenslets, N_CHANNELS)."""
        values = (spectra[:, :, None] * self._weights)[self._inside]
        ny, nx = self.shape
        return np.bincount(self._flat_index, weights=values, minlength=ny * nx).reshape(ny, nx).astype(np.float32)


def speckle_pattern(rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """A static random speckle-like intensity pattern on a grid of λ/D units (mean 1)."""
    field = rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))
    fy, fx = np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")
    field = np.fft.ifft2(np.fft.fft2(field) * np.exp(-(fx**2 + fy**2) / (2 * 0.06**2)))
    intensity = np.abs(field) ** 2
    return (intensity / intensity.mean()).astype(np.float32)


def scene_spectra(
    geom: IfsGeometry,
    wavelengths_um: np.ndarray,
    star_rate: np.ndarray,
    dit: float,
    kind: str,
    centre_uv: tuple[float, float],
    speckles: np.ndarray | None,
    companions: list[tuple[float, float, np.ndarray]],
    strehl: float,
    transmission: float = 1.0,
) -> np.ndarray:
    """Photo-electrons per lenslet and channel for an on-sky frame.

    ``kind`` is "science", "center" or "flux"; ``star_rate`` (e-/s per
    channel, whole star); ``companions`` are (u, v, contrast per channel).
    """
    from scipy.ndimage import map_coordinates

    du = geom.u[:, None] - centre_uv[0]
    dv = geom.v[:, None] - centre_uv[1]
    lam_d = (wavelengths_um * 1e-6 / 8.0 * 206264806.0 / LENSLET_MAS)[None, :]  # λ/D in lenslets
    r = np.hypot(du, dv) / lam_d  # in λ/D
    sigma = 0.45 * lam_d  # Gaussian core, lenslets
    core = np.exp(-0.5 * (du**2 + dv**2) / sigma**2) / (2 * math.pi * sigma**2)
    halo = (1.0 - strehl) * 0.6 / (math.pi * (3.0 * lam_d) ** 2) / (1.0 + (r / 3.0) ** 2) ** 1.6
    if speckles is not None:
        n = speckles.shape[0]
        coords = np.stack([(dv / lam_d + n / 2).ravel(), (du / lam_d + n / 2).ravel()])
        halo = halo * (0.6 + 0.8 * map_coordinates(speckles, coords, order=1, mode="wrap").reshape(halo.shape))
    if kind == "flux":
        image = strehl * core + halo
    else:
        image = 3e-3 * core + halo
    if kind == "center":
        for angle in (45.0, 135.0, 225.0, 315.0):
            a = math.radians(angle)
            su = centre_uv[0] + WAFFLE_RADIUS_LD * lam_d * math.cos(a)
            sv = centre_uv[1] + WAFFLE_RADIUS_LD * lam_d * math.sin(a)
            image = image + 4e-3 * strehl * np.exp(
                -0.5 * ((geom.u[:, None] - su) ** 2 + (geom.v[:, None] - sv) ** 2) / sigma**2
            ) / (2 * math.pi * sigma**2)
    for cu, cv, contrast in companions:
        image = image + contrast[None, :] * strehl * np.exp(
            -0.5 * ((geom.u[:, None] - cu) ** 2 + (geom.v[:, None] - cv) ** 2) / sigma**2
        ) / (2 * math.pi * sigma**2)
    return (image * star_rate[None, :] * dit * transmission).astype(np.float32)


def lamp_spectra(geom: IfsGeometry, mode: str, kind: str, rate: float, dit: float) -> np.ndarray:
    """Per-lenslet spectra of the lamp calibrations (``wave`` or ``specpos``)."""
    wl = channel_wavelengths(mode)
    if kind == "specpos":
        spectrum = np.full(N_CHANNELS, rate * dit, dtype=np.float32)
    else:
        step = wl[1] - wl[0]
        spectrum = np.zeros(N_CHANNELS, dtype=np.float32)
        for line in LASER_LINES_UM[mode]:
            spectrum += (rate * 4 * dit * np.exp(-0.5 * ((wl - line) / (0.7 * step)) ** 2)).astype(np.float32)
    return np.broadcast_to(spectrum, (geom.n_lenslets, N_CHANNELS))
