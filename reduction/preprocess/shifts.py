"""Sub-pixel shifts (real FFTs on odd, FFT-friendly sides) and star-centred crops."""

from __future__ import annotations

import os

import numpy as np

#: FFT threads: the CPUs this process may use (a SLURM allocation, not the whole node)
FFT_WORKERS = max(1, len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else 1


def odd_fast_length(n: int) -> int:
    """The smallest odd length >= n made of the factors 3, 5, 7, 11 (fast FFTs, no Nyquist bin)."""
    m = n | 1
    while True:
        rest = m
        for factor in (3, 5, 7, 11):
            while rest % factor == 0:
                rest //= factor
        if rest == 1:
            return m
        m += 2


def fourier_shift_stack(stack: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Shift every frame of (n, y, x) by (dx, dy) pixels (sub-pixel, FFT; periodic).

    Real FFTs in single precision. With odd sides there is no Nyquist frequency, so
    the shift is exactly that of the complex FFT (whose real part vip's Fourier
    shift takes).
    """
    from scipy import fft

    ny, nx = stack.shape[-2:]
    ky = fft.fftfreq(ny)[:, None]
    kx = fft.rfftfreq(nx)[None, :]
    ramp = np.exp(-2j * np.pi * (kx * dx + ky * dy)).astype(np.complex64)
    spectrum = fft.rfft2(np.asarray(stack, dtype=np.float32), workers=FFT_WORKERS)
    return fft.irfft2(spectrum * ramp, s=(ny, nx), workers=FFT_WORKERS).astype(np.float32, copy=False)


def centred_crop(stack: np.ndarray, centre_xy: tuple[float, float], size: int) -> np.ndarray:
    """Crop (n, y, x) frames to ``size`` around ``centre_xy`` and shift the star onto the crop centre.

    Pixels outside the frames are NaN-free zeros; the sub-pixel shift is done on a crop
    padded by at least 8 px (to an odd, FFT-friendly side) to keep FFT wrap-around away
    from the result.
    """
    pad = 8
    half = size // 2 + pad
    side = odd_fast_length(2 * half + 1)
    cx, cy = centre_xy
    ix, iy = int(np.floor(cx + 0.5)), int(np.floor(cy + 0.5))
    n, ny, nx = stack.shape
    big = np.zeros((n, side, side), dtype=np.float32)
    y0, y1 = iy - half, iy + half + 1
    x0, x1 = ix - half, ix + half + 1
    sy0, sy1 = max(y0, 0), min(y1, ny)
    sx0, sx1 = max(x0, 0), min(x1, nx)
    big[:, sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = stack[:, sy0:sy1, sx0:sx1]
    shifted = fourier_shift_stack(big, ix - cx, iy - cy)
    return shifted[:, pad : pad + size, pad : pad + size]
