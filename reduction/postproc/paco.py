"""FastPACO (Flasseur et al. 2018, A&A 618, A138, Algorithm 2) as vip-hci computes it, vectorised.

Why a rewrite: ``vip_hci.invprob.FastPACO`` (2.1.1) makes one FFT shift of the PSF per pixel and frame,
and builds each pixel's patch with a boolean mask of the whole frame applied to the whole cube, so its
cost per pixel grows with the field (a T x N_pix^2 term); and it keeps every pixel's patches and inverse
covariance in memory at once (T x N_pix x P + N_pix x P^2 floats: 26 GB for a 24-frame 961^2 IRDIS
frame, more than this machine has). On the full IRDIS frame it had not finished after 2 h of CPU; this
module takes 45 s there and is 7 to 71 times faster on 30^2 to 201^2 fields (``bench/bench_paco.py``,
``bench/bench_algorithms.py``).

What is the same: every formula and every choice of vip-hci's ``FastPACO`` -- the circular patch of
radius ``int(fwhm)``, the patch bounds, the sample covariance (vip-hci's, half of Flasseur's eq. 9 because
it is taken over the pair ``(patch, mean)``), the shrinkage factor, the frame positions of a test pixel
(vip-hci's ``cart_to_pol``/``pol_to_cart``, truncated to the pixel) and the PSF model shifted to the
sub-pixel position with vip-hci's own ``frame_shift`` and normalised with its ``normalize_psf``. With
``psf_grid=0`` the maps equal vip-hci's to rounding (``tests/test_paco.py``).

What differs:

* each location's statistics are computed once, in blocks, and every (test pixel, frame) pair that
  lands on the location is evaluated there with one batched matrix product; the statistics in memory
  are one block's (the pairs' indices, about 60 bytes per pair, are the rest);
* by default the sub-pixel PSF models come from a grid of ``psf_grid`` steps per pixel (the nearest of
  ``(psf_grid + 1)^2`` shifts computed by ``frame_shift``) instead of one FFT shift per pair, as
  ANDROMEDA does with its ``precision`` of 50 (HC-DC's default: 100, where the S/N maps differ from the
  exact shifts' by at most 0.011 and the flux by 0.22 % where S/N > 3 on the NACO cube);
* frames of odd size are padded by one row and column in front so that the star is at the centre of
  rotation (vip-hci's geometry rotates an odd frame about the corner of its central pixel, half a
  pixel from the star: see :func:`even_frames`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class PacoMaps:
    """FastPACO's outputs, frames of the input's shape (NaN where the patches leave the frame).

    Attributes
    ----------
    snr : ndarray
        ``b / sqrt(a)`` (Flasseur et al. 2018, eq. 24).
    flux : ndarray
        ``b / a`` (eq. 21), in units of the PSF normalised by vip-hci's ``normalize_psf``.
    flux_std : ndarray
        ``1 / sqrt(a)``.
    a, b : ndarray
        The sums of eqs. 15 and 16.
    patch_radius : int
        Radius of the circular patch, pixels (``int(fwhm)``).
    """

    snr: np.ndarray
    flux: np.ndarray
    flux_std: np.ndarray
    a: np.ndarray
    b: np.ndarray
    patch_radius: int


def even_frames(cube: np.ndarray) -> tuple[np.ndarray, bool]:
    """The cube with its frames made even, and whether they were odd.

    vip-hci's geometry rotates a frame about ``n / 2``, the star (``n // 2``) only when ``n`` is even: an
    odd frame is padded by one row and column in front, and the maps are cut back with ``[1:, 1:]``. The
    padded row and column never enter a patch (patches stay ``int(fwhm) + 1`` pixels inside the frame).
    """
    odd = cube.shape[-1] % 2 == 1
    return (np.pad(cube, ((0, 0), (1, 0), (1, 0))) if odd else cube), odd


def patch_offsets(radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column offsets of vip-hci's circular patch (``dy^2 + dx^2 <= radius^2``), in its order."""
    dy, dx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    inside = dy**2 + dx**2 <= radius**2
    return dy[inside], dx[inside]


