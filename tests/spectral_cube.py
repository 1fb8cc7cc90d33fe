"""A spectral ADI cube ``(λ, t, y, x)`` built on the real SPHERE IFS PSF, wavelengths and angles.

The PSF cube, the 39 YJ wavelengths and the 24 parallactic angles are VIP's V471 Tau IFS test data
(``../shared/data/sphere_ifs_v471tau_partial``, its SOURCES.md); its science cube is missing there,
so the coronagraphic residual is built here: a speckle pattern fixed to the pupil whose size scales
with λ (what ASDI relies on), slowly evolving between frames, and white noise. Companions have
distinct, non-flat contrast spectra (a red slope; a methane-like band at 1.12 µm), and an optional
*impostor* stays on the sky like a companion but moves outward with λ like a speckle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from reduction.conventions import star_centre
from reduction.postproc.geometry import rescale_frames
from reduction.postproc.inject import inject_companions
from reduction.postproc.psf import normalize_psf

from .conftest import reference_data_dir

FOLDER = "sphere_ifs_v471tau_partial"


def reference_folder() -> Path:
    """The folder of the real IFS data, or a skip saying why it is absent."""
    root = reference_data_dir()
    folder = root / FOLDER if root else None
    if folder is None or not (folder / "sphere_v471tau_psf.fits").is_file():
        where = folder or "no reference data folder"
        pytest.skip(f"the real SPHERE IFS PSF cube is absent ({where}; set HCDC_REFERENCE_DATA)")
    return folder


def methane_like(wavelengths, contrast: float, depth: float = 0.6) -> np.ndarray:
    """A contrast spectrum rising to the red with an absorption band at 1.12 µm (width 0.035 µm)."""
    lam = np.asarray(wavelengths, float)
    return contrast * (1 + 1.5 * (lam - lam.mean())) * (1 - depth * np.exp(-0.5 * ((lam - 1.12) / 0.035) ** 2))


def red_slope(wavelengths, contrast: float) -> np.ndarray:
    """A contrast spectrum three times brighter at the red end than at the blue end."""
    lam = np.asarray(wavelengths, float)
    return contrast * (0.5 + (lam - lam.min()) / np.ptp(lam))


@dataclass(frozen=True)
class Source:
    separation_px: float
    theta_deg: float
    spectrum: np.ndarray  # contrast per channel
    impostor: bool = False


@dataclass(frozen=True)
class SpectralCube:
    cube: np.ndarray
    angles: np.ndarray
    psfs: np.ndarray
    wavelengths: np.ndarray
    star_flux: np.ndarray
    sources: tuple[Source, ...]

    def truth_xy(self, source: Source) -> tuple[float, float]:
        cy, cx = star_centre(self.cube.shape[-2:])
        t = np.deg2rad(source.theta_deg)
        return cx + source.separation_px * np.cos(t), cy + source.separation_px * np.sin(t)


def real_ifs_inputs(size: int = 25):
    """(psfs, wavelengths, angles) of the real IFS data (skip when absent)."""
    folder = reference_folder()
    psfs = fits.getdata(folder / "sphere_v471tau_psf.fits").astype(float)
    wavelengths = fits.getdata(folder / "sphere_v471tau_wl.fits").astype(float).ravel()
    angles = fits.getdata(folder / "sphere_v471tau_pa.fits").astype(float).ravel()
    return psfs, wavelengths, angles


def spectral_cube(
    sources_spec: list[tuple[float, float, str, float]],
    *,
    size: int = 81,
    every_frame: int = 2,
    seed: int = 3,
    halo: float = 3e-3,
    noise: float = 2e-5,
    rotation_deg: float | None = None,
) -> SpectralCube:
    """Build the cube: ``sources_spec`` holds ``(separation px, theta deg, kind, contrast)`` with ``kind``
    one of ``methane``, ``red``, ``impostor`` (flat contrast, radius ∝ λ).

    Fluxes are in units of the star's 1xFWHM-aperture flux at the reddest channel (the real PSF cube's
    spectrum shapes the others); ``halo`` is the speckle level relative to the star's peak, ``noise``
    the white noise per pixel in those units. ``rotation_deg`` squeezes the real sequence's angles into
    that much field rotation (the same frames, their order and spacing kept).
    """
    rng = np.random.default_rng(seed)
    psfs_raw, wavelengths, angles = real_ifs_inputs()
    angles = angles[::every_frame]
    if rotation_deg is not None:
        angles = angles[0] + (angles - angles[0]) * rotation_deg / np.ptp(angles)
    nl, nt = wavelengths.size, angles.size
    normalized = [normalize_psf(p) for p in psfs_raw]
    # the star's flux in each channel follows the real PSF's aperture flux, normalised to 1 at the red end
    star_flux = np.array([n.aperture_flux for n in normalized])
    star_flux = star_flux / star_flux[-1]
    psfs = np.stack([n.psf for n in normalized])
    cy, cx = star_centre((size, size))
    yy, xx = np.indices((size, size))
    r = np.hypot(yy - cy, xx - cx)
    fwhm_red = normalized[-1].fwhm

    # speckles at the reddest channel: smoothed complex field, halo falling as r^-2.5 outside 2 FWHM
    def speckle_field() -> np.ndarray:
        field = rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))
        k = np.fft.fftfreq(size)
        kk = np.hypot(*np.meshgrid(k, k, indexing="ij"))
        smooth = np.fft.ifft2(np.fft.fft2(field) * np.exp(-0.5 * (kk * fwhm_red * 2.0) ** 2))
        return np.abs(smooth) ** 2

    envelope = halo * (1 + (r / (2 * fwhm_red)) ** 2) ** -1.25
    static = speckle_field()
    static *= envelope / static.mean()
    factors = wavelengths.max() / wavelengths  # channel k: the red pattern shrunk by 1 / factors
    cube = np.empty((nl, nt, size, size))
    for t in range(nt):
        evolving = speckle_field()
        frame = static * (1 + 0.02 * t / nt) + 0.15 * envelope * evolving / evolving.mean()
        shrunk = rescale_frames(np.repeat(frame[None], nl, axis=0), 1.0 / factors)
        cube[:, t] = shrunk * star_flux[:, None, None] * (factors[:, None, None] ** 2)
    cube += rng.normal(scale=noise, size=cube.shape)
    sources = []
    for sep, theta, kind, contrast in sources_spec:
        spectrum = {
            "methane": lambda: methane_like(wavelengths, contrast),
            "red": lambda: red_slope(wavelengths, contrast),
            "impostor": lambda: np.full(nl, contrast),
        }[kind]()
        for k in range(nl):
            # an impostor's radius scales with λ like a speckle's (pinned to the sky so ADI keeps it)
            radius = sep * (wavelengths[k] / wavelengths.max() if kind == "impostor" else 1.0)
            inject_companions(cube[k], psfs[k], angles, spectrum[k] * star_flux[k], radius, theta, copy=False)
        sources.append(Source(sep, theta, spectrum, impostor=kind == "impostor"))
    return SpectralCube(cube, angles, psfs, wavelengths, star_flux, tuple(sources))


def best_single_channel_snr(cube: SpectralCube, xy: tuple[float, float], fwhms, ncomps=range(1, 6)) -> float:
    """The best S/N at ``xy`` that one channel *alone* gives: each channel as a narrow-band ADI sequence,
    reduced by PCA-ADI with each number of components in ``ncomps``; the largest over channels and
    numbers of components (the most favourable single channel, for the comparison with the collapse)."""
    from reduction.postproc.pipeline import PsfSubtractionParameters, subtract_psf
    from reduction.postproc.snr import snr

    return max(
        snr(subtract_psf(channel, cube.angles, PsfSubtractionParameters(ncomp=n), fwhm=w).residuals, xy, w).snr
        for channel, w in zip(cube.cube, fwhms)
        for n in ncomps
    )
