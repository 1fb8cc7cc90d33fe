"""Reference-star differential imaging with PCA (Soummer et al. 2012).

The principal components come from a library of frames of *other* stars
observed with the same instrument, filter and coronagraph (the catalog query
that assembles the library is the platform's job; here it is an array), the
science frames are projected on them, and the residuals are derotated and
combined. ``vip_hci.psfsub.pca(cube, angles, cube_ref=library)``.
"""

from __future__ import annotations

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