def frame_positions(n: int, angles) -> tuple[np.ndarray, np.ndarray]:
    """Where each test pixel of an even ``n x n`` frame sits in each frame: ``(row, col)``, both ``(n*n, T)``.

    vip-hci's ``get_rotated_pixel_coords``: the pixel's offset from ``n/2``, rotated by ``-angle`` with
    ``cart_to_pol``/``pol_to_cart`` (the same floating-point path, so the truncation to a pixel agrees).
    """
    from vip_hci.var.coords import cart_to_pol, pol_to_cart

    rows, cols = np.mgrid[0:n, 0:n]
    dim = n / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        rad, theta = cart_to_pol(cols.ravel() - dim, rows.ravel() - dim)
    turned = -1 * np.asarray(angles, dtype=float)[None, :] + theta[:, None]
    x, y = pol_to_cart(np.broadcast_to(rad[:, None], turned.shape), turned)
    return y + int(n / 2), x + int(n / 2)


def psf_models(psf: np.ndarray, radius: int):
    """vip-hci's normalised PSF, its patch mask, and a function that shifts it: ``(psf, mask, shift)``."""
    from vip_hci.fm import normalize_psf
    from vip_hci.preproc import frame_shift

    normalised = normalize_psf(
        np.asarray(psf, dtype=float),
        fwhm="fit",
        size=None,
        threshold=None,
        mask_core=None,
        model="airy",
        imlib="vip-fft",
        interpolation="lanczos4",
        force_odd=False,
        full_output=False,
        verbose=False,
        debug=False,
    )
    h, w = normalised.shape
    yy, xx = np.ogrid[:h, :w]
    mask = (yy - int(h / 2)) ** 2 + (xx - int(w / 2)) ** 2 <= radius**2

    def shifted(dy: float, dx: float) -> np.ndarray:
        return frame_shift(normalised, dy, dx, imlib="vip-fft", interpolation="lanczos4", border_mode="reflect")[mask]

    return normalised, mask, shifted


