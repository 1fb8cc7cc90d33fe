"""Exact circular-aperture photometry, vectorised.

``aperture_sums`` gives the same numbers as ``photutils.aperture_photometry``
with ``method='exact'`` (the method vip-hci's S/N, throughput and noise
functions use) to 1e-10, for a whole array of apertures at once.

How: the flux of pixel ``m`` in a disk centred at ``p`` is ``I_m`` times the
area of the intersection of the unit square around ``m`` with the disk. That
area is the second mixed difference over the square's four corners of
``A(X, Y)``, the area of the part of the disk with ``x <= X`` and ``y <= Y``
(coordinates relative to the disk centre), and ``A`` has a closed form in
terms of ``g(t) = (t sqrt(r² - t²) + r² arcsin(t / r)) / 2``, the primitive of
the half-chord. Because ``g`` is monotonic, every ``g`` needed at a corner is
a clip of the per-row/per-column values, so only two arcsin per aperture row
and column are evaluated.

``aperture_sum_grid`` tabulates the exact aperture flux on a grid ``K`` times
finer than the pixels (one FFT-free matrix product per sub-pixel offset); the
fast S/N map interpolates it.
"""

from __future__ import annotations

import numpy as np

_CHUNK = 4096


def _g(t: np.ndarray, r: float) -> np.ndarray:
    rr = r * r
    return 0.5 * (t * np.sqrt(np.maximum(rr - t * t, 0.0)) + rr * np.arcsin(np.clip(t / r, -1.0, 1.0)))


def _aperture_weights(xs: np.ndarray, ys: np.ndarray, r: float, n: int):
    """Exact overlap weights ``(n, n, M)`` and the first pixel indices ``(i0, j0)``."""
    j0 = np.floor(xs - r + 0.5).astype(np.intp)
    i0 = np.floor(ys - r + 0.5).astype(np.intp)
    k = np.arange(n + 1)[:, None]
    X = np.clip((j0 + k - 0.5) - xs, -r, r)  # corner x offsets, (n+1, M)
    Y = np.clip((i0 + k - 0.5) - ys, -r, r)  # corner y offsets, (n+1, M)
    rr = r * r
    gX = _g(X, r)[None]  # (1, n+1, M) along x
    w = np.sqrt(np.maximum(rr - Y * Y, 0.0))  # half-chord at each corner row
    gw = _g(w, r)[:, None]  # (n+1, 1, M)
    w = w[:, None]
    Yc = Y[:, None]
    x2 = np.minimum(np.maximum(X[None], -w), w)
    gx2 = np.minimum(np.maximum(gX, -gw), gw)
    area = Yc * (x2 + w) + gx2 + gw
    upper = 2.0 * (np.minimum(gX, -gw) + np.maximum(gX, gw) - gw + 0.25 * np.pi * rr)
    area += upper * (Yc >= 0)
    weights = area[1:, 1:] - area[1:, :-1] - area[:-1, 1:] + area[:-1, :-1]
    return weights, i0, j0


def aperture_sums(image: np.ndarray, xs, ys, radius: float) -> np.ndarray:
    """Exact sums of ``image`` in circular apertures (photutils 'exact').

    Parameters
    ----------
    image : ndarray, (y, x)
        NaNs count as 0 (callers mask them).
    xs, ys : array_like
        Aperture centres (0-based pixels, pixel centres at integers).
    radius : float
        Aperture radius in pixels.

    Returns
    -------
    ndarray
        One sum per aperture, the shape of ``xs``.
    """
    image = np.asarray(image, dtype=float)
    xs = np.asarray(xs, dtype=float)
    ys = np.asarray(ys, dtype=float)
    shape = xs.shape
    xs, ys = xs.ravel(), ys.ravel()
    r = float(radius)
    n = int(np.ceil(2 * r)) + 1
    pad = n + 1
    padded = np.zeros((image.shape[0] + 2 * pad, image.shape[1] + 2 * pad))
    padded[pad:-pad, pad:-pad] = np.nan_to_num(image, nan=0.0)
    # positions far outside: clip so the indices stay in the padded array (weights are 0 there)
    limit_y, limit_x = image.shape[0] + r + 1.0, image.shape[1] + r + 1.0
    out = np.zeros(xs.size)
    inside = (xs > -r - 1.0) & (xs < limit_x) & (ys > -r - 1.0) & (ys < limit_y)
    index = np.nonzero(inside)[0]
    offsets = np.arange(n)[:, None]
    for start in range(0, index.size, _CHUNK):
        sel = index[start : start + _CHUNK]
        weights, i0, j0 = _aperture_weights(xs[sel], ys[sel], r, n)
        rows = (i0 + offsets) + pad  # (n, M)
        cols = (j0 + offsets) + pad
        values = padded[rows[:, None, :], cols[None, :, :]]
        out[sel] = np.einsum("abm,abm->m", weights, values)
    return out.reshape(shape)


