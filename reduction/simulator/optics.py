"""Fourier optics of SPHERE behind the VLT: pupil, phase screens, PSFs.

Everything is computed with matrix Fourier transforms (MFT, Soummer et al.
2007, Opt. Express 15, 15935): the image of a pupil field ``E`` sampled on an
``npup x npup`` grid of step ``dx`` (metres) is

``Ẽ(θy, θx) = Σ_yx E(y, x) exp(-2iπ (θy·y + θx·x) / λ)``

evaluated directly on the detector pixels, so that each DBI band is sampled at
its own λ/D with the instrument's pixel scale, the star sits at an exact
sub-pixel position and no resampling is ever done. The intensity in photons
per pixel for a source of ``F`` photons is ``F |Ẽ|² dx⁴ p² / (λ² Σ|P|² dx²)``
(Fraunhofer + Parseval), ``p`` the pixel scale in radians.

Models (all deliberately simple, documented in ``reduction.simulator``):

* pupil: VLT UT3 as seen by SPHERE, 8.0 m, 14 % central obstruction, four
  spiders of 4 cm in the VLT's X (±50.5° from the x axis), anti-aliased;
* quasi-static aberrations: an f^-2 OPD screen (static over a night, fixed in
  the pupil frame, i.e. on the detector in pupil tracking) plus a slowly
  evolving part;
* AO residuals (SAXO-like): von Kármán turbulence with r0 from the seeing,
  uncorrected above the control radius (20 cycles/pupil), servo-lag filtered
  below it along the wind (the "butterfly"), plus WFS noise and tip-tilt jitter;
  ``n_sub`` independent screens are averaged per frame (long exposure);
* ideal coronagraph (Cavarroc et al. 2006): the coherent part, the projection
  of the field on the pupil mode, is subtracted;
* waffle (CENTER frames): the DM phase ``a cos(2π f x) cos(2π f y)`` with
  ``f = 10·0.97/D``, i.e. four spots along the diagonals at ``10√2·0.97 λ/D``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

#: Telescope diameter seen by SPHERE (m) and central obstruction (linear ratio).
PUPIL_DIAMETER_M = 8.0
CENTRAL_OBSTRUCTION = 0.14
SPIDER_WIDTH_M = 0.04
SPIDER_ANGLES_DEG = (50.5, 129.5, 230.5, 309.5)
#: SAXO control radius in cycles per pupil (41x41 actuators).
CONTROL_RADIUS_CPP = 20.0
#: Waffle frequency in cycles per pupil along x and y: spots at sqrt(2)*this λ/D.
WAFFLE_CPP = 10.0 * 0.97
#: Outer scale of turbulence (m).
OUTER_SCALE_M = 25.0
#: Effective servo-lag of SAXO (s), 1.38 kHz loop.
SERVO_LAG_S = 2.0e-3
#: WFS noise, rms OPD inside the control radius (m).
WFS_NOISE_RMS_M = 15e-9
#: Residual tip-tilt jitter, rms per axis (arcsec).
TT_JITTER_ARCSEC = 0.0015

MAS = math.pi / 180.0 / 3600.0 / 1000.0


def r0_from_seeing(seeing_arcsec: float, wavelength_m: float = 0.5e-6) -> float:
    """Fried parameter (m) at ``wavelength_m`` for a seeing FWHM (arcsec) at 500 nm."""
    r0_500 = 0.98 * 0.5e-6 / (seeing_arcsec * math.pi / 180.0 / 3600.0)
    return r0_500 * (wavelength_m / 0.5e-6) ** 1.2


@dataclass(frozen=True)
class Pupil:
    """A sampled pupil: grey-level amplitude on an ``npup x npup`` grid."""

    npup: int
    dx: float  #: grid step (m)
    amplitude: np.ndarray  #: (npup, npup) float32, 0..1
    x: np.ndarray  #: (npup,) coordinates of the columns (m), centred on 0
    area_m2: float  #: Σ|P|² dx²

    @property
    def support(self) -> np.ndarray:
        return self.amplitude > 0


def make_pupil(npup: int, oversample: int = 4) -> Pupil:
    """The VLT pupil on ``npup`` samples across 8.0 m, anti-aliased by ``oversample``."""
    dx = PUPIL_DIAMETER_M / npup
    n = npup * oversample
    fine = (np.arange(n) - (n - 1) / 2.0) * (dx / oversample)
    yy, xx = np.meshgrid(fine, fine, indexing="ij")
    r = np.hypot(xx, yy)
    mask = (r <= PUPIL_DIAMETER_M / 2) & (r >= CENTRAL_OBSTRUCTION * PUPIL_DIAMETER_M / 2)
    for angle in SPIDER_ANGLES_DEG:
        a = math.radians(angle)
        along = xx * math.cos(a) + yy * math.sin(a)
        across = -xx * math.sin(a) + yy * math.cos(a)
        mask &= ~((along > 0) & (np.abs(across) < SPIDER_WIDTH_M / 2))
    amp = mask.reshape(npup, oversample, npup, oversample).mean(axis=(1, 3)).astype(np.float32)
    x = (np.arange(npup) - (npup - 1) / 2.0) * dx
    return Pupil(npup=npup, dx=dx, amplitude=amp, x=x, area_m2=float(np.sum(amp.astype(float) ** 2) * dx * dx))


class ScreenGenerator:
    """Random OPD screens (metres) on a pupil grid, by FFT filtering of white noise.

    Screens are drawn on a ``2 npup`` periodic grid and cropped, so the pupil
    does not see the periodicity; one complex FFT yields two independent screens.
    """

    def __init__(self, pupil: Pupil):
        self.pupil = pupil
        self.n = 2 * pupil.npup
        self.df = 1.0 / (self.n * pupil.dx)
        f = sfft.fftfreq(self.n, d=pupil.dx)
        self.fy, self.fx = np.meshgrid(f, f, indexing="ij")
        self.f = np.hypot(self.fx, self.fy)
        self.fc = CONTROL_RADIUS_CPP / PUPIL_DIAMETER_M
        support = pupil.support
        self._support = support
        self._wsum = float(support.sum())
        # tip/tilt basis on the pupil (to add jitter), unit = radians of sky angle -> OPD = θ·x
        yy, xx = np.meshgrid(pupil.x, pupil.x, indexing="ij")
        self._xx = xx.astype(np.float32)
        self._yy = yy.astype(np.float32)

    # -- power spectra (OPD, m² m²) --------------------------------------------
    def von_karman_psd(self, r0_500: float) -> np.ndarray:
        """OPD PSD of the turbulence (m² per (1/m)²), independent of wavelength."""
        phase = 0.023 * r0_500 ** (-5.0 / 3.0) * (self.f**2 + 1.0 / OUTER_SCALE_M**2) ** (-11.0 / 6.0)
        return phase * (0.5e-6 / (2 * math.pi)) ** 2

    def ao_residual_psd(self, r0_500: float, wind_ms: float, wind_angle_rad: float, tau0_s: float) -> np.ndarray:
        """SAXO-like residual: fitting error outside fc, servo-lag + noise inside."""
        turb = self.von_karman_psd(r0_500)
        # effective wind from tau0 (Roddier: tau0 = 0.314 r0 / v), projected on the wind direction
        v = max(0.314 * r0_500 / tau0_s, 0.5 * wind_ms)
        vx, vy = v * math.cos(wind_angle_rad), v * math.sin(wind_angle_rad)
        lag = (2 * math.pi * SERVO_LAG_S * (self.fx * vx + self.fy * vy)) ** 2
        inside = (np.abs(self.fx) <= self.fc) & (np.abs(self.fy) <= self.fc)
        psd = np.where(inside, turb * np.minimum(lag + 0.002, 1.0), turb)
        noise_density = WFS_NOISE_RMS_M**2 / (2 * self.fc) ** 2
        psd = psd + np.where(inside, noise_density, 0.0)
        psd[0, 0] = 0.0
        return psd

    @staticmethod
    def static_psd_shape(f: np.ndarray, f0: float) -> np.ndarray:
        out = 1.0 / (f**2 + f0**2)
        out[0, 0] = 0.0
        return out

    # -- draws ----------------------------------------------------------------
    def draw(self, rng: np.random.Generator, psd: np.ndarray, count: int) -> np.ndarray:
        """``count`` screens (count, npup, npup) float32 with the given PSD."""
        npup = self.pupil.npup
        amp = np.sqrt(psd) * self.df
        out = np.empty((count, npup, npup), dtype=np.float32)
        n_fft = (count + 1) // 2
        noise = rng.standard_normal((n_fft, self.n, self.n), dtype=np.float32) + 1j * rng.standard_normal(
            (n_fft, self.n, self.n), dtype=np.float32
        )
        noise *= amp.astype(np.float32)
        screens = sfft.ifft2(noise, axes=(-2, -1), workers=1) * (self.n * self.n)
        for k in range(count):
            part = screens[k // 2].real if k % 2 == 0 else screens[k // 2].imag
            out[k] = part[:npup, :npup]
        return out

    def remove_piston_tilt(self, screen: np.ndarray) -> np.ndarray:
        """Project out piston, tip and tilt over the pupil (the star stays where it is put)."""
        s = self._support
        basis = np.stack([np.ones(int(s.sum())), self._xx[s], self._yy[s]], axis=1).astype(float)
        coeffs, *_ = np.linalg.lstsq(basis, screen[s].astype(float), rcond=None)
        return (screen - coeffs[0] - coeffs[1] * self._xx - coeffs[2] * self._yy).astype(np.float32)

    def normalise_rms(self, screen: np.ndarray, rms_m: float) -> np.ndarray:
        """Remove piston, tip and tilt and scale to ``rms_m`` over the pupil support."""
        s = self._support
        screen = self.remove_piston_tilt(screen)
        current = float(np.sqrt(np.mean(screen[s] ** 2)))
        return (screen * (rms_m / current if current > 0 else 0.0)).astype(np.float32)

    def static(self, rng: np.random.Generator, rms_m: float, count: int = 1) -> np.ndarray:
        """Quasi-static NCPA-like screens: f^-2 spectrum, ``rms_m`` each."""
        psd = self.static_psd_shape(self.f, 1.0 / PUPIL_DIAMETER_M)
        screens = self.draw(rng, psd, count)
        return np.stack([self.normalise_rms(s, rms_m) for s in screens])

    def tilt(self, tx_rad: float, ty_rad: float) -> np.ndarray:
        """OPD of a tilt moving the image by (tx, ty) radians on the sky (x, y)."""
        return (tx_rad * self._xx + ty_rad * self._yy).astype(np.float32)

    def ao_residuals(
        self,
        rng: np.random.Generator,
        seeing_arcsec: float,
        tau0_s: float,
        wind_ms: float,
        wind_angle_rad: float,
        count: int,
    ) -> np.ndarray:
        """``count`` AO residual screens, with tip-tilt jitter."""
        psd = self.ao_residual_psd(r0_from_seeing(seeing_arcsec), wind_ms, wind_angle_rad, tau0_s)
        screens = self.draw(rng, psd, count)
        # the tip-tilt loop (and the DTTS) keep the star centred: only the jitter below remains
        screens = np.stack([self.remove_piston_tilt(s) for s in screens])
        jitter = rng.normal(0.0, TT_JITTER_ARCSEC * 1000 * MAS, size=(count, 2))
        for k in range(count):
            screens[k] += self.tilt(jitter[k, 0], jitter[k, 1])
        return screens

    def open_loop(self, rng: np.random.Generator, seeing_arcsec: float, count: int) -> np.ndarray:
        """Uncorrected turbulence (AO loop open), with a large tip-tilt."""
        screens = self.draw(rng, self.von_karman_psd(r0_from_seeing(seeing_arcsec)), count)
        jitter = rng.normal(0.0, 0.08 * 1000 * MAS, size=(count, 2))
        for k in range(count):
            screens[k] += self.tilt(jitter[k, 0], jitter[k, 1])
        return screens


def waffle_opd(pupil: Pupil, amplitude_m: float) -> np.ndarray:
    """The SPHERE waffle: ``a cos(2π f x) cos(2π f y)``, spots along the diagonals."""
    k = 2 * math.pi * WAFFLE_CPP / PUPIL_DIAMETER_M
    c = np.cos(k * pupil.x)
    return (amplitude_m * np.outer(c, c)).astype(np.float32)


class Imager:
    """MFT imaging of a pupil field onto detector pixels for one wavelength."""

    def __init__(self, pupil: Pupil, wavelength_um: float, pixel_scale_arcsec: float):
        self.pupil = pupil
        self.wavelength_m = wavelength_um * 1e-6
        self.pixel_rad = pixel_scale_arcsec * 1000 * MAS
        self.norm = pupil.dx**4 * self.pixel_rad**2 / (self.wavelength_m**2 * pupil.area_m2)
        self._amp = pupil.amplitude.astype(np.complex64)

    @property
    def lambda_over_d_px(self) -> float:
        return self.wavelength_m / PUPIL_DIAMETER_M / self.pixel_rad

    def field(self, opd_m: np.ndarray) -> np.ndarray:
        """Pupil field(s) ``P exp(2iπ OPD/λ)`` (complex64), OPD (..., npup, npup)."""
        phase = (2 * math.pi / self.wavelength_m) * opd_m
        return self._amp * np.exp(1j * phase.astype(np.float32)).astype(np.complex64)

    def coronagraph(self, field: np.ndarray) -> np.ndarray:
        """Ideal coronagraph: subtract the projection of the field on the pupil mode."""
        amp = self.pupil.amplitude
        w = float(np.sum(amp.astype(float) ** 2))
        coeff = np.tensordot(field, amp, axes=([-2, -1], [0, 1])) / w
        return field - coeff[..., None, None].astype(np.complex64) * self._amp

    def _matrix(self, offsets_px: np.ndarray) -> np.ndarray:
        theta = offsets_px * self.pixel_rad
        return np.exp((-2j * math.pi / self.wavelength_m) * np.outer(theta, self.pupil.x)).astype(np.complex64)

    def image(self, field: np.ndarray, ny: int, nx: int, centre_yx: tuple[float, float]) -> np.ndarray:
        """Mean intensity (fraction of the source photons per pixel) over the leading axis.

        ``field`` is (n, npup, npup); the output grid is ``ny x nx`` pixels with
        the source (the optical axis) at ``centre_yx`` in that grid.
        """
        ay = self._matrix(np.arange(ny) - centre_yx[0])
        ax = self._matrix(np.arange(nx) - centre_yx[1])
        out = np.zeros((ny, nx), dtype=np.float32)
        for f in field:
            e = ay @ f @ ax.T
            out += e.real**2 + e.imag**2
        return out * np.float32(self.norm / len(field))
