"""Fake companion injection (vip-hci geometry, vectorised over frames).

A companion at separation ``r`` and polar angle ``theta`` (degrees,
counter-clockwise from +x in the final, derotated image: the ``theta`` of
``vip_hci.fm.cube_inject_companions``) lands in raw frame ``i`` at polar angle
``theta - angles[i]``. The PSF stamp is placed on the nearest integer position
and shifted by the remaining sub-pixel offset with a Fourier phase ramp on a
zero-padded stamp, like vip's default.
"""

from __future__ import annotations

import numpy as np

from reduction.conventions import star_centre

from ._checks import check_angles, check_cube, check_psf
from .geometry import StampShifter, add_stamps, vip_fft_shift


def companion_positions(
    separation: float, theta_deg: float, angles: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """``(y, x)`` of a companion in each raw frame."""
    cy, cx = star_centre(shape)
    ang = np.deg2rad(theta_deg - np.asarray(angles, dtype=float))
    return cy + separation * np.sin(ang), cx + separation * np.cos(ang)


def _stamps_at(
    psf: np.ndarray, ys: np.ndarray, xs: np.ndarray, flux, shape: tuple[int, int], shifter: StampShifter | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shifted PSF stamps (times ``flux``) and their integer corners, as vip's ``_frame_shift_fcp``.

    The offset from the star is split into its integer part (truncated towards
    zero) and a sub-pixel remainder; the stamp is shifted by the remainder with
    the 'vip-fft' shift (:func:`reduction.postproc.geometry.vip_fft_shift`, or the same numbers
    from ``shifter``, a :class:`~reduction.postproc.geometry.StampShifter` of ``psf``).
    """
    cy, cx = star_centre(shape)
    size = psf.shape[-1]
    w = int(np.ceil(size / 2)) - (1 if size % 2 else 0)
    shift_y, shift_x = ys - cy, xs - cx
    iy, ix = np.trunc(shift_y).astype(int), np.trunc(shift_x).astype(int)
    if shifter is not None:
        stamps = shifter(shift_y - iy, shift_x - ix)
    else:
        stamps = vip_fft_shift(psf, shift_y - iy, shift_x - ix)
    flux = np.broadcast_to(np.asarray(flux, dtype=float), ys.shape)
    stamps *= flux[:, None, None]
    return stamps, cy - w + iy, cx - w + ix


def inject_companions(cube, psf, angles, flux, separation: float, theta_deg: float, copy: bool = True) -> np.ndarray:
    """Add a fake companion to every frame of an ADI cube.

    Parameters
    ----------
    cube : ndarray, (t, y, x)
    psf : ndarray, (s, s)
        Normalised PSF, odd size, centred (see :func:`reduction.postproc.psf.normalize_psf`).
    angles : ndarray, (t,)
        Derotation angles (vip-hci convention).
    flux : float or ndarray (t,)
        Scale factor of ``psf`` (negative for a negative fake companion).
    separation : float
        Distance to the star in pixels.
    theta_deg : float
        Polar angle in the final image, counter-clockwise from +x.
    copy : bool
        Work on a copy (default) or in place.

    Returns
    -------
    ndarray, (t, y, x)
    """
    cube = check_cube(cube)
    angles = check_angles(angles, cube.shape[0])
    psf = check_psf(psf, cube.shape[-2:])
    out = cube.copy() if copy else cube
    if separation >= min(cube.shape[-2:]) / 2:
        raise ValueError(f"separation {separation:.1f} px is at or beyond the frame edge")
    ys, xs = companion_positions(separation, theta_deg, angles, cube.shape[-2:])
    stamps, y0, x0 = _stamps_at(psf, ys, xs, flux, cube.shape[-2:])
    add_stamps(out, stamps, y0, x0)
    return out


def inject_in_frame(frame: np.ndarray, psf: np.ndarray, y: float, x: float, flux: float) -> np.ndarray:
    """Add one PSF of scale ``flux`` at ``(y, x)`` to a 2-D image (vip's ``frame_inject_companion``).

    The PSF is put at the centre of an empty frame which is then shifted as a
    whole with the 'vip-fft' shift, so no wing is cut.
    """
    frame = np.asarray(frame, dtype=float)
    psf = np.asarray(psf, dtype=float)
    cy, cx = star_centre(frame.shape)
    size = psf.shape[0]
    half = size // 2
    odd = size % 2
    canvas = np.zeros(frame.shape)
    canvas[cy - half : cy + half + odd, cx - half : cx + half + odd] = psf
    return frame + vip_fft_shift(canvas, [y - cy], [x - cx])[0] * flux
