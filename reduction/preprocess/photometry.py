"""PSF width, aperture fluxes, frame quality from the halo, the off-axis PSF and the stellar flux."""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

import numpy as np
from scipy import optimize

from .. import conventions
from ..instruments.sphere import neutral_density_transmission
from .model import FrameQuality, PreprocessParameters


def gaussian_fwhm(image: np.ndarray) -> tuple[float, float, float]:
    """FWHM and (x, y) of a centred PSF from a circular Gaussian fit."""
    ny, nx = image.shape
    yy, xx = np.mgrid[:ny, :nx]
    peak = float(image.max())

    def residual(p):
        a, x0, y0, s, c = p
        return (c + a * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * s**2)) - image).ravel()

    start = [peak, nx // 2, ny // 2, 2.0, 0.0]
    fit = optimize.least_squares(residual, start, x_scale=[max(peak, 1e-9), 1, 1, 1, max(peak, 1e-9)])
    return float(2.3548 * abs(fit.x[3])), float(fit.x[1]), float(fit.x[2])


def aperture_flux(image: np.ndarray, centre_xy: tuple[float, float], radius: float) -> float:
    """Flux in a circular aperture (exact pixel overlap, photutils)."""
    from photutils.aperture import CircularAperture, aperture_photometry

    table = aperture_photometry(image, CircularAperture(centre_xy, r=radius), method="exact")
    return float(table["aperture_sum"][0])


def frame_quality(
    images: np.ndarray,
    names: Sequence[tuple[str, int]],
    times: Sequence[datetime],
    parang: np.ndarray,
    derotation: np.ndarray,
    params: PreprocessParameters,
    lod_px: float,
    problems: list[str],
) -> tuple[list[FrameQuality], np.ndarray]:
    """Per-frame quality table and the frames kept, from the halo flux of centred frames ``(t, y, x)``.

    The halo is measured in an annulus around the coronagraph (``halo_inner_lod`` to
    ``halo_outer_lod``); a frame is rejected when its halo flux deviates from the sequence
    median by more than ``reject_sigma`` robust sigmas and by more than ``reject_min_fraction``.
    """
    size = images.shape[-1]
    yy, xx = np.mgrid[:size, :size]
    cy, cx = conventions.star_centre(images.shape)
    radius = np.hypot(xx - cx, yy - cy)
    annulus = (radius >= params.halo_inner_lod * lod_px) & (radius <= params.halo_outer_lod * lod_px)
    halo = images[:, annulus].sum(axis=1)
    median = float(np.median(halo))
    mad = float(np.median(np.abs(halo - median))) * 1.4826
    deviation = np.abs(halo - median)
    rejected = (deviation > params.reject_sigma * max(mad, 1e-12)) & (
        deviation > params.reject_min_fraction * abs(median)
    )
    frames = []
    for i, ((name, index), when) in enumerate(zip(names, times)):
        reason = None
        if rejected[i]:
            reason = (
                f"halo flux {halo[i] / median:.2f} x the sequence median "
                f"({deviation[i] / max(mad, 1e-12):.1f} robust sigma): AO loop open, cloud or seeing burst"
            )
        frames.append(
            FrameQuality(
                file=name,
                index=index,
                time_utc=when.isoformat(),
                parang_deg=float(parang[i]),
                derotation_deg=float(derotation[i]),
                halo_flux=float(halo[i]),
                accepted=not rejected[i],
                reason=reason,
            )
        )
    keep = ~rejected
    if keep.sum() < 2:
        problems.append(f"only {int(keep.sum())} frame(s) pass the quality checks")
    return frames, keep


def psf_photometry(
    images: Sequence[np.ndarray],
    dits: Sequence[float],
    neutral_densities: Sequence[str],
    wavelength_um: float,
    science_dit: float,
    science_nd: str,
) -> tuple[np.ndarray, float, float]:
    """Normalised off-axis PSF, its FWHM and the stellar flux, from centred FLUX images of one band.

    ``images`` are one per FLUX file, star at ``star_centre``, with that file's DIT and ND.
    The PSF is their mean divided by its flux in a 1-FWHM-diameter aperture; the stellar flux
    is that aperture's flux per second, corrected for each file's ND, brought to the science
    frames' units (their DIT and ND).
    """
    psf = np.mean(images, axis=0)
    width, _fx, _fy = gaussian_fwhm(psf)
    cy, cx = conventions.star_centre(psf.shape)
    ap = aperture_flux(psf, (cx, cy), width / 2)
    per_second = np.mean(
        [
            aperture_flux(image, (cx, cy), width / 2) / dit / neutral_density_transmission(nd, wavelength_um)
            for image, dit, nd in zip(images, dits, neutral_densities)
        ]
    )
    star_flux = per_second * science_dit * neutral_density_transmission(science_nd, wavelength_um)
    return psf / ap, float(width), float(star_flux)
