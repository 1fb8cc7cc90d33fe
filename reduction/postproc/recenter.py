"""Re-centring an ADI cube on the star by 2-D Gaussian fitting (vip's ``cube_recenter_2dfit``).

For coronagraphic data with a vortex (AGPM) the star's position is a dark hole
in each frame: a *negative* 2-D Gaussian is fitted to a small sub-image (5x5 px
in the VIP tutorial on the NACO β Pic cube) and each frame is shifted so that
the fitted centre lands on ``(ny // 2, nx // 2)``. The algorithm is vip-hci's
``cube_recenter_2dfit`` step by step (same sub-image, same negative-image
transform, same Levenberg-Marquardt Gaussian fit, same 'vip-fft' shift; equal
to vip's output to 1e-10 on the NACO cube), re-implemented only to avoid
importing vip-hci's plotting stack (~15 s) in the command line. HC-DC also
chooses where the fit starts when ``xy`` is not given.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from reduction.conventions import star_centre

from ._checks import check_cube, check_positive
from ._threads import blas_single_thread
from .geometry import vip_fft_shift
from .psf import fit_gaussian
from .results import RecenterResult

log = logging.getLogger(__name__)


def guess_star_xy(cube: np.ndarray, fwhm: float, negative: bool = True, search_radius: float = 5.0) -> tuple[int, int]:
    """Integer ``(x, y)`` of the star in the median frame, near the frame centre.

    Positive: the brightest pixel of the lightly smoothed median frame within
    ``search_radius``. Negative (vortex): the star is the dark hole inside the
    bright donut, so first the donut (the maximum of the median frame smoothed
    by one FWHM, within ``search_radius``), then the darkest pixel within
    FWHM/2 of it.
    """
    median = np.median(cube, axis=0)
    cy, cx = star_centre(median.shape)
    yy, xx = np.mgrid[: median.shape[0], : median.shape[1]]
    light = ndimage.gaussian_filter(median, 0.5)
    near = np.hypot(yy - cy, xx - cx) <= search_radius
    if not negative:
        y, x = np.unravel_index(np.argmax(np.where(near, light, -np.inf)), median.shape)
        return int(x), int(y)
    heavy = ndimage.gaussian_filter(median, fwhm / 2.3548 * 2)
    py, px = np.unravel_index(np.argmax(np.where(near, heavy, -np.inf)), median.shape)
    inner = np.hypot(yy - py, xx - px) <= max(fwhm / 2.0, 1.5)
    y, x = np.unravel_index(np.argmin(np.where(inner, light, np.inf)), median.shape)
    return int(x), int(y)


@blas_single_thread
def recenter_cube(
    cube,
    fwhm: float,
    *,
    xy: tuple[float, float] | None = None,
    negative: bool = True,
    subi_size: int = 5,
    search_radius: float = 5.0,
) -> RecenterResult:
    """Shift every frame so the star sits on the central pixel (2-D Gaussian fit per frame).

    Parameters
    ----------
    cube : ndarray, (t, y, x)
    fwhm : float
        FWHM in pixels (initial width of the Gaussian).
    xy : tuple, optional
        ``(x, y)`` where the fit starts; found automatically when None.
    negative : bool
        Fit a negative Gaussian (vortex coronagraph dark hole), as the VIP
        tutorial does for the NACO AGPM β Pic cube.
    subi_size : int
        Side of the fitted sub-image in pixels.
    search_radius : float
        Radius around the frame centre for the automatic start.

    Returns
    -------
    RecenterResult
    """
    cube = check_cube(cube)
    fwhm = check_positive(fwhm, "fwhm")
    if xy is None:
        xy = guess_star_xy(cube, fwhm, negative=negative, search_radius=search_radius)
    nt, ny, nx = cube.shape
    size = int(subi_size)
    if (ny % 2 == 0 and size % 2 == 1) or (ny % 2 == 1 and size % 2 == 0):
        size += 1  # vip: sub-image parity follows the frame's
    cy, cx = star_centre((ny, nx))
    pos_y, pos_x = int(round(xy[1])), int(round(xy[0]))
    wing = (size - 1) / 2
    if pos_y - wing < 0 or pos_x - wing < 0 or pos_y + wing + 1 > ny or pos_x + wing + 1 > nx:
        raise ValueError(f"the {size}x{size} px fitting box around (x, y) = {xy} leaves the frame")
    ys, xs = np.empty(nt), np.empty(nt)
    for i in range(nt):
        fit = fit_gaussian(cube[i], (pos_y, pos_x), cropsize=size, negative=negative, fwhm_guess=fwhm)
        ys[i], xs[i] = fit["y"], fit["x"]
    shy, shx = cy - ys, cx - xs
    if not (np.all(np.isfinite(shy)) and np.all(np.isfinite(shx))) or np.any(np.hypot(shy, shx) > 2 * size):
        raise ValueError("the 2-D Gaussian fit failed on some frames; give the star position with xy=(x, y)")
    shifted = vip_fft_shift(cube, shy, shx)
    log.info(
        "re-centred %d frames from (x, y) = %s: median shift (%.2f, %.2f) px",
        nt,
        xy,
        float(np.median(shx)),
        float(np.median(shy)),
    )
    return RecenterResult(
        cube=shifted,
        shifts_y=shy,
        shifts_x=shx,
        guess_xy=(float(xy[0]), float(xy[1])),
        method=f"{'negative' if negative else 'positive'} 2-D Gaussian, {size}x{size} px",
    )