def aperture_weight_kernel(fy: float, fx: float, radius: float, lo: int, hi: int) -> np.ndarray:
    """Exact weights of pixels ``lo..hi`` (both axes) for a disk centred at ``(fy, fx)``."""
    size = hi - lo + 1
    n = int(np.ceil(2 * radius)) + 1
    weights, i0, j0 = _aperture_weights(np.array([float(fx)]), np.array([float(fy)]), radius, n)
    iy, ix = int(i0[0]) - lo, int(j0[0]) - lo
    if iy < 0 or ix < 0 or iy + n > size or ix + n > size:
        raise ValueError("aperture does not fit in the kernel support")  # pragma: no cover
    kernel = np.zeros((size, size))
    kernel[iy : iy + n, ix : ix + n] = weights[:, :, 0]
    return kernel


def aperture_weight_kernels(oversampling: int, radius: float, lo: int, hi: int) -> np.ndarray:
    """Exact weights of pixels ``lo..hi`` for disks centred at every sub-pixel offset ``(a/K, b/K)``.

    Returns ``(K, K, size, size)``; the vectorised form of :func:`aperture_weight_kernel`.
    """
    K = int(oversampling)
    size = hi - lo + 1
    n = int(np.ceil(2 * radius)) + 1
    fy, fx = np.meshgrid(np.arange(K) / K, np.arange(K) / K, indexing="ij")
    weights, i0, j0 = _aperture_weights(fx.ravel(), fy.ravel(), radius, n)  # (n, n, K*K)
    out = np.zeros((K * K, size, size))
    rows = (i0 - lo)[:, None] + np.arange(n)[None, :]  # (K*K, n)
    cols = (j0 - lo)[:, None] + np.arange(n)[None, :]
    if rows.min() < 0 or cols.min() < 0 or rows.max() >= size or cols.max() >= size:
        raise ValueError("aperture does not fit in the kernel support")  # pragma: no cover
    m = np.arange(K * K)[:, None, None]
    out[m, rows[:, :, None], cols[:, None, :]] = np.transpose(weights, (2, 0, 1))
    return out.reshape(K, K, size, size)


def aperture_sum_grid(image: np.ndarray, radius: float, oversampling: int) -> np.ndarray:
    """Exact aperture sums at every point of a grid ``oversampling`` times finer than the pixels.

    Returns ``G`` of shape ``(ny * K, nx * K)`` with ``G[i K + a, j K + b]`` the
    sum in the disk of radius ``radius`` centred at ``(y, x) = (i + a/K, j + b/K)``.
    """
    image = np.nan_to_num(np.asarray(image, dtype=float), nan=0.0)
    ny, nx = image.shape
    K = int(oversampling)
    r = float(radius)
    lo = int(np.floor(-r - 0.5))
    hi = int(np.ceil(1.0 + r + 0.5))
    size = hi - lo + 1
    kernels = aperture_weight_kernels(K, r, lo, hi).reshape(K * K, size * size)
    padded = np.zeros((ny + size - 1, nx + size - 1))
    padded[-lo : -lo + ny, -lo : -lo + nx] = image
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size))  # (ny, nx, size, size)
    patches = windows.reshape(ny * nx, size * size)
    values = patches @ kernels.T  # (ny*nx, K*K)
    return values.reshape(ny, nx, K, K).transpose(0, 2, 1, 3).reshape(ny * K, nx * K)
