"""Star centre from the waffle (satellite) spots of OBJECT,CENTER frames.

The deformable-mirror waffle puts four copies of the PSF at the corners of a
square centred on the star, behind the coronagraph. The centre is the
intersection of the two diagonals joining opposite spots (as the SPHERE Data
Center and ``vlt-sphere`` do), which is insensitive to a common radial scaling
of the spots (chromaticity) and to their relative brightness.

What breaks first in other pipelines, and what is done about it here:

* hot/bad pixels near a spot capture the peak search -> the search runs on a
  median-filtered, smoothed, high-passed image, and the fit masks pixels that
  deviate from a local median by more than ``hot_pixel_sigma`` robust sigmas;
* faint spots in a bright halo -> the halo is removed by subtracting a wide
  median filter before the search, and each spot is fitted with a Gaussian on a
  local constant background;
* a bad guess of the centre -> spots are searched within ``search_radius_px``
  of where the guess puts them, and the result is checked (the four spots must
  form a square within ``max_asymmetry_px``) before it is returned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, optimize

from .steps import Step, StepParameters


class CentringError(ValueError):
    """The spots could not be found or do not form a square."""


@dataclass(frozen=True)
class WaffleCentringParameters(StepParameters):
    """Parameters of :class:`WaffleCentring`.

    Attributes
    ----------
    spot_separation_px : float
        Distance star-spot in pixels (SPHERE: ~13.7 λ/D, see
        :func:`waffle_spot_separation_px`).
    orientation : {'x', '+'}
        ``"x"`` (spots on the diagonals) or ``"+"`` (on the axes).
    rotation_deg : float
        Extra rotation of the spot pattern (IFS field is rotated).
    search_radius_px : float
        How far from the predicted positions a spot is searched.
    fit_box_px : int
        Side of the box in which each spot is fitted (odd).
    hot_pixel_sigma : float
        Pixels deviating from their 3x3 median by this many robust sigmas are
        ignored in the fit.
    max_asymmetry_px : float
        Largest allowed difference between the two diagonals' midpoints.
    """

    spot_separation_px: float
    orientation: str = "x"
    rotation_deg: float = 0.0
    search_radius_px: float = 6.0
    fit_box_px: int = 9
    hot_pixel_sigma: float = 5.0
    max_asymmetry_px: float = 1.5

    def __post_init__(self):
        if self.orientation not in ("x", "+"):
            raise ValueError(f"orientation must be 'x' or '+', not {self.orientation!r}")
        if self.spot_separation_px <= 2:
            raise ValueError("spot_separation_px must be > 2 pixels")
        if self.fit_box_px < 5 or self.fit_box_px % 2 == 0:
            raise ValueError("fit_box_px must be odd and >= 5")


@dataclass(frozen=True)
class WaffleCentringResult:
    """Centre found from the waffle spots of one frame.

    Attributes
    ----------
    centre_xy : tuple of float
        Star position (x, y), 0-based pixels of the input frame.
    spots_xy : ndarray, shape (4, 2)
        Fitted spot positions, in the order of the predicted angles.
    asymmetry_px : float
        Distance between the midpoints of the two diagonals (0 for a perfect square).
    spot_separation_px : float
        Mean measured star-spot distance.
    n_masked_pixels : int
        Pixels ignored as hot/bad in the four fits.
    """

    centre_xy: tuple[float, float]
    spots_xy: np.ndarray
    asymmetry_px: float
    spot_separation_px: float
    n_masked_pixels: int


def waffle_spot_separation_px(
    wavelength_um: float,
    pixel_scale_arcsec: float,
    separation_lambda_over_d: float = 10 * np.sqrt(2) * 0.97,
    telescope_diameter_m: float = 8.0,
) -> float:
    """Expected star-spot distance in pixels (SPHERE waffle: 10√2 x 0.97 λ/D, vlt-sphere)."""
    lambda_over_d_arcsec = wavelength_um * 1e-6 / telescope_diameter_m * 180 / np.pi * 3600
    return separation_lambda_over_d * lambda_over_d_arcsec / pixel_scale_arcsec


def _gaussian(params, yy, xx):
    amplitude, x0, y0, sigma, offset = params
    return offset + amplitude * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma**2))


def _fit_spot(image: np.ndarray, x_guess: float, y_guess: float, box: int, bad: np.ndarray) -> tuple[float, float, int]:
    half = box // 2
    xi, yi = int(round(x_guess)), int(round(y_guess))
    y0, y1, x0, x1 = yi - half, yi + half + 1, xi - half, xi + half + 1
    if y0 < 0 or x0 < 0 or y1 > image.shape[0] or x1 > image.shape[1]:
        raise CentringError(f"spot near ({x_guess:.1f}, {y_guess:.1f}) too close to the frame edge")
    sub = image[y0:y1, x0:x1]
    good = ~bad[y0:y1, x0:x1] & np.isfinite(sub)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    background = np.median(sub[good])
    amplitude = max(float(np.max(sub[good]) - background), 1e-12)

    def residuals(p):
        return (_gaussian(p, yy, xx) - sub)[good]

    start = np.array([amplitude, x_guess, y_guess, 1.5, background])
    fit = optimize.least_squares(
        residuals,
        start,
        x_scale=[amplitude, 1, 1, 1, amplitude],
        bounds=([0, x0, y0, 0.5, -np.inf], [np.inf, x1 - 1, y1 - 1, box, np.inf]),
    )
    return float(fit.x[1]), float(fit.x[2]), int((~good).sum())


def _line_intersection(p1, p2, p3, p4) -> tuple[float, float]:
    """Intersection of line p1-p2 with line p3-p4."""
    d1, d2 = p2 - p1, p4 - p3
    denominator = d1[0] * d2[1] - d1[1] * d2[0]
    if abs(denominator) < 1e-9:
        raise CentringError("the spot diagonals are parallel")
    t = ((p3[0] - p1[0]) * d2[1] - (p3[1] - p1[1]) * d2[0]) / denominator
    point = p1 + t * d1
    return float(point[0]), float(point[1])


def find_waffle_centre(
    image: np.ndarray, guess_xy: tuple[float, float], params: WaffleCentringParameters
) -> WaffleCentringResult:
    """Find the star centre from the four waffle spots of one frame.

    Parameters
    ----------
    image : ndarray (y, x)
        A calibrated CENTER frame (one wavelength).
    guess_xy : tuple of float
        Approximate star position (x, y), within ``search_radius_px``.
    params : WaffleCentringParameters

    Raises
    ------
    CentringError
        A spot is not found, is at the edge, or the spots do not form a square.
    """
    image = np.asarray(image, dtype=float)
    if image.ndim != 2:
        raise CentringError(f"expected one frame (y, x), got shape {image.shape}")
    bad = bad_pixel_mask(image, params.hot_pixel_sigma)
    clean = np.where(bad, ndimage.median_filter(np.nan_to_num(image), size=3, mode="nearest"), image)
    # high-pass to locate the spots on the halo: a white top-hat (image minus its grey opening)
    # keeps what is narrower than the box; 50x cheaper than a running median of the same box,
    # and only the peak search uses it (the fits use ``clean``)
    highpass = ndimage.white_tophat(clean, size=max(9, int(params.spot_separation_px / 3) | 1), mode="nearest")
    smooth = ndimage.gaussian_filter(highpass, 1.0)
    first = 45.0 if params.orientation == "x" else 0.0
    angles = np.deg2rad(first + params.rotation_deg + np.array([0, 90, 180, 270]))
    spots = np.zeros((4, 2))
    masked = 0
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    for k, angle in enumerate(angles):
        px = guess_xy[0] + params.spot_separation_px * np.cos(angle)
        py = guess_xy[1] + params.spot_separation_px * np.sin(angle)
        window = (xx - px) ** 2 + (yy - py) ** 2 <= params.search_radius_px**2
        if not window.any():
            raise CentringError(f"spot {k} predicted at ({px:.1f}, {py:.1f}) is outside the frame")
        candidate = np.where(window, smooth, -np.inf)
        sy, sx = np.unravel_index(np.argmax(candidate), candidate.shape)
        x_fit, y_fit, n_bad = _fit_spot(clean, float(sx), float(sy), params.fit_box_px, bad)
        spots[k] = (x_fit, y_fit)
        masked += n_bad
    centre = _line_intersection(spots[0], spots[2], spots[1], spots[3])
    asymmetry = float(np.hypot(*((spots[0] + spots[2]) / 2 - (spots[1] + spots[3]) / 2)))
    if asymmetry > params.max_asymmetry_px:
        raise CentringError(f"the four spots do not form a square (diagonal midpoints {asymmetry:.2f} px apart)")
    separation = float(np.mean(np.hypot(spots[:, 0] - centre[0], spots[:, 1] - centre[1])))
    return WaffleCentringResult(
        centre_xy=centre, spots_xy=spots, asymmetry_px=asymmetry, spot_separation_px=separation, n_masked_pixels=masked
    )


def bad_pixel_mask(image: np.ndarray, sigma: float) -> np.ndarray:
    """Non-finite pixels and isolated outliers (hot/cold pixels, cosmic rays).

    A pixel is an outlier when it deviates from the median of its 3x3
    neighbourhood by more than ``sigma`` robust sigmas of the whole frame *and*
    by more than the neighbourhood's own level above the frame background: a
    PSF core (even a 3-pixel-wide one) exceeds its neighbours' median by about
    half its height, a hot pixel by far more than its neighbours' level.
    """
    finite = np.isfinite(image)
    filled = np.where(finite, image, np.nanmedian(image))
    median = ndimage.median_filter(filled, size=3, mode="nearest")
    deviation = filled - median
    mad = float(np.median(np.abs(deviation))) * 1.4826
    level = np.abs(median - np.median(filled))
    return ((np.abs(deviation) > sigma * max(mad, 1e-12)) & (np.abs(deviation) > level)) | ~finite


class WaffleCentring(Step):
    """Step: star centre from waffle spots, per frame and wavelength."""

    name = "waffle-centring"
    version = "1"
    Parameters = WaffleCentringParameters
    inputs = ("center_frame", "guess_xy")
    outputs = ("centre_xy",)

    def run(self, params: WaffleCentringParameters, **inputs) -> WaffleCentringResult:
        return find_waffle_centre(inputs["center_frame"], inputs["guess_xy"], params)
