"""PSF width, aperture fluxes, frame quality from the halo, the off-axis PSF and the stellar flux."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

import numpy as np
from scipy import optimize

from .. import conventions
from ..instruments.sphere import NEUTRAL_DENSITY_REL_UNCERTAINTY, neutral_density_transmission
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


@dataclass(frozen=True)
class PsfPhotometry:
    """The off-axis PSF of one band and the star's flux, with its relative uncertainty.

    Attributes
    ----------
    psf : ndarray
        Mean of the FLUX images divided by its flux in a 1-FWHM-diameter aperture.
    fwhm_px : float
        FWHM of a circular Gaussian fit.
    star_flux : float
        Star flux in that aperture, in the science frames' units (their DIT and ND).
    star_flux_rel_err : float
        Relative 1-sigma uncertainty of ``star_flux``: the scatter of the FLUX files' fluxes (the
        star's variability between the photometric measurements, ddof=1) and, when the FLUX and the
        science frames were taken through different neutral densities, the transmission's uncertainty
        (:data:`~reduction.instruments.sphere.NEUTRAL_DENSITY_REL_UNCERTAINTY`), in quadrature. NaN when
        one FLUX file leaves the variability unmeasured and no ND term applies.
    """

    psf: np.ndarray
    fwhm_px: float
    star_flux: float
    star_flux_rel_err: float


def psf_photometry(
    images: Sequence[np.ndarray],
    dits: Sequence[float],
    neutral_densities: Sequence[str],
    wavelength_um: float,
    science_dit: float,
    science_nd: str,
) -> PsfPhotometry:
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
    rates = np.array(
        [
            aperture_flux(image, (cx, cy), width / 2) / dit / neutral_density_transmission(nd, wavelength_um)
            for image, dit, nd in zip(images, dits, neutral_densities)
        ]
    )
    per_second = float(np.mean(rates))
    star_flux = per_second * science_dit * neutral_density_transmission(science_nd, wavelength_um)
    variability = float(np.std(rates, ddof=1) / abs(per_second)) if rates.size >= 2 and per_second else np.nan
    same_nd = {_nd_key(nd) for nd in neutral_densities} == {_nd_key(science_nd)}
    nd_term = 0.0 if same_nd else NEUTRAL_DENSITY_REL_UNCERTAINTY
    terms = [t for t in (variability, nd_term) if np.isfinite(t)]
    rel_err = float(np.hypot.reduce(terms)) if rates.size >= 2 or nd_term else np.nan
    return PsfPhotometry(psf / ap, float(width), float(star_flux), rel_err)


def _nd_key(name: str | None) -> str:
    key = (name or "").strip().upper().replace("ND_N_", "ND_")
    return "OPEN" if key in ("", "OPEN", "ND_0.0") else key