def location_statistics(patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and inverse shrinkage covariance of each location's patches ``(L, T, P)`` (vip-hci's formulas).

    Returns ``(mean (L, P), inverse covariance (L, P, P))``.
    """
    n_frames = patches.shape[1]
    mean = patches.mean(axis=1)
    dev = patches - mean[:, None, :]
    # vip-hci's sample_covariance: mean over frames of np.cov((p, m)) = (p - m)(p - m)^T / 2
    sample = np.matmul(dev.transpose(0, 2, 1), dev) / (2.0 * n_frames)
    trace_ss = np.einsum("lij,lji->l", sample, sample)
    trace = np.einsum("lii->l", sample)
    diagonal = np.einsum("lii->li", sample)
    top = trace_ss + trace**2 - 2.0 * np.sum(sample**2, axis=(1, 2))
    bottom = (n_frames + 1.0) * (trace_ss - np.sum(diagonal**2, axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.clip(top / bottom, 0.0, 1.0)
    covariance = (1.0 - rho)[:, None, None] * sample
    covariance[:, np.arange(sample.shape[1]), np.arange(sample.shape[1])] += rho[:, None] * diagonal
    try:
        return mean, np.linalg.inv(covariance)
    except np.linalg.LinAlgError:
        # a location whose patch is constant over the sequence (a masked region) has no inverse: it
        # gives NaN to the pixels that use it instead of stopping the whole map (vip-hci stops)
        inverse = np.full_like(covariance, np.nan)
        for i, matrix in enumerate(covariance):
            with contextlib.suppress(np.linalg.LinAlgError):
                inverse[i] = np.linalg.inv(matrix)
        return mean, inverse


def fast_paco(
    cube,
    angles,
    psf,
    fwhm_px: float,
    *,
    subpixel_psf: bool = True,
    psf_grid: int = 100,
    block_locations: int = 4096,
    progress=None,
) -> PacoMaps:
    """FastPACO's ``a``, ``b`` and maps of a centred ADI cube (see the module docstring).

    Parameters
    ----------
    cube : ndarray, shape (T, n, n)
        The centred sequence; the star at ``n // 2`` (``reduction.conventions.star_centre``).
    angles : ndarray, shape (T,)
        Derotation angles, degrees (vip-hci's convention).
    psf : ndarray
        The off-axis PSF (normalised again here exactly as vip-hci's ``FastPACO`` does; a stack is
        reduced to its median, as vip-hci does), at least ``2 int(fwhm) + 1`` pixels a side.
    fwhm_px : float
        The PSF's FWHM in pixels; the patch radius is ``int(fwhm_px)``.
    subpixel_psf : bool
        Shift the PSF model to the sub-pixel position of each frame (vip-hci's
        ``use_subpixel_psf_astrometry``).
    psf_grid : int
        Sub-pixel steps per pixel of the shifted models; 0: one exact shift per (pixel, frame) pair,
        as vip-hci (slow: for tests).
    block_locations : int
        Locations whose statistics are held at once (about ``40 * block * P^2`` bytes: 0.4 GB at the
        default with a radius-4 patch). The rest is the (pixel, frame) pairs' indices: the whole
        process peaked at 2.7 GB on 24 frames of 961^2 (``bench/bench_paco.py``).
    progress : callable, optional
        Called with ``(done, total)`` locations after each block.

    Returns
    -------
    PacoMaps
    """
    cube = np.asarray(cube, dtype=float)
    angles = np.asarray(angles, dtype=float)
    if cube.ndim != 3 or cube.shape[1] != cube.shape[2]:
        raise ValueError(f"FastPACO needs a (T, n, n) cube of square frames; got shape {cube.shape}")
    if angles.shape != (cube.shape[0],):
        raise ValueError(f"FastPACO needs one angle per frame: {angles.shape[0]} angles for {cube.shape[0]} frames")
    if psf_grid < 0:
        raise ValueError(f"psf_grid must be >= 0; got {psf_grid}")
    if cube.shape[0] < 3:
        raise ValueError(f"FastPACO needs at least 3 frames to learn a covariance; got {cube.shape[0]}")
    if int(fwhm_px) < 1:
        raise ValueError(f"FastPACO's patch radius is int(fwhm) pixels: fwhm {fwhm_px:g} px gives none")
    psf = np.asarray(psf, dtype=float)
    if psf.ndim == 3:  # vip-hci's choice for a stack of PSFs
        psf = np.nanmedian(psf, axis=0)
    if psf.ndim != 2 or min(psf.shape) < 2 * int(fwhm_px) + 1:
        raise ValueError(
            f"FastPACO needs a 2-D PSF of at least {2 * int(fwhm_px) + 1} pixels a side (its patch, radius "
            f"int(fwhm) = {int(fwhm_px)}); got shape {psf.shape}"
        )
    cube, odd = even_frames(cube)
    n_frames, n, _ = cube.shape
    radius = int(fwhm_px)
    dy, dx = patch_offsets(radius)
    n_patch = dy.size
    lo, hi = radius + 1, n - radius - 2  # vip-hci's get_patch bounds (patch_width = 2 r + 3)

    row_pos, col_pos = frame_positions(n, angles)
    # vip-hci: a test pixel is skipped if any of its positions truncates outside the frame
    outside = (np.maximum(row_pos.max(axis=1), col_pos.max(axis=1)).astype(int) >= n) | (
        np.minimum(row_pos.min(axis=1), col_pos.min(axis=1)).astype(int) < 0
    )
    row_int, col_int = np.trunc(row_pos).astype(np.int64), np.trunc(col_pos).astype(np.int64)
    # a position on a location without statistics (its patch leaves the frame) gives NaN, as in vip-hci
    in_bounds = (row_int >= lo) & (row_int <= hi) & (col_int >= lo) & (col_int <= hi)
    usable = ~outside & in_bounds.all(axis=1)
    del outside, in_bounds

    normalised, mask, shifted = psf_models(psf, radius)
    # one entry per (usable pixel, frame) pair, in compact types (22 million pairs on a full IRDIS frame)
    pixels = np.nonzero(usable)[0].astype(np.int32)
    pair_pixel = np.repeat(pixels, n_frames)
    pair_frame = np.tile(np.arange(n_frames, dtype=np.int32), pixels.size)
    location = (row_int[pixels] * n + col_int[pixels]).ravel().astype(np.int32)
    frac_y = (row_pos[pixels] - row_int[pixels]).ravel()
    frac_x = (col_pos[pixels] - col_int[pixels]).ravel()
    del row_pos, col_pos, row_int, col_int
    if not subpixel_psf:
        models = normalised[mask][None, :]
        pair_model = np.zeros(pair_pixel.size, dtype=np.int32)
    elif psf_grid > 0:
        steps = np.arange(psf_grid + 1) / psf_grid
        models = np.array([shifted(sy, sx) for sy in steps for sx in steps])
        pair_model = np.clip(np.rint(frac_y * psf_grid), 0, psf_grid).astype(np.int32) * (psf_grid + 1)
        pair_model += np.clip(np.rint(frac_x * psf_grid), 0, psf_grid).astype(np.int32)
    else:  # one exact shift per pair (pairs x P floats: for small fields)
        models = np.array([shifted(sy, sx) for sy, sx in zip(frac_y, frac_x)]).reshape(-1, n_patch)
        pair_model = np.arange(pair_pixel.size, dtype=np.int32)
    del frac_y, frac_x

    order = np.argsort(location, kind="stable")
    location = location[order]
    pair_pixel, pair_frame, pair_model = pair_pixel[order], pair_frame[order], pair_model[order]
    del order
    unique, first, counts = np.unique(location, return_index=True, return_counts=True)
    del location

    a = np.zeros(n * n)
    b = np.zeros(n * n)
    for start in range(0, unique.size, block_locations):
        stop = min(start + block_locations, unique.size)
        locations = unique[start:stop]
        loc_row, loc_col = np.divmod(locations, n)
        patches = cube[:, loc_row[:, None] + dy[None, :], loc_col[:, None] + dx[None, :]]  # (T, L, P)
        patches = patches.transpose(1, 0, 2)
        mean, inverse = location_statistics(patches)
        # the pairs of this block, each with its slot among its location's pairs
        p0, p1 = first[start], first[stop - 1] + counts[stop - 1]
        local = np.repeat(np.arange(stop - start), counts[start:stop])
        slot = np.arange(p1 - p0) - np.repeat(first[start:stop] - p0, counts[start:stop])
        width = int(counts[start:stop].max())
        h = np.zeros((stop - start, width, n_patch))
        h[local, slot] = models[pair_model[p0:p1]]
        residual = np.zeros((stop - start, width, n_patch))
        residual[local, slot] = patches[local, pair_frame[p0:p1]] - mean[local]
        weighted = np.matmul(h, inverse)  # (L, K, P): h^T C^-1 (C^-1 symmetric)
        a_pairs = np.einsum("lkp,lkp->lk", weighted, h)[local, slot]
        b_pairs = np.einsum("lkp,lkp->lk", weighted, residual)[local, slot]
        a += np.bincount(pair_pixel[p0:p1], weights=a_pairs, minlength=n * n)
        b += np.bincount(pair_pixel[p0:p1], weights=b_pairs, minlength=n * n)
        if progress is not None:
            progress(stop, unique.size)

    a[~usable] = np.nan
    b[~usable] = np.nan
    a, b = a.reshape(n, n), b.reshape(n, n)
    if odd:
        a, b = a[1:, 1:], b[1:, 1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        return PacoMaps(b / np.sqrt(a), b / a, 1 / np.sqrt(a), a, b, radius)
