"""A coarse star centre from the waffle pattern (the fine fit is :mod:`reduction.centring`)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..centring import CentringError


def coarse_waffle_centre(
    image: np.ndarray, separation_px: float, guess_xy: tuple[float, float], radius_px: float
) -> tuple[float, float]:
    """Where the four-spot pattern correlates best with the image, within ``radius_px`` of the guess.

    Needs no accurate guess: the high-passed image is correlated (FFT) with four
    Gaussians at the spots' offsets.
    """
    # white top-hat (see find_waffle_centre), then a 3x3 median against hot pixels
    highpass = ndimage.white_tophat(image, size=max(9, int(separation_px / 3) | 1), mode="nearest")
    highpass = np.clip(ndimage.median_filter(highpass, size=3), 0, None)
    ny, nx = image.shape
    kernel = np.zeros((ny, nx))
    d = separation_px / np.sqrt(2)
    for sx, sy in ((d, d), (-d, d), (-d, -d), (d, -d)):
        kernel[int(round(sy)) % ny, int(round(sx)) % nx] = 1.0
    kernel = ndimage.gaussian_filter(kernel, 1.5, mode="wrap")
    correlation = np.fft.ifft2(np.fft.fft2(highpass) * np.conj(np.fft.fft2(kernel))).real
    yy, xx = np.mgrid[:ny, :nx]
    allowed = (xx - guess_xy[0]) ** 2 + (yy - guess_xy[1]) ** 2 <= radius_px**2
    if not allowed.any():
        raise CentringError(f"the centre guess ({guess_xy[0]:.0f}, {guess_xy[1]:.0f}) is outside the frame")
    correlation[~allowed] = -np.inf
    y, x = np.unravel_index(np.argmax(correlation), correlation.shape)
    return float(x), float(y)
