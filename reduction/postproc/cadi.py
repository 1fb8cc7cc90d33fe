"""Classical ADI (Marois et al. 2006): subtract the median frame, derotate, combine.

The model of ``vip_hci.psfsub.median_sub(cube, angles)`` in its default
full-frame mode.
"""

from __future__ import annotations

import numpy as np

from ._checks import check_angles, check_cube
from ._threads import blas_single_thread
from .pca import COLLAPSES, combine
from .results import PsfSubtractionResult


@blas_single_thread
def cadi(
    cube, angles, *, collapse_mode: str = "median", derotation: str = "fft", workers: int = 1
) -> PsfSubtractionResult:
    """Classical ADI: ``frame_i - median_t(cube)``, derotated and median-combined.

    Parameters
    ----------
    cube : ndarray, (t, y, x)
        Centred ADI cube.
    angles : ndarray, (t,)
        Derotation angles (vip-hci convention).
    collapse_mode : {'median', 'mean', 'sum'}
    derotation : {'fft', 'spline'}
        Derotation method (vip's Fourier three-shear rotation, or a cubic spline).
    workers : int

    Returns
    -------
    PsfSubtractionResult
    """
    cube = check_cube(cube)
    angles = check_angles(angles, cube.shape[0])
    if collapse_mode not in COLLAPSES:
        raise ValueError(f"collapse_mode must be one of {COLLAPSES}, got {collapse_mode!r}")
    residuals = cube - np.median(cube, axis=0)[None]
    frame, derotated = combine(residuals, angles, collapse_mode, None, derotation, workers)
    params = {"collapse": collapse_mode, "derotation": derotation}
    return PsfSubtractionResult(residuals=frame, residual_cube=derotated, algorithm="cadi", parameters=params)
