"""Input validation shared by the post-processing functions.

Every public function of :mod:`reduction.postproc` checks its inputs here, so a
wrong cube fails the same way everywhere: ``TypeError`` for a wrong kind of
object or a wrong number of dimensions, ``ValueError`` for wrong values (NaNs,
mismatched lengths, a PSF larger than the frame).
"""

from __future__ import annotations

import numbers
from typing import Iterable

import numpy as np


def as_float_array(value, name: str) -> np.ndarray:
    """Return ``value`` as a float64 ndarray, refusing non-numeric input."""
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be a numeric array, got {type(value).__name__}")
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a numeric array: {exc}") from exc
    return array


def check_finite(array: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` naming how many NaN/inf values ``array`` holds."""
    bad = ~np.isfinite(array)
    if bad.any():
        where = np.argwhere(bad)[0]
        raise ValueError(
            f"{name} contains {int(bad.sum())} non-finite value(s) (NaN or inf), "
            f"the first at index {tuple(int(i) for i in where)}; clean or mask them before "
            f"post-processing"
        )


def check_cube(cube, name: str = "cube", ndim: Iterable[int] = (3,)) -> np.ndarray:
    """Validate an ADI cube ``(t, y, x)`` (or ``(λ, t, y, x)`` when 4 is allowed).

    Returns
    -------
    ndarray
        A float64 copy-or-view of the cube.
    """
    ndim = tuple(ndim)
    array = as_float_array(cube, name)
    if array.ndim not in ndim:
        expected = " or ".join(f"{n}-D" for n in ndim)
        axes = {2: "(y, x)", 3: "(t, y, x)", 4: "(λ, t, y, x)"}
        layout = " or ".join(axes[n] for n in ndim)
        raise TypeError(f"{name} must be a {expected} array {layout}, got {array.ndim}-D with shape {array.shape}")
    if min(array.shape[-2:]) < 5:
        raise ValueError(f"{name} frames are too small: {array.shape[-2:]}")
    if array.ndim >= 3 and array.shape[-3] < 2:
        raise ValueError(f"{name} has {array.shape[-3]} frame(s); ADI needs at least 2")
    check_finite(array, name)
    return array


def check_angles(angles, nframes: int, name: str = "angles") -> np.ndarray:
    """Validate derotation angles (vip-hci convention, degrees), one per frame."""
    array = as_float_array(angles, name)
    if array.ndim == 2 and 1 in array.shape:
        array = array.ravel()  # vip's (n, 1) FITS layout
    if array.ndim != 1:
        raise TypeError(f"{name} must be a 1-D vector of derotation angles, got shape {array.shape}")
    if array.shape[0] != nframes:
        raise ValueError(
            f"{name} has {array.shape[0]} values but the cube has {nframes} frames; "
            f"there must be one derotation angle per frame"
        )
    check_finite(array, name)
    return array


def check_psf(psf, frame_shape: tuple[int, int], name: str = "psf", ndim: Iterable[int] = (2,)) -> np.ndarray:
    """Validate an off-axis PSF: 2-D (or 3-D per wavelength), finite, not larger than a frame."""
    ndim = tuple(ndim)
    array = as_float_array(psf, name)
    if array.ndim not in ndim:
        expected = " or ".join(f"{n}-D" for n in ndim)
        raise TypeError(f"{name} must be a {expected} array, got {array.ndim}-D with shape {array.shape}")
    ny, nx = frame_shape
    if array.shape[-2] > ny or array.shape[-1] > nx:
        raise ValueError(
            f"{name} ({array.shape[-2]}x{array.shape[-1]} px) is larger than the frames "
            f"({ny}x{nx} px); crop the PSF to at most the frame size"
        )
    if min(array.shape[-2:]) < 3:
        raise ValueError(f"{name} is too small ({array.shape[-2:]}); it must contain the PSF core")
    check_finite(array, name)
    if not np.any(array != 0):
        raise ValueError(f"{name} is all zeros")
    return array


def check_positive(value, name: str, allow_zero: bool = False) -> float:
    """A finite real number > 0 (or >= 0)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return value


def check_ncomp(ncomp, nmax: int, name: str = "ncomp") -> int:
    """Number of principal components: an int in [1, nmax]."""
    if isinstance(ncomp, bool) or not isinstance(ncomp, numbers.Integral):
        raise TypeError(f"{name} must be an integer number of principal components, got {ncomp!r}")
    ncomp = int(ncomp)
    if ncomp < 1:
        raise ValueError(f"{name} must be >= 1, got {ncomp}")
    if ncomp > nmax:
        raise ValueError(f"{name}={ncomp} is larger than the {nmax} frames of the library")
    return ncomp


def check_frame(frame, name: str = "frame") -> np.ndarray:
    """A 2-D image (NaNs allowed: skipped annuli are NaN)."""
    array = as_float_array(frame, name)
    if array.ndim != 2:
        raise TypeError(f"{name} must be a 2-D image, got {array.ndim}-D with shape {array.shape}")
    return array
