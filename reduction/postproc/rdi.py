"""Reference-star differential imaging with PCA (Soummer et al. 2012).

The principal components come from a library of frames of *other* stars
observed with the same instrument, filter and coronagraph (the catalog query
that assembles the library is the platform's job; here it is an array), the
science frames are projected on them, and the residuals are derotated and
combined. ``vip_hci.psfsub.pca(cube, angles, cube_ref=library)``.
"""

from __future__ import annotations

import numpy as np

from reduction.conventions import star_centre

from ._checks import check_angles, check_cube, check_ncomp
from ._threads import blas_single_thread
from .pca import COLLAPSES, combine, pca_residuals
from .results import PsfSubtractionResult


@blas_single_thread
def pca_rdi(
    cube,
    angles,
    reference_cube,
    ncomp: int = 1,
    *,
    scaling: str | None = None,
    mask_center_px: float | None = None,
    collapse_mode: str = "median",
    derotation: str = "fft",
    workers: int = 1,
) -> PsfSubtractionResult:
    """PCA with a reference library (RDI), then derotation and combination.

    Parameters
    ----------
    cube : ndarray, (t, y, x)
        Centred science cube.
    angles : ndarray, (t,)
        Derotation angles (vip-hci convention).
    reference_cube : ndarray, (n_ref, y, x)
        Centred frames of reference stars, same frame shape.
    ncomp : int
        Principal components of the library (at most ``n_ref``).
    scaling : str, optional
        vip's pixel scaling (``'temp-mean'`` is common for RDI).
    mask_center_px : float, optional
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
    reference = check_cube(reference_cube, "reference_cube")
    if reference.shape[-2:] != cube.shape[-2:]:
        raise ValueError(
            f"reference frames are {reference.shape[-2:]} but science frames are "
            f"{cube.shape[-2:]}; crop both to the same centred size"
        )
    ncomp = check_ncomp(ncomp, reference.shape[0], "ncomp (reference library)")
    if collapse_mode not in COLLAPSES:
        raise ValueError(f"collapse_mode must be one of {COLLAPSES}, got {collapse_mode!r}")
    residuals = pca_residuals(cube, ncomp, reference=reference, scaling=scaling, mask_center_px=mask_center_px)
    frame, derotated = combine(residuals, angles, collapse_mode, mask_center_px, derotation, workers)
    params = {
        "ncomp": ncomp,
        "n_reference": int(reference.shape[0]),
        "scaling": scaling,
        "mask_center_px": mask_center_px,
        "collapse": collapse_mode,
        "derotation": derotation,
    }
    return PsfSubtractionResult(residuals=frame, residual_cube=derotated, algorithm="rdi-pca", parameters=params)


def select_reference_frames(
    cube, reference_cube, n_frames: int, inner_px: float, outer_px: float
) -> tuple[np.ndarray, np.ndarray]:
    """The ``n_frames`` library frames best correlated with the science frames (Ruane et al. 2019 recipe).

    Each library frame's Pearson correlation with the science cube's median frame is measured in the
    annulus ``inner_px <= r < outer_px`` around the star (where the speckles to subtract are); the
    best ``n_frames`` are kept, best first. Returns ``(frames, their indices in reference_cube)``.
    """
    cube = check_cube(cube)
    reference = check_cube(reference_cube, "reference_cube")
    if reference.shape[-2:] != cube.shape[-2:]:
        raise ValueError(f"reference frames are {reference.shape[-2:]}, science frames {cube.shape[-2:]}")
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")
    cy, cx = star_centre(cube.shape[-2:])
    yy, xx = np.indices(cube.shape[-2:])
    rho = np.hypot(yy - cy, xx - cx)
    ring = (rho >= inner_px) & (rho < outer_px)
    if ring.sum() < 10:
        raise ValueError(f"the correlation annulus {inner_px:.1f}-{outer_px:.1f} px holds fewer than 10 pixels")
    science = np.median(cube, axis=0)[ring]
    science = (science - science.mean()) / (science.std() or 1.0)
    library = reference[:, ring]
    library = (library - library.mean(axis=1, keepdims=True)) / np.where(
        (s := library.std(axis=1, keepdims=True)) > 0, s, 1.0
    )
    correlation = library @ science / science.size
    order = np.argsort(-correlation, kind="stable")[: min(n_frames, reference.shape[0])]
    return reference[order], order
